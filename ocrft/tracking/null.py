"""The tracker of a run that tracks nothing (``tracking=none``, or a rank other than 0)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

if TYPE_CHECKING:  # annotations only; neither imports ocrft.tracking
    import pandas

    from ocrft.data.record import Record


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

    def set_terminal_status(self, status: str) -> None:
        pass

    def log_datasets(
        self, data_cfg: Any, splits: Mapping[str, Sequence[Record]], sources: Mapping[str, str], *, generated: bool
    ) -> None:
        pass

    def log_table(self, frame: pandas.DataFrame, artifact_file: str) -> None:
        pass

    def flush(self) -> None:
        pass
