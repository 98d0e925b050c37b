"""Experiment tracking: every run is an MLflow run; a sweep is a parent run with one child per job.

A task gets a ``Tracker`` (protocol.py) from ``open_tracker(cfg, run_dir)`` (runs.py): an
``MlflowTracker`` (mlflow_tracker.py) with ``tracking=mlflow``, a ``NullTracker`` (null.py) with
``tracking=none``. The rest of the package:

- experiment.py  the experiment a run logs to: its name, finding or creating it
- tags.py        a run's name and tags: task, model, dataset, overrides, git commit
- inputs.py      the data a run read, as MLflow dataset inputs
- sweep.py       the Hydra callback that makes a multirun one parent run (conf/config.yaml)
- parent_run.py  how the parent run's id gets from the sweep to its jobs

Nothing secret reaches the store: every param, tag and text artifact passes through
``ocrft.redact`` (secret-named keys and the values of secret-named environment variables).
"""

from ocrft.tracking.mlflow_tracker import MlflowTracker
from ocrft.tracking.null import NullTracker
from ocrft.tracking.protocol import Tracker
from ocrft.tracking.runs import open_tracker

__all__ = ["MlflowTracker", "NullTracker", "Tracker", "open_tracker"]
