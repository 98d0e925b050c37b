"""Benchmark: the same Optuna study with pruning and without, on real training.

    python bench/bench_sweep_pruning.py                       # 12 trials of +experiment=demo_sweep each
    python bench/bench_sweep_pruning.py --trials 8 train.max_steps=100
    python bench/bench_sweep_pruning.py --keep /tmp/pilot --arm none=hydra.sweeper.pruner.type=none hydra.sweeper.sampler.seed=7

Runs `python -m ocrft --multirun +experiment=demo_sweep` twice through the real sweeper,
with the same sampler and seed (random by default, so both sweeps train the same 12
configurations; `--sampler recipe` keeps the recipe's TPE), once with the recipe's pruner
and once with `pruner.type=none` (each in its own study and sweep dir under a temporary
folder; `--arm` runs other variants), then prints, for each, the total training steps all trials ran (each trial's
`train/global_step` from its run.json), the wall time and the best validation CER, and the
share of steps pruning saved.
Pruning pays when it saves steps without losing the best CER. Target (the sweeps issue):
at least 40% fewer steps, best CER within 10%. Results: experiments/sweep_pruning.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench_sweep_pruning")


def run_study(root: Path, arm: str, trials: int, extra: list[str]) -> dict:
    """One sweep; returns its steps, wall time, best value, trial states and curves."""
    import optuna

    storage = f"sqlite:///{root}/optuna.db"
    cmd = [
        sys.executable, "-m", "ocrft", "--multirun", "+experiment=demo_sweep", "tracking=none",
        f"hydra.sweeper.n_trials={trials}", f"hydra.sweeper.study_name=bench-{arm}",
        f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={root / arm}", *extra,
    ]  # fmt: skip
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    seconds = time.time() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-5000:])
        raise SystemExit(f"the {arm} sweep failed")
    study = optuna.load_study(study_name=f"bench-{arm}", storage=storage)
    steps = 0
    for trial in study.trials:
        run_json = Path(trial.user_attrs.get("run_dir", "/nonexistent")) / "run.json"
        if run_json.exists():
            steps += int(json.loads(run_json.read_text())["metrics"].get("train/global_step", 0))
    states: dict[str, int] = {}
    for trial in study.trials:
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    curves = [{"state": t.state.name, "params": t.params, "values": t.intermediate_values} for t in study.trials]
    return {"steps": steps, "seconds": seconds, "best": study.best_value, "states": states, "curves": curves}


def parse_arm(text: str) -> tuple[str, list[str]]:
    name, _, overrides = text.partition("=")
    return name, [o for o in overrides.split(";") if o]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--keep", type=Path, default=None, help="run in this folder and keep it (with each arm's curves)")
    parser.add_argument(
        "--arm", action="append", default=None, metavar="NAME=OVERRIDE;OVERRIDE",
        help="a sweep to run (repeatable); default: none=hydra.sweeper.pruner.type=none and pruned= (the recipe's pruner)",
    )  # fmt: skip
    parser.add_argument(
        "--sampler", default="random",
        help="sampler of both sweeps (default random: both run the same configurations, so the comparison "
        "measures pruning alone; 'recipe' keeps demo_sweep's TPE, whose draws diverge once trials are pruned)",
    )  # fmt: skip
    parser.add_argument("overrides", nargs="*", help="more overrides for every sweep, e.g. train.max_steps=100")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    arms = [parse_arm(a) for a in (args.arm or ["none=hydra.sweeper.pruner.type=none", "pruned="])]

    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        results = {}
        for name, overrides in arms:
            log.info("running %d trials, arm %s: %s ...", args.trials, name, " ".join(overrides) or "(recipe)")
            sampler = [] if args.sampler == "recipe" else [f"hydra.sweeper.sampler.type={args.sampler}"]
            results[name] = run_study(root, name, args.trials, [*sampler, *overrides, *args.overrides])
            if args.keep:
                (root / f"curves-{name}.json").write_text(json.dumps(results[name]["curves"], indent=1))
    lines = [f"{'arm':<10} {'train steps':>11} {'seconds':>8} {'best val/cer':>12}  trials"]
    for name, r in results.items():
        lines.append(f"{name:<10} {r['steps']:>11} {r['seconds']:>8.0f} {r['best']:>12.4f}  {r['states']}")
    if "none" in results:
        base = results["none"]
        for name, r in results.items():
            if name != "none":
                lines.append(
                    f"{name}: {r['steps'] / max(base['steps'], 1):.2f}x the training steps of none "
                    f"({1 - r['steps'] / max(base['steps'], 1):.0%} saved), {r['seconds'] / base['seconds']:.2f}x the time; "
                    f"best val/cer {r['best']:.4f} vs {base['best']:.4f} ({r['best'] / base['best'] - 1:+.1%})"
                )
    print("\n".join(lines))  # the benchmark's report is its output


if __name__ == "__main__":
    main()
