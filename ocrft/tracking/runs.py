"""Opening a run's tracker: a new MLflow run, a resumed one, or a sweep job's child run.

``open_tracker(cfg, run_dir)`` (used by ``ocrft.runner.run_task``) yields an ``MlflowTracker``
with ``tracking=mlflow`` and a ``NullTracker`` with ``tracking=none``; task code calls the same
methods on either (ocrft.tracking.protocol). On start the run gets the resolved config
(redacted) as dotted params and as ``config.yaml``, and tags naming the task, model, dataset,
overrides, git commit and run folder. On exit the run ends FINISHED, FAILED (with the error in
tag ``ocrft.error``), or KILLED (Ctrl-C, or ``set_terminal_status("pruned")``). A run folder
whose ``run.json`` names an MLflow run that exists in the store continues that run instead of
starting a new one. In a sweep the run is a child of the sweep's parent run (ocrft.tracking.sweep).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator, Optional

from omegaconf import DictConfig

from ocrft.redact import redacted_container, redacted_yaml, scrub_text
from ocrft.run_record import RunRecord
from ocrft.tracking.experiment import experiment_id, experiment_name
from ocrft.tracking.mlflow_tracker import MlflowTracker
from ocrft.tracking.null import NullTracker
from ocrft.tracking.parent_run import read_parent_run
from ocrft.tracking.protocol import Tracker
from ocrft.tracking.tags import base_tags, run_name

log = logging.getLogger(__name__)

# Model settings whose None means "the processor's own": the task logs the value it resolved
# (ocrft.models.loading.image_params) and MLflow params are write-once, so None is not logged here.
RESOLVED_BY_TASK = ("min_pixels", "max_pixels", "image_size")


@contextlib.contextmanager
def open_tracker(cfg: DictConfig, run_dir: Path) -> Iterator[Tracker]:
    """Yield the run's tracker and end its MLflow run when the block exits.

    An exception ends the run FAILED (KILLED for Ctrl-C) with the error in tag
    ``ocrft.error``, and is re-raised. Only rank 0 of a distributed job tracks.
    """
    if not cfg.tracking.enabled or int(os.environ.get("RANK", "0")) != 0:
        yield NullTracker()
        return
    tracker = _start_run(cfg, Path(run_dir))
    try:
        yield tracker
    except BaseException as err:
        _close_quietly(tracker, err)
        raise
    _close_quietly(tracker, None)


def _close_quietly(tracker: MlflowTracker, error: Optional[BaseException]) -> None:
    # The run's own outcome (run.json, the task's error) matters more than the store's.
    try:
        tracker.close(error)
    except Exception as err:  # noqa: BLE001
        log.error("MLflow: could not end run %s: %s", tracker.run_id, err)


def _hydra_config() -> Optional[DictConfig]:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def _start_run(cfg: DictConfig, run_dir: Path) -> MlflowTracker:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=cfg.tracking.uri)
    hc = _hydra_config()
    overrides = list(hc.overrides.task) if hc is not None else []
    tags = {**base_tags(cfg, overrides), "ocrft.run_dir": str(run_dir.resolve())}
    resumed = _resumable_run(client, run_dir)
    if resumed is not None:
        client.update_run(resumed.info.run_id, status="RUNNING")
        tracker = MlflowTracker(client, resumed.info.run_id, resumed.data.params)
        tags["ocrft.resumed"] = "true"
        log.info("MLflow: continuing run %s", tracker.run_id)
    else:
        parent = _parent_run(client, run_dir, hc)
        job_num = hc.job.num if parent is not None and hc is not None else None
        exp_id = parent.info.experiment_id if parent else experiment_id(client, experiment_name(cfg), cfg.tracking.uri)
        name = scrub_text(run_name(cfg, job_num))
        parent_tag = {"mlflow.parentRunId": parent.info.run_id} if parent else None  # what nests it in the UI
        run = client.create_run(exp_id, run_name=name, tags=parent_tag)
        tracker = MlflowTracker(client, run.info.run_id)
        if parent is not None:
            tags["ocrft.sweep_job"] = str(job_num)
        log.info("MLflow: run %s (%s) in experiment %s at %s", name, tracker.run_id, exp_id, cfg.tracking.uri)
    tracker.set_tags(tags)
    tracker.log_params(_start_params(cfg))
    tracker.log_text(redacted_yaml(cfg), "config.yaml")
    return tracker


def _resumable_run(client, run_dir: Path):
    """The MLflow run named by ``run_dir/run.json``, if it exists in this store."""
    from mlflow.exceptions import MlflowException

    record = RunRecord.read(run_dir)
    run_id = record.mlflow_run_id if record else None
    if not run_id:
        return None
    try:
        run = client.get_run(run_id)
    except MlflowException:
        log.info("MLflow run %s (from %s) is not in this store; starting a new run", run_id, run_dir / "run.json")
        return None
    return run if run.info.lifecycle_stage == "active" else None


def _parent_run(client, run_dir: Path, hc: Optional[DictConfig]):
    """The sweep's parent run (ocrft.tracking.parent_run), if it is in this store. None outside a sweep."""
    from mlflow.exceptions import MlflowException

    run_id = read_parent_run(run_dir, hc)
    if not run_id:
        return None
    try:
        return client.get_run(run_id)
    except MlflowException:
        log.warning("MLflow parent run %s is not in this store; logging this job as a top-level run", run_id)
        return None


def _start_params(cfg: DictConfig) -> dict:
    params = redacted_container(cfg)
    model = params.get("model") or {}
    for key in RESOLVED_BY_TASK:
        if key in model and model[key] is None:
            del model[key]
    return params
