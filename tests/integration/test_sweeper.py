"""The Optuna sweeper end to end: real Hydra multiruns in subprocesses, one SQLite storage.

Most tests drive tests/assets/sweep_app (simulated training that reports through the real
TrialReporter); the last one sweeps real training with +experiment=demo_sweep.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import REPO

optuna = pytest.importorskip("optuna")
from optuna.trial import TrialState  # noqa: E402

# Each sweep is a subprocess running several trials: slow, except the two that fail at once.
pytestmark = pytest.mark.integration
slow = pytest.mark.slow

APP = REPO / "tests" / "assets" / "sweep_app" / "app.py"
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)


def sweep_command(tmp: Path, *overrides: str, sweep_dir: str = "sweep") -> list[str]:
    return [
        sys.executable, str(APP), "--multirun", "hydra/sweeper=optuna",
        f"hydra.sweep.dir={tmp / sweep_dir}",
        f"hydra.sweeper.storage=sqlite:///{tmp}/optuna.db",
        "hydra.sweeper.study_name=s",
        "hydra.sweeper.heartbeat_interval=1",
        *overrides,
    ]  # fmt: skip


def run(cmd: list[str], cwd: Path, ok: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if ok and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def trials(tmp: Path, name: str = "s") -> list:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp}/optuna.db").get_trials()


def trials_so_far(tmp: Path) -> list:
    """The study's trials while a sweep may still be creating it."""
    try:
        return trials(tmp)
    except Exception:  # no database or no study yet
        return []


def counted(ts: list) -> list:
    return [t for t in ts if t.state in COUNTED]


@pytest.fixture(scope="module")
def pruned_sweep(tmp_path_factory) -> Path:
    """One 10-trial sweep with a median pruner, shared by the tests that only read it."""
    tmp = tmp_path_factory.mktemp("pruned")
    cmd = sweep_command(
        tmp, "hydra.sweeper.n_trials=10", "hydra.sweeper.sampler.type=random",
        "hydra.sweeper.pruner.n_startup_trials=2", "hydra.sweeper.pruner.n_warmup_steps=1",
    )  # fmt: skip
    run(cmd, tmp)
    return tmp


