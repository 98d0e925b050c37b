"""``<run_dir>/run.json``, the run record: one dataclass writes and reads it.

Written by the runner (every task) and by the Optuna sweeper (a sweep's folder, ``task:
sweep``); read by tracking (the MLflow run to continue), sweeps (the best job), and the
studio (its Runs tab and jobs). Keys a task adds of its own (``url``, ``model_name``,
``best_trial``) are kept in ``extra`` and written at the top level, as they always were.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from ocrft import atomic

log = logging.getLogger(__name__)

FILE = "run.json"
STATUSES = ("running", "finished", "failed", "pruned")


@dataclass
class RunRecord:
    task: Optional[str] = None  # the runner always sets it; a record written elsewhere may not
    status: str = "running"  # running, then finished, failed or pruned
    start_time: Optional[str] = None  # ISO 8601, UTC
    end_time: Optional[str] = None
    duration_s: Optional[float] = None
    metrics: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)  # what the run wrote: run_dir, config, results, ...
    mlflow_run_id: Optional[str] = None
    error: Optional[str] = None  # of a failed run, secrets scrubbed
    extra: dict[str, Any] = field(default_factory=dict)  # a task's own keys

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        for optional in ("duration_s", "error"):  # absent rather than null, as before the dataclass
            if data[optional] is None:
                data.pop(optional)
        return {**data, **extra}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunRecord":
        known = {f.name for f in fields(cls)} - {"extra"}
        record = cls(**{k: v for k, v in data.items() if k in known})
        record.extra = {k: v for k, v in data.items() if k not in known}
        return record

    @classmethod
    def read(cls, run_dir: str | Path) -> Optional["RunRecord"]:
        """The record in ``run_dir``; None when there is none or it cannot be read (a run that
        died before writing one, a file from elsewhere: said in the log)."""
        path = Path(run_dir) / FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls.from_json(data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, AttributeError) as err:
            log.warning("cannot read %s: %s", path, err)
            return None

    def write(self, run_dir: str | Path) -> Path:
        """Write it atomically: a reader sees the old record or the new one, never half."""
        return atomic.write_json(Path(run_dir) / FILE, self.to_json())
