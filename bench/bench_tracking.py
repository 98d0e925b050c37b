"""Benchmark: training steps/s with tracking=mlflow against tracking=none (target: within 5%).

    python bench/bench_tracking.py                 # 30 steps x 3 repeats of each, interleaved
    python bench/bench_tracking.py --steps 60 --repeats 5

Trains the tiny Qwen2-VL on synthetic lines through the real entry point (ocrft.runner.run_task
with ocrft.tasks.train.run_training), logging every step (train.logging_steps=1) so that the tracker
is exercised as hard as training ever exercises it. Throughput is measured over trainer.train()
only (train/global_step / system/train_seconds from the run's metrics), so one-off costs
outside the loop (opening the store, logging the config) do not count. The runs alternate
between the two settings and the medians are compared, which keeps drift on a shared machine
from landing on one side only.

On a loaded machine the steps/s of identical runs spread far more than 5%, so the ratio is
printed with its runs and the verdict comes from the direct measure: the wall time spent
inside the tracker's metric calls (buffering and the batched flushes, including the final
flush after training, so an upper bound) as a share of the training time. A share of at
most 5% means tracking costs at most 5% of the steps/s, whatever else the machine is doing.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET = 0.05  # tracking may cost at most 5% of the training time (steps/s ratio >= 0.95)
log = logging.getLogger("bench_tracking")


def compose(overrides: list[str]):
    """The real conf/ tree with ``overrides``, as `python -m ocrft` composes it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from ocrft.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


class TrackerClock:
    """Wall time spent inside the tracker's per-step calls (log_metrics, flush): the direct
    cost of tracking, which machine load cannot inflate the way it inflates a ratio."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def install(self) -> None:
        from ocrft.tracking import MlflowTracker

        for name in ("log_metrics", "flush"):
            method = getattr(MlflowTracker, name)

            def timed(*args, _method=method, **kwargs):
                t0 = time.perf_counter()
                try:
                    return _method(*args, **kwargs)
                finally:
                    self.seconds += time.perf_counter() - t0

            setattr(MlflowTracker, name, timed)


def steps_per_second(tracking: list[str], run_dir: Path, steps: int) -> tuple[float, float]:
    from ocrft.runner import run_task
    from ocrft.tasks.train import run_training

    cfg = compose(
        [
            "model=tiny_qwen2_vl",
            "data=synthetic",
            "data.num_train=64",
            f"train.max_steps={steps}",
            "train.logging_steps=1",
            "eval.before_after=false",
            "eval.limit=1",
            "tracking.log_model=false",
            f"run_dir={run_dir}",
            *tracking,
        ]
    )
    metrics = run_task(cfg, run_training)
    return metrics["train/global_step"] / metrics["system/train_seconds"], metrics["system/train_seconds"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)
    # Nothing may reach for a model hub; the tiny model is built offline.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp:
        root = Path(tmp)
        settings = {
            "none": ["tracking=none"],
            "mlflow": ["tracking=mlflow", f"tracking.uri=sqlite:///{root / 'mlflow.db'}", "tracking.experiment=bench"],
        }
        steps_per_second(settings["none"], root / "warmup", args.steps)  # first-run costs (imports, kernels)
        clock = TrackerClock()
        clock.install()
        results: dict[str, list[float]] = {name: [] for name in settings}
        mlflow_train_seconds = 0.0
        for i in range(args.repeats):
            for name, overrides in settings.items():
                rate, seconds = steps_per_second(overrides, root / f"{name}-{i}", args.steps)
                results[name].append(rate)
                mlflow_train_seconds += seconds if name == "mlflow" else 0.0
                log.info("run %d %-6s %.2f steps/s", i, name, rate)

    none, mlflow = statistics.median(results["none"]), statistics.median(results["mlflow"])
    ratio = mlflow / none
    log.info("tracking=none   median %.2f steps/s  %s", none, [round(r, 2) for r in results["none"]])
    log.info("tracking=mlflow median %.2f steps/s  %s", mlflow, [round(r, 2) for r in results["mlflow"]])
    share = clock.seconds / mlflow_train_seconds
    log.info("ratio mlflow/none = %.3f (steps/s medians; see the spread above)", ratio)
    log.info(
        "time inside the tracker: %.3f s of %.1f s training = %.2f%% (target <= %.0f%%): %s",
        clock.seconds, mlflow_train_seconds, 100 * share, 100 * TARGET, "ok" if share <= TARGET else "TOO SLOW",
    )
    return 0 if share <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
