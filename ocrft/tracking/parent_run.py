"""How a sweep's MLflow parent run id gets from the sweep to its jobs: written and read here only.

``MlflowSweepCallback.on_multirun_start`` (ocrft.tracking.sweep) writes it; each job reads it when
it opens its run (ocrft.tracking.runs), and so does the Optuna sweeper's summary afterwards
(hydra_plugins/ocrft_optuna_sweeper/summary.py).

It travels two ways, because jobs start in two kinds of place:

- a file, ``<sweep dir>/mlflow_parent_run_id``: what every launcher's jobs read, whether they run
  in this process, in worker processes or on other machines (which share the sweep folder, not
  this process's environment); a job finds it from its own folder (``<sweep dir>/<job number>``)
  or from Hydra's ``hydra.sweep.dir``. It outlives the sweep, for the sweeper's summary.
- an environment variable, ``$OCRFT_MLFLOW_PARENT_RUN_ID``: the fallback for a job that runs in
  the sweep's own process (Hydra's basic launcher) or a process started from it when neither path
  reaches the file (a ``hydra.sweep.subdir`` nested deeper than one folder, a relative
  ``hydra.sweep.dir`` read after the job changed directory). It is read only in a multirun and
  removed when the sweep ends, so a later run in the same process does not nest under it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig

from ocrft import atomic

PARENT_RUN_ENV = "OCRFT_MLFLOW_PARENT_RUN_ID"
PARENT_RUN_FILE = "mlflow_parent_run_id"


def write_parent_run(sweep_dir: Path, run_id: str) -> None:
    """Publish ``run_id`` as the parent run of the sweep in ``sweep_dir`` (file and variable)."""
    atomic.write_text(sweep_dir / PARENT_RUN_FILE, run_id)
    os.environ[PARENT_RUN_ENV] = run_id


def clear_parent_run(run_id: str) -> None:
    """Stop offering ``run_id`` to jobs of this process (the file stays, for the summary)."""
    if os.environ.get(PARENT_RUN_ENV) == run_id:
        del os.environ[PARENT_RUN_ENV]


def read_parent_run(run_dir: Path, hydra_cfg: Optional[DictConfig]) -> Optional[str]:
    """The parent run id a job should nest under: the sweep folder's file, else the variable
    (in a multirun only). None outside a sweep.

    Args:
        run_dir: the job's run folder (``<sweep dir>/<job number>`` in a sweep).
        hydra_cfg: Hydra's config of this job (``HydraConfig.get()``); None outside Hydra.
    """
    from hydra.types import RunMode

    in_sweep = hydra_cfg is None or hydra_cfg.mode == RunMode.MULTIRUN
    files = [run_dir.parent / PARENT_RUN_FILE]
    if hydra_cfg is not None and in_sweep:
        files.insert(0, Path(hydra_cfg.sweep.dir) / PARENT_RUN_FILE)
    run_id = next((f.read_text().strip() for f in files if f.is_file()), None)
    return run_id or (os.environ.get(PARENT_RUN_ENV) if in_sweep else None)


def sweep_parent_run(sweep_dir: Path) -> Optional[str]:
    """The parent run id written into ``sweep_dir``, if the sweep had one (read after the sweep)."""
    file = sweep_dir / PARENT_RUN_FILE
    return file.read_text().strip() if file.exists() else None
