"""Plain helpers the tests import: repo paths, the model families, composing the real conf/
tree and running a task in-process as the CLI would, launching a process group, and the
overrides of the tiny runs several modules start. Fixtures are not here: they live in the
conftest.py beside this file and in the plugins it registers (tests/fixtures/)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

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


def launch(cmd: list[str], cwd: Path, timeout: float = 400, env: dict[str, str] | None = None) -> str:
    """Run a launcher and its worker processes (one process group); returns their output."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        out = proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the workers too: a hung rank outlives its launcher
        out = proc.communicate()[0]
        pytest.fail(f"{cmd[2]} did not finish in {timeout} s (a rank waiting on a collective?)\n{out[-6000:]}")
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out[-8000:]}"
    return out


# A studio job: 4 steps of the offline tiny Qwen2-VL on synthetic lines, then a 4-token eval.
TINY_JOB = ["model=tiny_qwen2_vl", "data=synthetic", "data.num_train=8", "data.num_val=2", "data.num_test=2",
            "train.max_steps=4", "tracking=none", "eval.before_after=false", "eval.max_new_tokens=4"]  # fmt: skip
# Long enough to be cancelled mid-way (a checkpoint every 2 steps; at 60 steps an idle machine
# finished before the cancel landed), short enough to resume to the end.
LONG_JOB = [*TINY_JOB[:-4], "train.max_steps=200", "train.save_steps=2", "train.logging_steps=1",
            "train.per_device_train_batch_size=2", "tracking=none", "eval.before_after=false", "eval.max_new_tokens=4"]  # fmt: skip
# A sweep trial that trains the tiny model for 2 steps and validates once: seconds, not minutes.
TINY_TRIAL = [
    "train.max_steps=2", "eval.every_n_steps=2", "data.num_train=8", "data.num_val=2", "data.num_test=2",
    "eval.val_subset=2", "eval.max_new_tokens=4", "eval.limit=2",
]  # fmt: skip
