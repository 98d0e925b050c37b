"""A hub id with no network: one `ocrft: error:` line, fast, naming the id, the cache and the fixes;
a hub id already in the cache loads without the network.

Each case runs `python -m ocrft` in a subprocess with an empty (or hand-filled) HF_HOME and
HF_ENDPOINT pointed at a closed local port: a real refused connection, nothing mocked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.servers import free_port

HUB_ID = "Qwen/Qwen2-VL-2B-Instruct"  # conf/model/qwen2_vl_2b.yaml
FIXES = ("model.path to a local checkpoint folder", "HF_HUB_OFFLINE=1", "network")
BOUND_S = 20  # huggingface_hub's own retries took ~55 s here before the check


def _env(hf_home: Path, offline: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "HUGGINGFACE_"))}
    env.update(HF_HOME=str(hf_home), HF_ENDPOINT=f"http://127.0.0.1:{free_port()}", HF_HUB_DISABLE_TELEMETRY="1")
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def _ocrft(args: list[str], env: dict[str, str], run_dir: Path) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "ocrft", *args, "tracking=none", f"run_dir={run_dir}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return proc, time.monotonic() - t0


@pytest.mark.parametrize("offline", [False, True], ids=["hub_unreachable", "hf_hub_offline"])
def test_uncached_hub_id_without_network_is_one_error_line(tmp_path, offline):
    hf_home = tmp_path / "hf_home"
    hf_home.mkdir()
    env = _env(hf_home, offline)
    args = ["task=eval", "model=qwen2_vl_2b", "data=synthetic", "data.num_test=2"]
    proc, seconds = _ocrft(args, env, tmp_path / "run")

    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ocrft: error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    error = errors[0]
    assert f"model.path='{HUB_ID}'" in error
    assert "not in the local Hugging Face cache" in error and str(hf_home / "hub") in error
    for fix in FIXES:
        assert fix in error, (fix, error)
    if offline:
        assert "HF_HUB_OFFLINE is set" in error
    else:
        assert env["HF_ENDPOINT"] in error and "tried once" in error
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "Retrying in" not in proc.stderr  # huggingface_hub's backoff never started
    assert seconds < BOUND_S, seconds


def _fill_cache(hf_home: Path, repo_id: str, checkpoint: Path) -> None:
    """The hub cache layout `hf download` writes: refs/main names a snapshot holding the files."""
    commit = "0" * 40
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(checkpoint, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_cached_hub_id_loads_while_the_hub_is_unreachable(tmp_path):
    from ocrft.models.loading import ensure_tiny

    repo_id = "ocrft-test/tiny-qwen2-vl"
    hf_home = tmp_path / "hf_home"
    _fill_cache(hf_home, repo_id, ensure_tiny("qwen2_vl"))
    env = _env(hf_home, offline=False)
    args = ["task=eval", "model=tiny_qwen2_vl", f"model.path={repo_id}", "data=synthetic", "data.num_test=2",
            "eval.max_new_tokens=2"]  # fmt: skip
    proc, seconds = _ocrft(args, env, tmp_path / "run")

    output = proc.stdout + proc.stderr  # Hydra's log handler writes to stdout
    assert proc.returncode == 0, output[-3000:]
    assert f"loading {repo_id} from the local cache {hf_home / 'hub'} in offline mode" in output
    assert "Retrying in" not in output  # files the cache lacks were not retried either
    assert (tmp_path / "run" / "results.json").exists()
    assert seconds < BOUND_S * 2, seconds
