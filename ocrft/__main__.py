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

from ocrft import conf_dir
from ocrft.config import register_configs

log = logging.getLogger("ocrft")

# task name -> "module:function"; imported lazily so `--help` stays fast.
TASKS = {
    "train": "ocrft.tasks.train:run_training",
    "eval": "ocrft.tasks.eval:run_eval",
    "predict": "ocrft.tasks.predict:run_predict",
    "prepare": "ocrft.tasks.prepare:run_prepare",
    "merge": "ocrft.tasks.merge:run_merge",
    "soup": "ocrft.tasks.soup:run_soup",
    "serve": "ocrft.tasks.serve:run_serve",
    "analyze": "ocrft.tasks.analyze:run_analyze",
    "report": "ocrft.tasks.report:run_report",
    "studio": "ocrft.tasks.studio:run_studio",
}


def resolve_task(name: str):
    module, func = TASKS[name].split(":")
    return getattr(importlib.import_module(module), func)


def run_named_task(cfg: DictConfig, ctx):
    """``cfg.task``'s function, imported only when run_task calls it, after the config is
    validated: a bad value then fails in half a second, not after torch is imported (~5 s)."""
    return resolve_task(cfg.task)(cfg, ctx)


def _share_config_store() -> None:
    """Make a copy of Hydra's ConfigStore the store itself.

    Hydra 1.3 deep-copies its config repository, and with it the whole ConfigStore (every
    schema in this package), for each of the ~115 group listings `--help` makes: 0.8 of its
    1.1 s (experiments/cli_startup). Hydra's main branch reads ``ConfigStore.instance()`` at
    each use instead of copying it (facebookresearch/hydra#2928, in no 1.3 release); this
    has the same effect. (Patching its config source class would not last: Hydra's plugin
    scan executes that module again.) Sharing is safe: the store is a process-wide
    singleton, and loading a config from it copies that config.
    """
    from hydra.core.config_store import ConfigStore

    ConfigStore.__deepcopy__ = lambda self, memo: self


register_configs()
_share_config_store()


# Absolute, so Hydra finds conf/ however this module is started (python -m, console script, import),
# from a checkout or an installed wheel (ocrft/conf_dir.py).
CONF_DIR = str(conf_dir.CONF_DIR)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig):
    from ocrft.parent_watch import watch_parent
    from ocrft.runner import EXIT_USER_ERROR, in_multirun, run_task, user_error_message

    watch_parent()  # a run the studio started stops when the studio dies
    try:
        return run_task(cfg, run_named_task)
    except Exception as err:
        message = user_error_message(err)
        if message is None or in_multirun():
            raise  # a bug keeps its traceback; a sweep records the job as failed and goes on
        # A bad file, key or path: one paragraph naming it, no traceback (run.json has it too),
        # on a line of its own even when a progress bar was cut off mid-line.
        sys.stderr.write(f"\nocrft: error: {message}\n")
        raise SystemExit(EXIT_USER_ERROR) from None


if __name__ == "__main__":
    sys.exit(main())
