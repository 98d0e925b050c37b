"""Session-wide test setup: offline Hugging Face, repo paths, composed configs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Any attempt to reach a model hub fails loudly instead of hanging or downloading.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny checkpoints and rendered data go to a per-session cache, not the user's ~/.cache.
os.environ.setdefault("OCRFT_CACHE", tempfile.mkdtemp(prefix="ocrft-test-cache-"))

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


def run(overrides: list[str], run_dir: Path) -> dict:
    """Run a task in-process exactly as the CLI would (compose, validate, record, dispatch);
    returns run.json. Tracking is off unless the overrides turn it on."""
    import json

    from ocrft.__main__ import resolve_task
    from ocrft.runner import run_task

    cfg = compose(["tracking=none", f"run_dir={run_dir}", *overrides])
    run_task(cfg, resolve_task(cfg.task))
    return json.loads((Path(run_dir) / "run.json").read_text())


FAMILY_NAMES = ["gemma3", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "paligemma"]
