"""Where ocrft keeps what it can rebuild (tiny checkpoints, rendered synthetic data).

Each entry is built by one process at a time and published whole (ocrft/cache_entry.py),
so several runs and torchrun ranks can share one cache.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$OCRFT_CACHE``, else ``~/.cache/ocrft``."""
    return Path(os.environ.get("OCRFT_CACHE") or Path.home() / ".cache" / "ocrft").expanduser()
