"""Session-wide test setup: offline Hugging Face, a per-session cache, the shared fixtures.

Plain helpers (repo paths, compose, run) are in tests/helpers.py; fixtures are here or in the
plugins under tests/fixtures/ that pytest_plugins registers."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.helpers import REPO

pytest_plugins = [
    "tests.fixtures.disk",
    "tests.fixtures.env",
    "tests.fixtures.models",
    "tests.fixtures.runs",
    "tests.fixtures.studio",
]

# Any attempt to reach a model hub fails loudly instead of hanging or downloading.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny checkpoints and rendered data go to a per-session cache, not the user's ~/.cache.
os.environ.setdefault("OCRFT_CACHE", tempfile.mkdtemp(prefix="ocrft-test-cache-"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
