"""Session-wide test setup: offline Hugging Face, repo paths, composed configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Any attempt to reach a model hub fails loudly instead of hanging or downloading.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


def compose(overrides: list[str] | None = None, return_hydra_config: bool = False):
    """Compose the real conf/ tree with overrides (as `python -m ocrft` would)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from ocrft.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose("config", overrides=overrides or [], return_hydra_config=return_hydra_config)
