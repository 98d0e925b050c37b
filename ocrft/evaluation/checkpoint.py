"""Append-only JSONL checkpoints of finished samples: what makes an evaluation resumable.

Local (``ocrft.evaluation.local``) and endpoint (``ocrft.evaluation.endpoint_eval``) evaluations append one JSON line
per finished sample and fsync it before the sample counts as done, so a SIGKILL loses at
most the samples in flight. A kill can cut only the line being written: loading drops an
unreadable line (with a warning), keeps the last row per id (a retried failure supersedes
the failure) and rewrites the file atomically, so every line on disk is whole again.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import IO, Iterable, Optional

from ocrft import atomic

log = logging.getLogger(__name__)


class Checkpoint:
    """The rows of a JSONL checkpoint by ``id``, open for appending.

    Usable as a context manager; ``close()`` compacts the file (one line per id) and closes it.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.rows: dict[str, dict] = {}
        self._file: Optional[IO[str]] = None
        if self.path.exists():
            bad = 0
            # errors="replace": a line cut inside a multi-byte character is dropped, not fatal
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    row = json.loads(line)
                    self.rows[str(row["id"])] = row
                except (ValueError, KeyError, TypeError):
                    bad += 1
            if bad:
                log.warning("%s: dropped %d unreadable line(s) (a run killed mid-write)", self.path, bad)
        self.compact()

    def append(self, row: dict) -> None:
        """Record one finished sample; it is on disk when this returns."""
        self.extend([row])

    def extend(self, rows: Iterable[dict]) -> None:
        """Record several finished samples (a batch) with one fsync."""
        lines = []
        for row in rows:
            self.rows[str(row["id"])] = row
            lines.append(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        self._file.write("".join(lines))
        self._file.flush()
        os.fsync(self._file.fileno())

    def compact(self) -> None:
        """Rewrite the file atomically with one line per id, then reopen it for appending."""
        if self._file is not None:
            self._file.close()
        atomic.write_jsonl(self.path, self.rows.values())
        self._file = open(self.path, "a", encoding="utf-8")

    def close(self) -> None:
        """Compact and close (idempotent)."""
        if self._file is None:
            return
        self.compact()
        self._file.close()
        self._file = None

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
