"""Several sweep workers, one study: PostgreSQL for Optuna and for an MLflow server.

The multi-machine set-up of docs/scale.md on one machine: a throwaway PostgreSQL server
(tests/postgres.py installs it when missing) holds the Optuna storage and the MLflow
server's backend store, and two `python -m ocrft --multirun` workers, started at the same
moment, train real trials of one study against both.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from tests.helpers import TINY_TRIAL
from tests.postgres import PostgresServer, PostgresUnavailable
from tests.servers import mlflow_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def postgres():
    try:
        server = PostgresServer()
    except PostgresUnavailable as err:
        pytest.skip(f"PostgreSQL cannot be installed here: {err}")
    with server:
        yield server


@pytest.fixture(scope="module")
def mlflow_on_postgres(postgres, tmp_path_factory):
    """`mlflow server` with its runs in PostgreSQL and artifacts proxied to a folder."""
    root = tmp_path_factory.mktemp("mlflow")
    with mlflow_server(root, postgres.create_database("mlflow")) as url:
        yield url


def test_two_sweep_workers_share_one_study_and_one_mlflow_server(postgres, mlflow_on_postgres, tmp_path):
    from mlflow import MlflowClient

    storage = postgres.create_database("optuna")
    common = [
        sys.executable, "-m", "ocrft", "--multirun", "+experiment=demo_sweep",
        f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=shared",
        "hydra.sweeper.n_trials=2", "hydra.sweeper.pruner.type=none",
        f"tracking.uri={mlflow_on_postgres}", "tracking.experiment=shared-sweep", *TINY_TRIAL,
    ]  # fmt: skip
    # Both start at once, as two machines would: they also race to create the storage's tables.
    workers = [
        subprocess.Popen([*common, f"hydra.sweep.dir={tmp_path / f'w{i}'}"], cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for i in range(2)
    ]  # fmt: skip
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], "\n\n".join(o[-4000:] for o in outputs)

    study = optuna.load_study(study_name="shared", storage=storage)
    done = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(done) == 2  # n_trials for the study, not per worker
    assert len({t.number for t in study.trials}) == len(study.trials)
    ran_in = {Path(t.user_attrs["run_dir"]).parent.name for t in done}
    assert ran_in == {"w0", "w1"}, "each worker should have run one of the study's trials"

    client = MlflowClient(tracking_uri=mlflow_on_postgres)
    experiment = client.get_experiment_by_name("shared-sweep")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("ocrft.sweep") == "true"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 2  # one per worker
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {p.info.run_id for p in parents}
    assert sorted(int(r.data.tags["optuna.trial_number"]) for r in children) == sorted(t.number for t in done)
    assert all(r.info.status == "FINISHED" and "val/cer" in r.data.metrics for r in children)
    assert all(r.data.params["trial.study_name"] == "shared" for r in children)
