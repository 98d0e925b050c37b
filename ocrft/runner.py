"""Runs one task inside its run folder: validate, seed, record, track, dispatch.

Every run writes ``<run_dir>/config.yaml`` (resolved, secrets redacted) and
``<run_dir>/run.json`` (task, status, times, metrics, paths, MLflow run id), which tools
read instead of parsing logs.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

from omegaconf import DictConfig, OmegaConf, open_dict

from ocrft import atomic

log = logging.getLogger(__name__)


@dataclass
class RunContext:
    """What a task function gets besides its config."""

    run_dir: Path
    tracker: Any  # ocrft.tracking tracker (NullTracker with tracking=none)


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


def read_run_record(run_dir: Path) -> dict:
    path = Path(run_dir) / "run.json"
    return json.loads(path.read_text()) if path.exists() else {}


def write_run_record(run_dir: Path, record: dict) -> None:
    atomic.write_json(Path(run_dir) / "run.json", record)


def run_task(cfg: DictConfig, task_fn: Callable[[DictConfig, RunContext], TaskResult]) -> dict:
    """Run ``task_fn`` for ``cfg`` and return its metrics (what a sweeper optimises)."""
    from ocrft.redact import redacted_yaml
    from ocrft.tracking import open_tracker
    from ocrft.validate import validate_config

    run_dir = hydra_output_dir() or Path(cfg.run_dir)
    with open_dict(cfg):
        cfg.run_dir = str(run_dir)
    validate_config(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    _seed(cfg.seed)
    atomic.write_text(run_dir / "config.yaml", redacted_yaml(cfg))

    previous = read_run_record(run_dir)
    record = {
        "task": cfg.task,
        "status": "running",
        "start_time": previous.get("start_time", _now()),
        "end_time": None,
        "metrics": {},
        "paths": {"run_dir": str(run_dir), "config": str(run_dir / "config.yaml")},
        "mlflow_run_id": previous.get("mlflow_run_id"),
    }
    write_run_record(run_dir, record)
    t0 = time.time()
    try:
        with open_tracker(cfg, run_dir) as tracker:
            record["mlflow_run_id"] = tracker.run_id
            write_run_record(run_dir, record)
            result = task_fn(cfg, RunContext(run_dir=run_dir, tracker=tracker))
    except BaseException as err:
        record.update(status="failed", end_time=_now(), error=f"{type(err).__name__}: {err}")
        write_run_record(run_dir, record)
        raise
    record.update(status=result.status, end_time=_now(), metrics=result.metrics, **result.extra)
    record["paths"].update(result.paths)
    record["duration_s"] = round(time.time() - t0, 1)
    write_run_record(run_dir, record)
    _print_summary(record)
    return {**result.metrics, "status": result.status}


def _seed(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass


def _print_summary(record: dict) -> None:
    lines = [f"ocrft {record['task']}: {record['status']} in {record.get('duration_s', 0)} s"]
    for k, v in sorted(record["metrics"].items()):
        lines.append(f"  {k:<28} {v:.4f}" if isinstance(v, float) else f"  {k:<28} {v}")
    for k, v in record["paths"].items():
        lines.append(f"  {k + ':':<28} {v}")
    if record.get("mlflow_run_id"):
        lines.append(f"  {'mlflow run:':<28} {record['mlflow_run_id']}")
    log.info("\n".join(lines))
