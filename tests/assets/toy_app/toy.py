"""A toy ocrft entry point for the tracking tests: the real conf/ tree (callbacks included)
and the real runner, with a task function that costs nothing.

The outcome of a job is chosen by its seed (sweep ``seed=1,2,3``):
    1, 2 -> finished with val/cer 0.3, 0.2;  3 -> pruned (val/cer 0.1, must not count as best);
    4 -> raises.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from ocrft.config import register_configs
from ocrft.runner import RunContext, TaskResult, run_task

CONF = str(Path(__file__).resolve().parents[3] / "conf")
OUTCOMES = {1: ("finished", 0.3), 2: ("finished", 0.2), 3: ("pruned", 0.1), 4: ("failed", None)}


def toy_task(cfg: DictConfig, ctx: RunContext) -> TaskResult:
    status, cer = OUTCOMES[cfg.seed]
    if status == "failed":
        raise RuntimeError(f"toy job {cfg.seed} failed on purpose")
    ctx.tracker.log_metrics({"val/cer": cer}, step=1)
    ctx.tracker.set_terminal_status(status)
    return TaskResult(metrics={"val/cer": cer}, status=status)


register_configs()


@hydra.main(version_base="1.3", config_path=CONF, config_name="config")
def main(cfg: DictConfig):
    return run_task(cfg, toy_task)


if __name__ == "__main__":
    main()
