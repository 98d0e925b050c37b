"""A multirun as one MLflow parent run, with each job's run (ocrft.tracking.runs) as its child.

Hydra calls the callback below (conf/config.yaml, ``hydra.callbacks.mlflow_sweep``) at the
start and end of every ``--multirun``, whichever sweeper and launcher run the jobs.
"""

from __future__ import annotations

import atexit
import logging
import math
import time
from pathlib import Path
from typing import Any, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ocrft.redact import scrub_text
from ocrft.run_record import RunRecord
from ocrft.tracking.experiment import experiment_id, experiment_name
from ocrft.tracking.mlflow_tracker import MlflowTracker
from ocrft.tracking.parent_run import clear_parent_run, write_parent_run
from ocrft.tracking.tags import base_tags

log = logging.getLogger(__name__)


class MlflowSweepCallback(Callback):
    """Hydra callback: a multirun is one MLflow parent run; each job's run is its child.

    on_multirun_start creates the parent in the store and experiment the jobs will use and
    publishes its id for the jobs (ocrft.tracking.parent_run).
    on_multirun_end logs job counts by status and the best objective value (the Optuna
    sweeper's ``metric``, else ``val/<eval.metric>``; read from each job's run.json) on the
    parent and ends it. A sweep that dies before that (Hydra's basic sweeper re-raises a job's
    error) ends the parent FAILED at exit.
    """

    def __init__(self) -> None:
        self._tracker: Optional[MlflowTracker] = None
        self._config: Optional[DictConfig] = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not config.tracking.enabled:
            return
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=config.tracking.uri)
        sweep_dir = Path(config.hydra.sweep.dir)
        exp_id = experiment_id(client, experiment_name(config), config.tracking.uri)
        name = config.get("run_name") or f"sweep-{config.task}-{time.strftime('%Y%m%d-%H%M%S')}"
        run = client.create_run(exp_id, run_name=scrub_text(name))
        self._tracker, self._config = MlflowTracker(client, run.info.run_id), config
        self._tracker.set_tags(
            {
                **base_tags(config, list(config.hydra.overrides.task)),
                "ocrft.sweep": "true",
                "ocrft.sweep_dir": str(sweep_dir.resolve()),
                "ocrft.sweeper": OmegaConf.select(config, "hydra.sweeper._target_") or "",
            }
        )
        write_parent_run(sweep_dir, run.info.run_id)
        atexit.register(self._finish, "failed")
        log.info("MLflow: sweep parent run %s in experiment %s", run.info.run_id, exp_id)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra's basic sweeper saved multirun.yaml as typed, before any ocrft code ran.
        # (Hydra's own config, not ocrft.runner's helpers: the runner imports tracking.)
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            from ocrft.redact import redact_saved_config

            # The job's folder is <sweep dir>/<job number> (conf/config.yaml, hydra.sweep.subdir).
            redact_saved_config(Path(HydraConfig.get().runtime.output_dir).parent / "multirun.yaml")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._finish("finished")

    def _finish(self, status: str) -> None:
        tracker, config = self._tracker, self._config
        if tracker is None or config is None:
            return
        self._tracker = None
        atexit.unregister(self._finish)
        clear_parent_run(tracker.run_id)
        try:
            # The Optuna sweeper names its objective; other sweepers get the validation metric.
            objective = OmegaConf.select(config, "hydra.sweeper.metric") or f"val/{config.eval.metric}"
            direction = OmegaConf.select(config, "hydra.sweeper.direction")
            greater = direction == "maximize" if direction else config.eval.greater_is_better
            metrics, tags = sweep_summary(Path(config.hydra.sweep.dir), objective, greater)
            tracker.log_metrics(metrics)
            tracker.set_tags({**tags, "ocrft.objective": objective})
            tracker.set_terminal_status(status)
            tracker.close()
        except Exception as err:  # noqa: BLE001 - at exit there is nobody left to raise to
            log.error("MLflow: could not end sweep run %s: %s", tracker.run_id, err)


def sweep_summary(sweep_dir: Path, objective: str, greater_is_better: bool) -> tuple[dict[str, float], dict[str, str]]:
    """Job counts by status and the best ``objective`` over the jobs' run.json files.

    Returns:
        metrics (``sweep/jobs``, ``sweep/<status>``, ``best/<objective>``) and tags naming the
        best job's run folder and MLflow run.
    """
    found = [RunRecord.read(p.parent) for p in sorted(sweep_dir.glob("*/run.json"))]
    records = [r for r in found if r is not None]
    metrics = {"sweep/jobs": float(len(records))}
    for status in ("finished", "failed", "pruned", "running"):
        metrics[f"sweep/{status}"] = float(sum(r.status == status for r in records))
    scored = [
        r
        for r in records
        if r.status == "finished" and isinstance(r.metrics.get(objective), (int, float)) and math.isfinite(r.metrics[objective])
    ]
    tags: dict[str, str] = {}
    if scored:
        pick = max if greater_is_better else min
        best = pick(scored, key=lambda r: r.metrics[objective])
        metrics[f"best/{objective}"] = float(best.metrics[objective])
        tags = {"ocrft.best_run_dir": best.paths.get("run_dir", ""), "ocrft.best_mlflow_run_id": best.mlflow_run_id or ""}
    return metrics, tags
