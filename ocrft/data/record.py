"""The one record every reader yields, and the error a bad record raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class Record:
    """One OCR sample: an image and its transcription.

    Attributes:
        id: stable identifier (unique within a dataset).
        image: path of the image file (absolute, or relative to the process's cwd).
        text: the target transcription (for JSON targets: the JSON text).
        prompt: per-sample instruction; None means the run's prompt config.
        group: what must never straddle two splits (a page, a source image); defaults to id.
        meta: reader-specific extras (page, region, source line), kept in result files.
    """

    id: str
    image: str
    text: str
    prompt: Optional[str] = None
    group: Optional[str] = None
    meta: dict = field(default_factory=dict, compare=False, hash=False)


class DataError(ValueError):
    """A bad input file or record; the message names the file and line (or key) at fault."""

    def __init__(self, message: str, path: object = None, line: Optional[int] = None):
        where = f"{path}:{line}: " if path is not None and line is not None else (f"{path}: " if path else "")
        super().__init__(f"{where}{message}")
        self.path = path
        self.line = line
