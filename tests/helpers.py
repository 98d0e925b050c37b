"""Plain helpers the tests import: repo paths, the model families, composing the real conf/
tree and running a task in-process as the CLI would. Fixtures are not here: they live in the
conftest.py beside this file and in the plugins it registers (tests/fixtures/)."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

FAMILY_NAMES = ["gemma3", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "paligemma"]


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
    from ocrft.__main__ import resolve_task
    from ocrft.runner import run_task

    cfg = compose(["tracking=none", f"run_dir={run_dir}", *overrides])
    run_task(cfg, resolve_task(cfg.task))
    return json.loads((Path(run_dir) / "run.json").read_text())


def prepare(tmp_path: Path, fmt: str, *overrides: str):
    """task=prepare's importer for ``data=<fmt>`` called directly (no run record, no tracking):
    its TaskResult; the scratch run folder is ``tmp_path / "run"``."""
    from ocrft.runner import RunContext
    from ocrft.tasks.prepare import run_prepare
    from ocrft.tracking import NullTracker

    cfg = compose(["task=prepare", f"data={fmt}", "tracking=none", f"run_dir={tmp_path / 'run'}", *overrides])
    return run_prepare(cfg, RunContext(run_dir=tmp_path / "run", tracker=NullTracker()))
