"""Append-only JSONL checkpoints of finished samples: what makes an evaluation resumable.

Local (``ocrft.evaluation.local``) and endpoint (``ocrft.evaluation.endpoint_eval``) evaluations append one JSON line
per finished sample and fsync it before the sample counts as done, so a SIGKILL loses at
most the samples in flight. A kill can cut only the line being written: loading drops an
unreadable line (with a warning), keeps the last row per id (a retried failure supersedes
the failure) and rewrites the file atomically, so every line on disk is whole again.
A full disk cuts a line the same way; the append then truncates the file back to its last
whole line and raises ``ocrft.atomic.DiskFullError``, so the samples before it are kept.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import BinaryIO, Iterable, Optional

from ocrft import atomic

log = logging.getLogger(__name__)


class Checkpoint:
    """The rows of a JSONL checkpoint by ``id``, open for appending.

    Usable as a context manager; ``close()`` compacts the file (one line per id) and closes it.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.rows: dict[str, dict] = {}
        self._file: Optional[BinaryIO] = None
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
        """Record several finished samples (a batch) with one fsync.

        Raises:
            DiskFullError: the disk filled up; the file is cut back to its whole lines.
        """
        rows = {str(row["id"]): row for row in rows}
        data = "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows.values())
        size = self._file.tell()
        kept = f"the {len(self.rows)} finished samples in {self.path.name} are kept"
        try:
            with atomic.naming(self.path, kept):
                view = memoryview(data.encode("utf-8"))
                while view:  # an unbuffered write may take only part of it
                    view = view[self._file.write(view) :]
                os.fsync(self._file.fileno())
        except BaseException:
            os.ftruncate(self._file.fileno(), size)  # no torn line left behind, and the space back
            self._file.seek(size)
            raise
        self.rows.update(rows)

    def compact(self) -> None:
        """Rewrite the file atomically with one line per id, then reopen it for appending."""
        if self._file is not None:
            self._file.close()
        atomic.write_jsonl(self.path, self.rows.values())
        # unbuffered: a failed write leaves nothing pending that close() would try again
        self._file = open(self.path, "ab", buffering=0)

    def close(self) -> None:
        """Compact and close (idempotent)."""
        if self._file is None:
            return
        self.compact()
        self._file.close()
        self._file = None

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self._file is not None:
            # An error is on its way out (a full disk, perhaps): compacting would need space
            # and could hide it; every line on disk is whole, so the next load reads them all.
            self._file.close()
            self._file = None
