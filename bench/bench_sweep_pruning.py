"""Benchmark: the same Optuna study with median pruning and without, on real training.

    python bench/bench_sweep_pruning.py                       # 12 trials of +experiment=demo_sweep each
    python bench/bench_sweep_pruning.py --trials 8 train.max_steps=100

Runs `python -m ocrft --multirun +experiment=demo_sweep` twice through the real sweeper,
with the same sampler seed, once with `pruner.type=median` and once with `pruner.type=none`
(each in its own study and sweep dir under a temporary folder), then prints, for each, the
total training steps all trials ran (each trial's `train/global_step` from its run.json),
the wall time and the best validation CER, and the share of steps pruning saved.
Pruning pays when it saves steps without losing the best CER (same seed: the first
`n_startup_trials` trials draw the same params in both; later ones follow each history).
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


def run_study(root: Path, pruner: str, trials: int, extra: list[str]) -> dict:
    """One sweep; returns its steps, wall time, best value and trial states."""
    import optuna

    storage = f"sqlite:///{root}/optuna.db"
    cmd = [
        sys.executable, "-m", "ocrft", "--multirun", "+experiment=demo_sweep", "tracking=none",
        f"hydra.sweeper.n_trials={trials}", f"hydra.sweeper.pruner.type={pruner}",
        f"hydra.sweeper.study_name=bench-{pruner}", f"hydra.sweeper.storage={storage}",
        f"hydra.sweep.dir={root / pruner}", *extra,
    ]  # fmt: skip
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    seconds = time.time() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-5000:])
        raise SystemExit(f"the {pruner} sweep failed")
    study = optuna.load_study(study_name=f"bench-{pruner}", storage=storage)
    steps = 0
    for trial in study.trials:
        run_json = Path(trial.user_attrs.get("run_dir", "/nonexistent")) / "run.json"
        if run_json.exists():
            steps += int(json.loads(run_json.read_text())["metrics"].get("train/global_step", 0))
    states = {}
    for trial in study.trials:
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    return {"steps": steps, "seconds": seconds, "best": study.best_value, "states": states}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("overrides", nargs="*", help="more overrides for both sweeps, e.g. train.max_steps=100")
    parser.add_argument("--keep", type=Path, default=None, help="run in this folder and keep it")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        results = {}
        for pruner in ("none", "median"):
            log.info("running %d trials with pruner=%s ...", args.trials, pruner)
            results[pruner] = run_study(root, pruner, args.trials, args.overrides)
    lines = [f"{'pruner':<8} {'train steps':>11} {'seconds':>8} {'best val/cer':>12}  trials"]
    for pruner, r in results.items():
        lines.append(f"{pruner:<8} {r['steps']:>11} {r['seconds']:>8.0f} {r['best']:>12.4f}  {r['states']}")
    base, pruned = results["none"], results["median"]
    lines.append(
        f"pruning ran {pruned['steps'] / max(base['steps'], 1):.2f}x the training steps "
        f"({1 - pruned['steps'] / max(base['steps'], 1):.0%} saved), {pruned['seconds'] / base['seconds']:.2f}x the time; "
        f"best val/cer {pruned['best']:.4f} vs {base['best']:.4f}"
    )
    print("\n".join(lines))  # the benchmark's report is its output


if __name__ == "__main__":
    main()
