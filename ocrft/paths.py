"""Where ocrft keeps what it can rebuild (tiny checkpoints, rendered synthetic data)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$OCRFT_CACHE``, else ``~/.cache/ocrft``."""
    return Path(os.environ.get("OCRFT_CACHE") or Path.home() / ".cache" / "ocrft").expanduser()
