"""The single entry point: ``python -m ocrft task=<task> ...``.

Hydra composes the config from conf/; this module validates it, writes the run record and
dispatches to one plain task function. It is the home of side effects (seeding, run dir,
tracking); the task functions take the config and return their metrics.
"""

from __future__ import annotations

import importlib
import logging
import sys

import hydra
from omegaconf import DictConfig

from ocrft.config import register_configs

log = logging.getLogger("ocrft")

# task name -> "module:function"; imported lazily so `--help` stays fast.
TASKS = {
    "train": "ocrft.train:run_training",
    "eval": "ocrft.evaluate:run_eval",
    "predict": "ocrft.predict:run_predict",
    "prepare": "ocrft.prepare:run_prepare",
    "merge": "ocrft.merge:run_merge",
    "serve": "ocrft.serve:run_serve",
    "analyze": "ocrft.analyze:run_analyze",
    "report": "ocrft.report:run_report",
}


def resolve_task(name: str):
    module, func = TASKS[name].split(":")
    return getattr(importlib.import_module(module), func)


register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig):
    from ocrft.runner import run_task

    return run_task(cfg, resolve_task(cfg.task))


if __name__ == "__main__":
    sys.exit(main())