@slow
def test_median_pruner_prunes_and_the_sweep_writes_its_summary(pruned_sweep):
    ts = trials(pruned_sweep)
    assert len(counted(ts)) == len(ts) == 10
    pruned = [t for t in ts if t.state == TrialState.PRUNED]
    assert pruned, "no trial was pruned"
    for t in pruned:  # stopped early: fewer than the 8 simulated steps reported
        assert 2 <= len(t.intermediate_values) < 8
        assert json.loads(Path(t.user_attrs["run_dir"], "run.json").read_text())["status"] == "pruned"
    sweep = pruned_sweep / "sweep"
    # job number = trial number, so each trial's run dir is <sweep dir>/<number>
    assert sorted(int(p.name) for p in sweep.iterdir() if p.is_dir()) == list(range(10))
    assert {t.user_attrs["run_dir"] for t in ts} == {str(sweep / str(t.number)) for t in ts}
    record = json.loads((sweep / "run.json").read_text())
    best = min((t for t in ts if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert record["status"] == "finished" and record["best_trial"]["number"] == best.number
    assert record["study"]["trials"]["pruned"] == len(pruned)
    for plot in ("optimization_history", "param_importances", "intermediate_values"):
        assert (sweep / f"{plot}.png").stat().st_size > 1000


@slow
def test_best_yaml_runs_the_best_trial(pruned_sweep):
    sweep = pruned_sweep / "sweep"
    best = json.loads((sweep / "run.json").read_text())["best_trial"]
    out = pruned_sweep / "rerun"
    out.mkdir()
    run([sys.executable, str(APP), "--config-path", str(sweep), "--config-name", "best"], cwd=out)
    (record,) = [json.loads(p.read_text()) for p in out.glob("outputs/sim/*/run.json")]
    assert record["status"] == "finished"  # no trial to report to: never pruned
    for path, value in best["params"].items():
        assert record["sim"][path.split(".", 1)[1]] == (json.loads(value) if isinstance(value, str) and value[:1] == "[" else value)
    assert record["metrics"]["val/cer"] == pytest.approx(json.loads((sweep / "run.json").read_text())["metrics"]["val/cer"])


@slow
def test_rerunning_the_command_resumes_the_study(pruned_sweep):
    cmd = sweep_command(
        pruned_sweep, "hydra.sweeper.sampler.type=random",
        "hydra.sweeper.pruner.n_startup_trials=2", "hydra.sweeper.pruner.n_warmup_steps=1",
    )  # fmt: skip
    run([*cmd, "hydra.sweeper.n_trials=10"], pruned_sweep)  # complete already: nothing to do
    assert len(trials(pruned_sweep)) == 10
    run([*cmd, "hydra.sweeper.n_trials=12"], pruned_sweep)
    ts = trials(pruned_sweep)
    assert len(counted(ts)) == len(ts) == 12 and [t.number for t in ts] == list(range(12))


@slow
def test_optuna_dashboard_serves_the_study(pruned_sweep):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dashboard = Path(sys.executable).with_name("optuna-dashboard")
    proc = subprocess.Popen(
        [str(dashboard), f"sqlite:///{pruned_sweep}/optuna.db", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline, body = time.time() + 60, None
        while body is None and time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as resp:
                    body = json.loads(resp.read())
            except OSError:
                time.sleep(0.5)
        assert body is not None, "optuna-dashboard did not answer"
        (study,) = [s for s in body["study_summaries"] if s["study_name"] == "s"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{study['study_id']}", timeout=10) as resp:
            detail = json.loads(resp.read())
        assert len(detail["trials"]) >= 10
        assert detail["objective_names"] == ["val/cer"]  # the dashboard's header, not "Objective 0"
        assert {"COMPLETE", "PRUNED"} <= {t["state"].upper() for t in detail["trials"]}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@slow
def test_two_workers_share_one_study(tmp_path):
    common = ["hydra.sweeper.n_trials=6", "hydra.sweeper.pruner.type=none", "sim.step_seconds=0.1"]
    workers = [
        subprocess.Popen(sweep_command(tmp_path, *common, sweep_dir=f"w{i}"), cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for i in range(2)
    ]  # fmt: skip
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    ts = trials(tmp_path)
    numbers = [t.number for t in ts]
    assert len(numbers) == len(set(numbers))
    assert len(counted(ts)) == 6  # never more than n_trials
    # Anything else is a trial that lost the race for the last slot: failed at once, never run.
    assert all(t.state == TrialState.FAIL and t.user_attrs["fail_reason"] == "surplus" for t in ts if t.state not in COUNTED)
    ran_in = {Path(t.user_attrs["run_dir"]).parent.name for t in counted(ts)}
    assert ran_in == {"w0", "w1"}, "both workers should have run trials"


@slow
def test_killed_sweep_resumes_with_the_same_command(tmp_path):
    cmd = sweep_command(tmp_path, "hydra.sweeper.n_trials=4", "hydra.sweeper.pruner.type=none", "sim.step_seconds=0.25")
    first = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline, mid_trial = time.time() + 180, False
        while not mid_trial and time.time() < deadline and first.poll() is None:
            ts = trials_so_far(tmp_path)
            running = [t for t in ts if t.state == TrialState.RUNNING and t.intermediate_values]
            mid_trial = bool(running) and any(t.state == TrialState.COMPLETE for t in ts)
            time.sleep(0.2)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the whole sweep, jobs included, at once
        first.wait(timeout=30)
    assert mid_trial, "the sweep never got mid-trial"
    (killed,) = [t for t in trials(tmp_path) if t.state == TrialState.RUNNING]

    run(cmd, tmp_path)
    ts = trials(tmp_path)
    assert [t.number for t in ts] == list(range(len(ts)))
    assert len(counted(ts)) == 4 and not [t for t in ts if t.state == TrialState.RUNNING]
    assert ts[killed.number].state == TrialState.FAIL
    (rerun,) = [t for t in ts if t.system_attrs.get("failed_trial") == killed.number]
    assert rerun.state == TrialState.COMPLETE and rerun.params == killed.params
    assert len(ts) == 5  # 4 counted + the killed one, nothing lost or duplicated


@slow
def test_ctrl_c_requeues_the_running_trial(tmp_path):
    cmd = sweep_command(tmp_path, "hydra.sweeper.n_trials=2", "hydra.sweeper.pruner.type=none", "sim.step_seconds=0.5")
    # SIG_DFL: a child of a non-interactive shell may inherit SIGINT ignored.
    sweep = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not any(t.intermediate_values for t in trials_so_far(tmp_path)):
            time.sleep(0.2)
        sweep.send_signal(signal.SIGINT)
        assert sweep.wait(timeout=60) != 0
    finally:
        sweep.kill()
    interrupted, queued = trials(tmp_path)
    assert interrupted.state == TrialState.FAIL and interrupted.user_attrs["fail_reason"] == "interrupted"
    assert queued.state == TrialState.WAITING and queued.params == interrupted.params
    run(cmd, tmp_path)  # no heartbeat wait: the queued trial runs first
    ts = trials(tmp_path)
    assert [t.state for t in ts] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]


@slow
def test_failed_and_nan_trials_fail_and_the_study_goes_on(tmp_path):
    run(sweep_command(tmp_path, "hydra.sweeper.n_trials=4", "hydra.sweeper.pruner.type=none",
                      "sim.raise_on_trials=[1]", "sim.nan_on_trials=[2]"), tmp_path)  # fmt: skip
    ts = trials(tmp_path)
    assert len(counted(ts)) == 4 and len(ts) == 6
    assert ts[1].state == TrialState.FAIL and "RuntimeError: simulated crash in trial 1" in ts[1].user_attrs["error"]
    assert ts[2].state == TrialState.FAIL and "nan" in ts[2].user_attrs["error"]


@slow
def test_max_failure_rate_ends_a_sweep_where_everything_fails(tmp_path):
    proc = run(sweep_command(tmp_path, "hydra.sweeper.n_trials=10", "hydra.sweeper.failure_min_trials=3",
                             "sim.always_raise=true"), tmp_path, ok=False)  # fmt: skip
    assert proc.returncode != 0 and "max_failure_rate" in proc.stderr
    ts = trials(tmp_path)
    assert len(ts) == 3 and all(t.state == TrialState.FAIL for t in ts)
    record = json.loads((tmp_path / "sweep" / "run.json").read_text())
    assert record["status"] == "failed" and "simulated crash" in record["error"]
    assert not (tmp_path / "sweep" / "best.yaml").exists()


def test_unknown_key_in_the_search_space_fails_before_any_trial(tmp_path):
    proc = run(sweep_command(tmp_path, "search_space=bad_key"), tmp_path, ok=False)
    assert proc.returncode != 0
    assert "sim.nope: no such key" in proc.stderr and "'wide'" in proc.stderr
    assert not (tmp_path / "optuna.db").exists()  # validated before the study was created
    assert not (tmp_path / "sweep" / "0").exists()


@slow
def test_grid_sampler_ends_with_the_grid_in_batches(tmp_path):
    run(sweep_command(tmp_path, "search_space=grid", "hydra.sweeper.sampler.type=grid", "hydra.sweeper.n_trials=20",
                      "hydra.sweeper.n_jobs=4", "hydra.sweeper.pruner.type=none"), tmp_path)  # fmt: skip
    ts = trials(tmp_path)
    assert len(ts) == 6 and all(t.state == TrialState.COMPLETE for t in ts)
    assert {(t.params["sim.width"], t.params["sim.optimizer"]) for t in ts} == {
        (w, o) for w in (4, 8, 12) for o in ("sgd", "adam")
    }
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir()) == [str(i) for i in range(6)]


def test_sweep_overrides_are_refused(tmp_path):
    proc = run(sweep_command(tmp_path, "sim.width=4,8"), tmp_path, ok=False)
    assert proc.returncode != 0 and "search_space" in proc.stderr


def _perfect_trial(params: list[dict]):
    """A COMPLETE trial with CER 0 at every validation, in the distributions of ``params``."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from ocrft.search import encode_choice

    values, dists = {}, {}
    for p in params:
        if p["type"] == "categorical":
            dists[p["path"]] = CategoricalDistribution([encode_choice(c) for c in p["choices"]])
            values[p["path"]] = encode_choice(p["choices"][0])
        elif p["type"] == "int":
            dists[p["path"]] = IntDistribution(int(p["low"]), int(p["high"]), log=bool(p["log"]), step=int(p["step"] or 1))
            values[p["path"]] = int(p["low"])
        else:
            dists[p["path"]] = FloatDistribution(p["low"], p["high"], log=bool(p["log"]), step=p["step"])
            values[p["path"]] = p["low"]
    return optuna.trial.create_trial(params=values, distributions=dists, value=0.0, intermediate_values={2: 0.0, 4: 0.0})


@pytest.mark.slow
def test_demo_sweep_prunes_real_training_and_best_yaml_runs(tmp_path):
    """+experiment=demo_sweep through python -m ocrft: real training reports its validation CER,
    is pruned (forced: the study already holds a perfect trial), each trial's MLflow child run
    is tagged with its trial number and state, and best.yaml trains again."""
    from mlflow import MlflowClient
    from omegaconf import OmegaConf

    from tests.helpers import compose

    storage = f"sqlite:///{tmp_path}/optuna.db"
    space = OmegaConf.to_container(compose(["+experiment=demo_sweep"]).search_space.params)
    study = optuna.create_study(storage=storage, study_name="demo")
    study.add_trial(_perfect_trial(space))
    cmd = [
        sys.executable, "-m", "ocrft", "--multirun", "+experiment=demo_sweep", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        "train.max_steps=4", "eval.every_n_steps=2", "data.num_train=8", "data.num_val=4", "data.num_test=2",
        "eval.max_new_tokens=4",
        "hydra.sweeper.n_trials=3", "hydra.sweeper.study_name=demo", "hydra.sweeper.pruner.type=median",
        "hydra.sweeper.pruner.n_startup_trials=1",
        "hydra.sweeper.pruner.n_warmup_steps=0", f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp_path}/sweep",
    ]  # fmt: skip
    run(cmd, tmp_path, timeout=900)
    ts = trials(tmp_path, "demo")
    assert [t.state for t in ts] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.PRUNED]
    for t in ts[1:]:  # pruned at the first validation, by the training's own reporter
        assert list(t.intermediate_values) == [2]
        record = json.loads(Path(t.user_attrs["run_dir"], "run.json").read_text())
        assert record["status"] == "pruned" and record["metrics"]["train/global_step"] == 2
        tags = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(record["mlflow_run_id"]).data.tags
        assert (tags["optuna.trial_number"], tags["optuna.state"]) == (str(t.number), "PRUNED")
    parent = (tmp_path / "sweep" / "mlflow_parent_run_id").read_text().strip()
    artifacts = [a.path for a in MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").list_artifacts(parent, "sweep")]
    assert "sweep/best.yaml" in artifacts
    best = tmp_path / "sweep" / "best.yaml"
    assert "trial_number: null" in best.read_text()
    run([sys.executable, "-m", "ocrft", "--config-path", str(tmp_path / "sweep"), "--config-name", "best"],
        cwd=tmp_path, timeout=900)  # fmt: skip
    (record,) = [json.loads(p.read_text()) for p in tmp_path.glob("outputs/train/*/run.json")]
    assert record["status"] == "finished" and "val/cer" in record["metrics"]
    rerun = OmegaConf.load(Path(record["paths"]["config"]))
    assert rerun.train.learning_rate == space[0]["low"] and rerun.trial.trial_number is None
