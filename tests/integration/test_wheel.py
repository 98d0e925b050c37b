"""The wheel is a working install: conf/ inside it, user configs from a folder of one's own.

Builds the wheel from the repo's sources, installs it (no dependencies: no network) into a
fresh venv that borrows the project venv's site-packages for the dependencies, and runs the
``ocrft`` console script from a folder outside the repo.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = [pytest.mark.slow, pytest.mark.integration]

# What a build reads; copied so that the build leaves no build/ or egg-info in the checkout.
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "ocrft", "hydra_plugins", "conf")

USER_MODEL = """\
# A model entry of the user's own: the tiny offline Qwen2-VL under another name.
defaults:
  - base_model

family: qwen2_vl
path: tiny:qwen2_vl
"""
USER_EXPERIMENT = """\
# @package _global_
defaults:
  - override /model: my_tiny
  - override /data: synthetic

experiment_name: my_lines
data:
  num_train: 4
  num_val: 1
  num_test: 2
train:
  max_steps: 2
  per_device_train_batch_size: 2
eval:
  before_after: false
  max_new_tokens: 4
"""


def pip(*args: str) -> None:
    # The project venv's pip, offline: nothing is downloaded, build dependencies included.
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args, "--no-index", "-q"], check=True,
                   capture_output=True, text=True, timeout=120)  # fmt: skip


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the built wheel installed; returns its bin/ folder."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, src / name)
    pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), str(src))
    (wheel,) = (root / "dist").glob("ocrft-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n.removeprefix("ocrft/conf/") for n in names if n.startswith("ocrft/conf/")}
    assert shipped == {str(p.relative_to(REPO / "conf")) for p in (REPO / "conf").rglob("*.yaml")}

    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    # The dependencies come from the project venv, after the fresh site-packages: a .pth line
    # only appends a folder, so the project's editable-install finder is not loaded.
    (Path(site) / "ocrft_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # pip sees the project's own ocrft through the .pth but leaves it alone ("outside environment").
    pip("--python", str(python), "install", "--no-deps", str(wheel))
    return venv / "bin"


def ocrft(bin_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.run([bin_dir / "ocrft", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_installed_package_is_the_wheel_not_the_checkout(installed, tmp_path):
    where = subprocess.run([installed / "python", "-c", "import ocrft.conf_dir as c; print(c.__file__); print(c.CONF_DIR)"],
                           cwd=tmp_path, check=True, capture_output=True, text=True).stdout.split()  # fmt: skip
    assert not where[0].startswith(str(REPO)) and Path(where[1]) == Path(where[0]).parent / "conf"


def test_help_runs_from_outside_the_repo(installed, tmp_path):
    result = ocrft(installed, tmp_path, "--help")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "== Configuration groups ==" in result.stdout and "qwen2_5_vl_3b" in result.stdout


def test_two_step_training_with_an_experiment_from_a_user_config_folder(installed, tmp_path):
    user = tmp_path / "my_configs"
    (user / "model").mkdir(parents=True)
    (user / "experiment").mkdir()
    (user / "model" / "my_tiny.yaml").write_text(USER_MODEL)
    (user / "experiment" / "my_lines.yaml").write_text(USER_EXPERIMENT)
    run_dir = tmp_path / "run"
    result = ocrft(installed, tmp_path, "--config-dir", str(user), "+experiment=my_lines", "tracking=none", f"run_dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "finished" and run["metrics"]["train/global_step"] == 2
    config = (run_dir / "config.yaml").read_text()
    assert "experiment_name: my_lines" in config and "path: tiny:qwen2_vl" in config
    assert Path(run["paths"]["model"]).is_dir()
