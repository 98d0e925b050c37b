"""Parallel trials: the Optuna sweeper hands each batch of `n_jobs` trials to a Hydra launcher.

`hydra/launcher=submitit_local` (what `submitit_slurm` does on a cluster, without one) runs
real ocrft training trials as separate processes at once; `hydra/launcher=joblib` does the
same in a local process pool (driven here through the fast stand-in app of the sweeper tests).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from tests.helpers import REPO, TINY_TRIAL, compose

optuna = pytest.importorskip("optuna")

SWEEP_APP = REPO / "tests" / "assets" / "sweep_app" / "app.py"


@pytest.mark.parametrize(
    "launcher, target",
    [
        ("joblib", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"),
        ("submitit_local", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"),
        ("submitit_slurm", "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"),
    ],
)
def test_launcher_plugins_compose_with_the_optuna_sweeper(launcher, target):
    cfg = compose([f"hydra/launcher={launcher}", "hydra/sweeper=optuna", "search_space=conservative"],
                  return_hydra_config=True)  # fmt: skip
    assert cfg.hydra.launcher._target_ == target
    assert cfg.hydra.sweeper.n_jobs >= 1


def sweep(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc.stdout + proc.stderr


def finished_trials(storage: str, name: str) -> list:
    study = optuna.load_study(study_name=name, storage=storage)
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


@pytest.mark.slow
@pytest.mark.integration
def test_submitit_local_trains_two_trials_at_once(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    sweep([sys.executable, "-m", "ocrft", "--multirun", "+experiment=demo_sweep", "tracking=none",
           "hydra/launcher=submitit_local", "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=2",
           f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=s", f"hydra.sweep.dir={tmp_path / 'sweep'}",
           *TINY_TRIAL], cwd=tmp_path)  # fmt: skip

    assert sorted(t.number for t in finished_trials(storage, "s")) == [0, 1]
    # One submitit job (one process, its own log) per trial ...
    jobs = [p for p in (tmp_path / "sweep" / ".submitit").iterdir() if p.name.isdigit()]  # named by job id (pid)
    assert len(jobs) == 2 and all(list(j.glob("*_result.pkl")) for j in jobs)
    # ... running at the same time.
    records = [json.loads((tmp_path / "sweep" / str(n) / "run.json").read_text()) for n in (0, 1)]
    assert all(r["status"] == "finished" and "val/cer" in r["metrics"] for r in records)
    start = [datetime.fromisoformat(r["start_time"]) for r in records]
    end = [datetime.fromisoformat(r["end_time"]) for r in records]
    assert start[0] <= end[1] and start[1] <= end[0], f"trials ran one after the other: {start} {end}"


@pytest.mark.slow
@pytest.mark.integration
def test_joblib_runs_each_batch_of_trials_in_a_process_pool(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    out = sweep([sys.executable, str(SWEEP_APP), "--multirun", "hydra/sweeper=optuna", "hydra/launcher=joblib",
                 "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=4",
                 "hydra.sweeper.pruner.type=none", f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=s",
                 f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path)  # fmt: skip
    assert out.count("Joblib.Parallel(n_jobs=2") == 2 and out.count("is launching 2 jobs") == 2  # 2 batches of 2
    assert sorted(t.number for t in finished_trials(storage, "s")) == [0, 1, 2, 3]
