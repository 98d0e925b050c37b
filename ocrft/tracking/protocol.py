"""The Tracker protocol: what task code may call on ``ctx.tracker``, whichever tracker it got.

``open_tracker`` (ocrft.tracking.runs) hands a run an ``MlflowTracker`` with ``tracking=mlflow``
and a ``NullTracker`` with ``tracking=none`` (and on every rank but 0); both implement it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Protocol, Sequence

if TYPE_CHECKING:  # annotations only; neither imports ocrft.tracking
    import pandas

    from ocrft.data.record import Record


class Tracker(Protocol):
    """One run's tracker: params, metrics, tags, artifacts, dataset inputs and how it ends."""

    @property
    def run_id(self) -> Optional[str]:
        """The MLflow run's id; None when nothing is tracked."""

    def log_params(self, params: dict[str, Any]) -> None:
        """Log params; nested dicts become dotted keys. Params are write-once."""

    def log_metrics(self, metrics: dict[str, float], step: Optional[int] = None) -> None:
        """Log numeric metrics at ``step`` (buffered; ``flush`` sends them)."""

    def log_artifact(self, path: str | Path, artifact_path: Optional[str] = None) -> None:
        """Log a file, or a folder under its own name (or ``artifact_path``)."""

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Set run tags."""

    def set_terminal_status(self, status: str) -> None:
        """How the run ends if no exception escapes: finished, failed, pruned or killed."""

    def log_datasets(
        self, data_cfg: Any, splits: Mapping[str, Sequence[Record]], sources: Mapping[str, str], *, generated: bool
    ) -> None:
        """Log each non-empty split (name -> records, read from ``sources[name]``) as a dataset
        input; ``generated``: rendered on the fly (``LoadedData.generated``), not read from files."""

    def log_table(self, frame: pandas.DataFrame, artifact_file: str) -> None:
        """Log a DataFrame as the table ``artifact_file`` (.json), replacing an earlier one."""

    def flush(self) -> None:
        """Send buffered metrics now."""
