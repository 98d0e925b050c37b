"""Experiment tracking. Interim: only tracking=none until the MLflow tracker lands."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator, Optional


class NullTracker:
    """Tracker used with tracking=none: every call is accepted and ignored."""

    run_id: Optional[str] = None

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: Optional[int] = None) -> None:
        pass

    def log_artifact(self, path: str | Path, artifact_path: Optional[str] = None) -> None:
        pass

    def set_tags(self, tags: dict[str, Any]) -> None:
        pass

    def trainer_callback(self):
        return None


@contextlib.contextmanager
def open_tracker(cfg, run_dir: Path) -> Iterator[NullTracker]:
    if cfg.tracking.enabled:
        raise NotImplementedError("tracking=mlflow is not implemented yet; use tracking=none")
    yield NullTracker()
