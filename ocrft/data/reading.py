"""What every reader shares: the result it returns, the Reader table entry, bad-record handling.

Kept apart from readers.py so that the folder and dataset readers (line_folder.py,
hf_dataset.py) can use it while readers.py's ``READERS`` table imports them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Callable, Optional

from ocrft import atomic, paths
from ocrft.config import ConfigError, OnError
from ocrft.data.record import DataError, Record

MAX_ERRORS = 10  # messages kept in ReadResult.errors; the counts keep the rest
WHOLE = "all"  # key of Reader.read_splits' answer when the source has no named splits


@dataclass
class ReadResult:
    """What a reader returns: the good records, skip counts by reason, first messages."""

    records: list[Record] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Reader:
    """A format (one ``READERS`` entry).

    Attributes:
        ext: extension of its split files (``<path>/<split><ext>``, what task=prepare writes).
        read: ``(source, on_error="raise", cache_dir=None, **options) -> ReadResult``; reads one
            split's source (a data file; for folder readers also a folder).
        read_splits: for formats whose ``data.path`` is a whole dataset (a line folder, a
            Hugging Face dataset): ``(source, on_error, cache_dir, **options)`` -> split name
            (train/val/test) -> ReadResult, or ``{WHOLE: ReadResult}`` when the source has no
            named splits (loading then splits it by the ratios). None for one-file formats.
        options: ``data.*`` keys passed to ``read``/``read_splits`` as keyword arguments.
    """

    ext: str
    read: Callable[..., ReadResult]
    read_splits: Optional[Callable[..., dict[str, ReadResult]]] = None
    options: tuple[str, ...] = ()


class BadRecord(Exception):
    """Raised by a record builder; the collector turns it into a DataError or a counted skip."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def checked_image(path: Path) -> str:
    """``path`` as a string once it is a file that decodes as an image.

    Raises:
        BadRecord: ``missing_image`` or ``unreadable_image``.
    """
    from ocrft.data.images import check_image

    if not path.is_file():
        raise BadRecord("missing_image", f"image not found: {path}")
    try:
        check_image(path)
    except DataError as e:
        raise BadRecord("unreadable_image", str(e)) from e
    return str(path)


def skip_mode(on_error: str | OnError) -> bool:
    """True for ``data.on_error=skip``; a clear error for an unknown value."""
    try:
        return OnError(on_error) is OnError.skip
    except ValueError:
        raise ConfigError(f"data.on_error={on_error!r}: expected one of {[e.value for e in OnError]}") from None


class Collector:
    """Builds records from rows, applying on_error to bad ones and checking id uniqueness."""

    def __init__(self, path: Path, on_error: str | OnError, cache_dir: Optional[Path]):
        self.skip = skip_mode(on_error)
        self.path = path
        self.base = path.absolute().parent
        self.cache_dir = Path(cache_dir) if cache_dir is not None else paths.cache_dir() / "images"  # decoded data: URLs
        self.result = ReadResult()
        self.ids: set[str] = set()

    def bad(self, reason: str, message: str, line: Optional[int], path: Optional[Path] = None) -> None:
        """Raise a DataError naming the file (``path``, default the data file) and line, or
        count the record as skipped with ``reason`` under ``on_error=skip``."""
        err = DataError(message, path if path is not None else self.path, line)
        if not self.skip:
            raise err
        self.note(reason, str(err))

    def note(self, reason: str, message: str) -> None:
        """Count a skipped record and keep its message if fewer than MAX_ERRORS are kept."""
        self.result.skipped[reason] += 1
        if len(self.result.errors) < MAX_ERRORS:
            self.result.errors.append(f"{message} [{reason}]")

    def add(self, build: Callable[..., dict], row: dict, line: int, fallback_id: str, label: str = "") -> None:
        try:
            fields = build(row, self.base, self.cache_dir)
        except BadRecord as e:
            return self.bad(e.reason, f"{label}{e}", line)
        rid = row.get("id")
        if isinstance(rid, bool) or not isinstance(rid, (str, int)) or rid == "":
            rid = fallback_id
        rid = str(rid)
        if rid in self.ids:
            return self.bad("duplicate_id", f"{label}duplicate id {rid!r}", line)
        self.ids.add(rid)
        fields.setdefault("group", fields["image"])  # one image never lands in two splits
        self.result.records.append(Record(id=rid, **fields))


def cache_image_bytes(raw: bytes, suffix: str, cache_dir: Path) -> str:
    """Write image bytes to ``cache_dir/<sha256 prefix><suffix>`` (once) and return the path.

    Named by content, so the same image read twice (or by two runs) is stored once.
    """
    out = cache_dir.expanduser() / f"{sha256(raw).hexdigest()[:24]}{suffix}"
    if not out.exists():
        atomic.write_bytes(out, raw)
    return str(out)
