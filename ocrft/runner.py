"""Runs one task inside its run folder: validate, seed, record, track, dispatch.

Every run writes ``<run_dir>/config.yaml`` (resolved, secrets redacted),
``<run_dir>/run.json`` (task, status, times, metrics, paths, MLflow run id) and appends to
``<run_dir>/progress.jsonl`` (ocrft.progress), which tools read instead of parsing logs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

from omegaconf import DictConfig, open_dict

from ocrft import atomic
from ocrft.distributed import agree_run_dir, world
from ocrft.progress import ProgressLog
from ocrft.run_record import RunRecord
from ocrft.tracking import Tracker

log = logging.getLogger(__name__)


@dataclass
class RunContext:
    """What a task function gets besides its config."""

    run_dir: Path
    tracker: Tracker  # MlflowTracker, or NullTracker with tracking=none (ocrft.tracking)
    progress: ProgressLog = field(default_factory=lambda: ProgressLog(None))  # progress.jsonl (rank 0)


@dataclass
class TaskResult:
    """What a task function returns: metrics (flat, numeric), paths it wrote, status."""

    metrics: dict[str, float] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    status: str = "finished"  # finished, failed, pruned
    extra: dict[str, Any] = field(default_factory=dict)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def hydra_output_dir() -> Optional[Path]:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return None


def in_multirun() -> bool:
    """Whether this process runs a job of a ``--multirun`` sweep."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def write_run_record(run_dir: Path, record: RunRecord) -> None:
    if world().is_main:  # one record per run: rank 0 of a torchrun/accelerate launch writes it
        record.write(run_dir)


def run_task(cfg: DictConfig, task_fn: Callable[[DictConfig, RunContext], TaskResult]) -> dict:
    """Run ``task_fn`` for ``cfg`` and return its metrics (what a sweeper optimises).

    Any error, a config that fails validation included, ends with ``run.json`` saying
    ``status: failed`` and the error (secrets scrubbed), then propagates.
    """
    from ocrft.redact import redacted_yaml, scrub_text
    from ocrft.tracking import open_tracker
    from ocrft.validate import validate_config

    run_dir = agree_run_dir(hydra_output_dir() or Path(cfg.run_dir))  # all ranks in rank 0's folder
    with open_dict(cfg):
        cfg.run_dir = str(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    previous = RunRecord.read(run_dir)  # a resumed run keeps its start time and MLflow run
    record = RunRecord(
        task=cfg.task,
        start_time=previous.start_time if previous else _now(),
        paths={"run_dir": str(run_dir), "config": str(run_dir / "config.yaml")},
        mlflow_run_id=previous.mlflow_run_id if previous else None,
    )
    t0 = time.time()
    progress = ProgressLog(run_dir if world().is_main else None)
    try:
        progress.event("start", task=cfg.task)
        validate_config(cfg)
        _seed(cfg.seed)
        if world().is_main:
            atomic.write_text(run_dir / "config.yaml", redacted_yaml(cfg))
        write_run_record(run_dir, record)
        with open_tracker(cfg, run_dir) as tracker:
            record.mlflow_run_id = tracker.run_id
            write_run_record(run_dir, record)
            result = task_fn(cfg, RunContext(run_dir=run_dir, tracker=tracker, progress=progress))
            tracker.set_terminal_status(result.status)  # a pruned trial ends KILLED, tagged pruned
    except BaseException as err:
        error = f"{type(err).__name__}: {user_error_message(err) or err}"
        record.status, record.end_time, record.error = "failed", _now(), scrub_text(error)
        try:
            write_run_record(run_dir, record)
            progress.event("end", status="failed")
        except OSError as record_err:  # a full disk: the task's own error is the one to report
            log.warning("could not record the failure in %s: %s", run_dir / "run.json", record_err)
        raise
    record.status, record.end_time, record.metrics = result.status, _now(), result.metrics
    record.extra.update(result.extra)
    record.paths.update(result.paths)
    record.duration_s = round(time.time() - t0, 1)
    write_run_record(run_dir, record)
    progress.event("end", status=result.status, metrics=result.metrics)
    if world().is_main:
        _print_summary(record, cfg)
    return {**result.metrics, "status": result.status}


# Errors that mean "your input or config is wrong", not "ocrft is broken": the CLI reports
# them in one paragraph (``ocrft: error: ...``, exit status 2) instead of a traceback.
# Their messages name the file and line, or the config key, at fault.
EXIT_USER_ERROR = 2


def user_error_message(err: BaseException) -> Optional[str]:
    """The one-paragraph message for a user error (see above); None for anything else."""
    from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

    from ocrft.atomic import disk_full_message
    from ocrft.config import ConfigError
    from ocrft.data.record import DataError
    from ocrft.models.collate import SequenceTooLongError
    from ocrft.models.loading import ModelPathError
    from ocrft.redact import scrub_text

    if (disk_full := disk_full_message(err)) is not None:
        message = disk_full  # ENOSPC/EFBIG/EDQUOT anywhere in the chain: what to free, where
    elif isinstance(err, MissingMandatoryValue):
        key = err.full_key or "a config value"
        message = f"{key} is required but not set: give it on the command line, e.g. {key}=..."
    elif isinstance(err, InterpolationResolutionError):
        message = f"{err.full_key}: cannot resolve its interpolation: {err.msg}"
    elif isinstance(err, FileNotFoundError):
        message = f"file not found: {err.filename}" if err.filename else str(err)
    elif isinstance(err, (DataError, ConfigError, ModelPathError, SequenceTooLongError)):
        message = str(err)
    else:
        return None
    return scrub_text(" ".join(message.split()))


def _seed(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    # torch is seeded by the tasks that use randomness (train); importing it here would cost
    # every task ~1.5 s, a failing one included.


def _print_summary(record: RunRecord, cfg: DictConfig) -> None:
    """The end of every run: metrics, what was written where, and how to look at it."""
    m = record.metrics
    lines = [f"ocrft {record.task}: {record.status} in {record.duration_s or 0} s"]
    if "eval_before/cer" in m and "eval/cer" in m:
        n = int(m.get("eval/num_samples", 0))
        lines.append(f"  CER on {n} held-out samples: before {m['eval_before/cer']:.4f} -> after {m['eval/cer']:.4f}")
    for k, v in sorted(m.items()):
        lines.append(f"  {k:<28} {v:.4f}" if isinstance(v, float) else f"  {k:<28} {v}")
    for k, v in record.paths.items():
        lines.append(f"  {k + ':':<28} {v}")
    if record.mlflow_run_id:
        uri = cfg.tracking.uri
        lines.append(f"  {'mlflow run:':<28} {record.mlflow_run_id} in {uri}")
        lines.append(f"  {'see it with:':<28} mlflow ui --backend-store-uri {uri}")
    log.info("\n".join(lines))
