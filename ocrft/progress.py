"""A run's progress as structured events: ``<run_dir>/progress.jsonl``, one JSON object a line.

    {"time": 1796123392.5, "phase": "train", "step": 2, "max_steps": 4, "metrics": {"train/loss": 6.1}}

Phases: ``start`` and ``end`` (with ``status``) from the runner, ``train`` from the Trainer's
logging steps (step, max_steps, loss), ``validation`` from each validation (``val/<metric>``).
Tools that follow a run (the studio's jobs) read this file instead of parsing its log, so a
reworded log line cannot break them. Appended, never rewritten: a resumed run adds to it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

FILE = "progress.jsonl"


class ProgressLog:
    """Appends progress events to ``<run_dir>/progress.jsonl`` (nothing when ``run_dir`` is None:
    a rank other than 0, or a caller with no run folder)."""

    def __init__(self, run_dir: Optional[Path]) -> None:
        self.path = Path(run_dir) / FILE if run_dir is not None else None

    def event(self, phase: str, *, step: Optional[int] = None, max_steps: Optional[int] = None,
              metrics: Optional[dict[str, float]] = None, **fields: Any) -> None:  # fmt: skip
        if self.path is None:
            return
        event: dict[str, Any] = {"time": round(time.time(), 3), "phase": phase}
        event.update({k: v for k, v in (("step", step), ("max_steps", max_steps)) if v is not None})
        if metrics:
            event["metrics"] = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        event.update(fields)
        # One write of one line in append mode: readers never see half an event on a local disk.
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(event) + "\n")


@dataclass
class Progress:
    """What the events of a run say so far: the last phase, step and max_steps, the latest
    value of each metric."""

    phase: Optional[str] = None
    step: Optional[int] = None
    max_steps: Optional[int] = None
    metrics: dict[str, float] = field(default_factory=dict)
    status: Optional[str] = None


def read_progress(run_dir: Path, offset: int = 0, progress: Optional[Progress] = None) -> tuple[Progress, int]:
    """``progress`` (or a new one) updated with the events of ``<run_dir>/progress.jsonl``
    from byte ``offset``; returns it and the offset to read from next. A last line still being
    written is left for the next read."""
    progress = progress or Progress()
    try:
        with open(Path(run_dir) / FILE, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return progress, offset
    complete = data[: data.rfind(b"\n") + 1]
    for line in complete.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line cut by a crash (a full disk): skip it, keep the rest
        progress.phase = event.get("phase", progress.phase)
        progress.step = event.get("step", progress.step)
        progress.max_steps = event.get("max_steps", progress.max_steps)
        progress.status = event.get("status", progress.status)
        progress.metrics.update(event.get("metrics", {}))
    return progress, offset + len(complete)
