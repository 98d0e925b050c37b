"""Does GRPO after SFT pay on this CPU? Three arms from the same SFT run, the same wall time each.

    python bench/bench_grpo.py                    # 3 seeds x 3 arms x 2 line lengths, soup and retries
    python bench/bench_grpo.py --seconds 60 --seeds 1 --only short     # a quick look

Start: the demo's SFT run (`python -m ocrft +experiment=demo`, made here once if --demo-run
is not given). Arms, each continuing that run's adapter for ``--seconds`` of training
(``train.max_seconds``; validation off in every arm, so the budget is all training):
  (a) continued SFT (the demo's recipe),
  (b) GRPO with rewards cer + eos + loop (``+experiment=demo_grpo``),
  (c) GRPO with cer only.
Each is scored on the test split: CER, exact match, looped rate (``eval/*`` of its run.json),
for ``--seeds`` seeds: mean and spread (min..max).

Two conditions: ``short`` is the demo's own data (lines of 3-8 characters); ``long`` trains
and tests on lines of 12-20 characters, longer than the demo ever read, where its SFT run
cuts and loops. Then a soup of the (a) seeds of ``short`` against each seed (task=soup), and
retries on and off (``eval.loop_guard.retries``) for the SFT run on the long test lines.

Everything goes to <out>/results.json and the tables to <out>/TABLES.md (default
experiments/grpo); README.md there says what they show.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARMS = {
    "a_sft": ["+experiment=demo", "model=demo_sft"],
    "b_grpo_cer_eos_loop": ["+experiment=demo_grpo"],
    "c_grpo_cer": ["+experiment=demo_grpo", "train.rewards.eos=0", "train.rewards.loop=0"],
}
CONDITIONS = {
    "short": [],  # the demo's lines: 3-8 characters
    "long": ["data.min_chars=12", "data.max_chars=20", "eval.max_new_tokens=32", "data.num_train=800"],
}
METRICS = ("cer", "exact_match", "looped_rate")


def ocrft(args: list[str], run_dir: Path, log_dir: Path) -> dict:
    """``python -m ocrft args run_dir=...`` (reused when its run.json says it finished); its run.json."""
    record = run_dir / "run.json"
    if record.exists() and json.loads(record.read_text()).get("status") == "finished":
        return json.loads(record.read_text())
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with (log_dir / f"{run_dir.name}.log").open("w") as log:
        proc = subprocess.run([sys.executable, "-m", "ocrft", *args, "tracking=none", f"run_dir={run_dir}"],
                              cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    if proc.returncode:
        raise RuntimeError(f"{' '.join(args)} failed (exit {proc.returncode}); see {log_dir / f'{run_dir.name}.log'}")
    return json.loads(record.read_text())


def scores(record: dict, prefix: str = "eval/") -> dict[str, float]:
    return {m: record["metrics"][f"{prefix}{m}"] for m in METRICS}


def summary(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values), "n": len(values)}


def run_arms(demo: Path, work: Path, args) -> dict:
    results: dict = {}
    for condition in args.only or CONDITIONS:
        extra = CONDITIONS[condition]
        base = ocrft(["task=eval", "+experiment=demo", "model=demo_sft", f"model.path={demo}", *extra],
                     work / condition / "start", work / "logs")  # fmt: skip
        results[condition] = {"start": scores(base), "arms": {}}
        print(f"{condition}: the SFT run itself: {scores(base)}", flush=True)
        for arm, overrides in ARMS.items():
            runs = []
            for seed in range(args.seeds):
                run_dir = work / condition / f"{arm}_seed{seed}"
                t0 = time.time()
                record = ocrft([*overrides, f"model.path={demo}", f"seed={seed}", *extra, "train.max_steps=100000",
                                f"train.max_seconds={args.seconds}", "eval.every_n_steps=0", "eval.before_after=false",
                                "train.save_steps=100000"], run_dir, work / "logs")  # fmt: skip
                got = {**scores(record), "steps": record["metrics"].get("train/global_step"),
                       "train_seconds": record["metrics"].get("system/train_seconds"), "run_dir": str(run_dir)}  # fmt: skip
                runs.append(got)
                print(f"{condition} {arm} seed {seed} ({time.time() - t0:.0f} s): {got}", flush=True)
            results[condition]["arms"][arm] = {"runs": runs, **{m: summary([r[m] for r in runs]) for m in METRICS}}
    return results


def soup_vs_seeds(results: dict, work: Path) -> dict:
    """task=soup of the continued-SFT seeds (short lines) against each seed."""
    runs = [r["run_dir"] for r in results["short"]["arms"]["a_sft"]["runs"]]
    record = ocrft(["task=soup", f"soup.runs=[{','.join(runs)}]"], work / "soup", work / "logs")
    return {"soup": scores(record), "seeds": [{m: r[m] for m in METRICS} for r in results["short"]["arms"]["a_sft"]["runs"]]}


def retries(demo: Path, work: Path) -> dict:
    """The SFT run on the long test lines, loop-guard retries off and on."""
    out = {}
    for n in (0, 2):
        record = ocrft(["task=eval", "+experiment=demo", "model=demo_sft", f"model.path={demo}", *CONDITIONS["long"],
                        f"eval.loop_guard.retries={n}"], work / f"retries_{n}", work / "logs")  # fmt: skip
        out[f"retries_{n}"] = {**scores(record), "retried_rate": record["metrics"].get("eval/retried_rate", 0.0)}
    return out


def tables(results: dict) -> str:
    lines = []
    for condition, got in results["arms"].items():
        start = got["start"]
        lines += [f"\n### {condition} lines ({results['seconds']} s of training per run, {results['seeds']} seeds)\n",
                  "| arm | test CER | exact match | looped rate |", "| --- | --- | --- | --- |",
                  f"| the SFT run (start) | {start['cer']:.4f} | {start['exact_match']:.3f} | {start['looped_rate']:.3f} |"]  # fmt: skip
        for arm, a in got["arms"].items():
            cells = [f"{a[m]['mean']:.4f} ({a[m]['min']:.4f}..{a[m]['max']:.4f})" for m in METRICS]
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    if "soup" in results:
        s = results["soup"]
        lines += ["\n### Soup of the continued-SFT seeds (short lines)\n", "| model | test CER | exact match |",
                  "| --- | --- | --- |", f"| soup | {s['soup']['cer']:.4f} | {s['soup']['exact_match']:.3f} |"]  # fmt: skip
        lines += [f"| seed {i} | {r['cer']:.4f} | {r['exact_match']:.3f} |" for i, r in enumerate(s["seeds"])]
    if "retries" in results:
        lines += ["\n### Retries on the long lines (the SFT run)\n", "| eval.loop_guard.retries | test CER | looped rate | retried rate |",
                  "| --- | --- | --- | --- |"]  # fmt: skip
        lines += [f"| {k.split('_')[1]} | {v['cer']:.4f} | {v['looped_rate']:.3f} | {v['retried_rate']:.3f} |"
                  for k, v in results["retries"].items()]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-run", type=Path, help="the demo's SFT run folder (made when not given)")
    parser.add_argument("--seconds", type=int, default=90, help="training wall time of every arm run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", nargs="*", choices=sorted(CONDITIONS))
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "bench_grpo")
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "grpo")
    args = parser.parse_args()
    started = time.time()
    demo = args.demo_run or args.work / "demo_sft"
    if not args.demo_run:
        ocrft(["+experiment=demo"], demo, args.work / "logs")
    results: dict = {"seconds": args.seconds, "seeds": args.seeds, "demo_run": str(demo)}
    results["arms"] = run_arms(demo, args.work, args)
    if "short" in results["arms"] and args.seeds > 1:
        results["soup"] = soup_vs_seeds(results["arms"], args.work)
    results["retries"] = retries(demo, args.work)
    results["wall_seconds"] = round(time.time() - started)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "TABLES.md").write_text("# bench/bench_grpo.py: measured tables\n" + tables(results))
    print(tables(results))
    short = results["arms"].get("short")
    if short:
        ratio = short["arms"]["b_grpo_cer_eos_loop"]["cer"]["mean"] / short["arms"]["a_sft"]["cer"]["mean"]
        print(f"GRPO (cer+eos+loop) / continued SFT test CER, short lines: {ratio:.3f} (target <= 0.90)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
