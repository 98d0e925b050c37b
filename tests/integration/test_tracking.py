"""MLflow tracking against real stores: a SQLite file, a local `mlflow server`, the MLflow UI.

Runs go through the real runner (ocrft.runner.run_task) with task functions that cost
nothing, and everything is read back with MlflowClient from the store itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests import servers

from ocrft import tracking
from ocrft.redact import REDACTED
from ocrft.runner import TaskResult, run_task
from ocrft.tracking import mlflow_tracker, parent_run
from ocrft.tracking.experiment import experiment_name
from tests.helpers import REPO, compose

pytestmark = pytest.mark.integration
TOY_APP = REPO / "tests" / "assets" / "toy_app" / "toy.py"


def client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One SQLite store for the module: creating its tables takes seconds, a run milliseconds."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    client(uri).search_experiments()
    return uri


def run(uri: str, run_dir: Path, task_fn, *overrides: str, experiment: str = "tests") -> dict:
    cfg = compose([f"tracking.uri={uri}", f"run_dir={run_dir}", f"tracking.experiment={experiment}", *overrides])
    return run_task(cfg, task_fn)


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def artifact_paths(uri: str, run_id: str, path: str | None = None) -> set[str]:
    out = set()
    for item in client(uri).list_artifacts(run_id, path):
        out |= artifact_paths(uri, run_id, item.path) if item.is_dir else {item.path}
    return out


def finished(cfg, ctx) -> TaskResult:
    ctx.tracker.log_metrics({"eval/cer": 0.25}, step=1)
    return TaskResult(metrics={"eval/cer": 0.25})


def test_run_logs_config_tags_metrics_and_artifacts(store, tmp_path):
    def task(cfg, ctx):
        ctx.tracker.log_metrics({"eval/cer": 0.25, "eval/wer": 0.5, "note": "not a number"}, step=3)
        (ctx.run_dir / "results.json").write_text('{"overall_cer": 0.25}')
        adapter = ctx.run_dir / "adapter"
        adapter.mkdir()
        (adapter / "adapter_config.json").write_text('{"r": 16}')
        (adapter / "adapter_model.safetensors").write_bytes(b"\x00\x01")
        ctx.tracker.log_artifact(ctx.run_dir / "results.json")
        ctx.tracker.log_artifact(adapter)
        ctx.tracker.log_params({"extra": {"nested": [1, 2]}})
        ctx.tracker.set_tags({"ocrft.note": "hello"})
        return TaskResult(metrics={"eval/cer": 0.25})

    run_dir = tmp_path / "run"
    run(store, run_dir, task, "train.learning_rate=3e-4", "+notes.long=" + "x" * 7000)
    run_id = record(run_dir)["mlflow_run_id"]
    r = client(store).get_run(run_id)

    assert r.info.status == "FINISHED"
    assert r.info.run_name.startswith("train-tiny:qwen2_vl-")
    assert client(store).get_experiment(r.info.experiment_id).name == "tests"
    # artifacts live beside the SQLite file, not in whatever the cwd was
    assert r.info.artifact_uri.startswith(str(Path(store[len("sqlite:///"):]).parent / "mlruns"))

    p = r.data.params
    assert p["train.learning_rate"] == "0.0003"
    assert p["model.family"] == "qwen2_vl"
    assert p["data.font_size"] == "[22, 26]"  # lists as JSON
    assert p["peft.target_modules"] == "None"
    assert p["data.on_error"] == "raise"  # enums by value
    assert p["extra.nested"] == "[1, 2]"
    assert len(p["notes.long"]) == 6000  # MLflow's limit: truncated, not rejected

    t = r.data.tags
    assert t["ocrft.task"] == "train"
    assert t["ocrft.model_family"] == "qwen2_vl"
    assert t["ocrft.model_path"] == "tiny:qwen2_vl"
    assert t["ocrft.dataset"] == "synthetic"
    assert t["ocrft.run_dir"] == str(run_dir.resolve())
    assert t["ocrft.status"] == "finished"
    assert t["ocrft.note"] == "hello"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    if head.returncode == 0:
        assert t["mlflow.source.git.commit"] == head.stdout.strip()

    assert r.data.metrics == {"eval/cer": 0.25, "eval/wer": 0.5}
    assert [m.step for m in client(store).get_metric_history(run_id, "eval/cer")] == [3]
    assert artifact_paths(store, run_id) == {
        "config.yaml",
        "results.json",
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
    }
    config_yaml = Path(client(store).download_artifacts(run_id, "config.yaml", str(tmp_path)))
    assert "learning_rate: 0.0003" in config_yaml.read_text()


def test_trainer_callback_names_and_batches_metrics(store, tmp_path, monkeypatch):
    from transformers import TrainerControl, TrainerState

    from ocrft.training.callbacks import TrackerCallback

    monkeypatch.setattr(mlflow_tracker, "FLUSH_SECONDS", 3600.0)  # only on_train_end flushes
    seen_before_flush = []

    def task(cfg, ctx):
        callback = TrackerCallback(ctx.tracker)
        state, control = TrainerState(), TrainerControl()
        for step in (1, 2, 3):
            state.global_step = step
            logs = {"loss": 1.0 / step, "learning_rate": 1e-4, "grad_norm": 0.5, "epoch": step / 3, "val/cer": 0.1}
            callback.on_log(None, state, control, logs=logs)
        seen_before_flush.append(client(store).get_metric_history(ctx.tracker.run_id, "train/loss"))
        callback.on_train_end(None, state, control)
        return TaskResult()

    run_dir = tmp_path / "run"
    run(store, run_dir, task)
    run_id = record(run_dir)["mlflow_run_id"]
    assert seen_before_flush == [[]]  # buffered: no store write per step
    history = client(store).get_metric_history(run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 0.5), (3, pytest.approx(1 / 3))]
    assert set(client(store).get_run(run_id).data.metrics) == {
        "train/loss", "train/learning_rate", "train/grad_norm", "train/epoch", "val/cer"}


@pytest.mark.parametrize(
    "key, name",
    [("loss", "train/loss"), ("grad_norm", "train/grad_norm"), ("eval_loss", "eval/loss"),
     ("train_runtime", "train/runtime"), ("train_loss", "train/mean_loss"), ("val/cer", "val/cer"),
     ("mean_token_accuracy", "train/mean_token_accuracy")],
)
def test_hf_metric_names(key, name):
    from ocrft.training.callbacks import hf_metric_name

    assert hf_metric_name(key) == name


def test_experiment_name_precedence():
    assert experiment_name(compose(["task=eval"])) == "eval"
    assert experiment_name(compose(["experiment_name=demo"])) == "demo"
    assert experiment_name(compose(["experiment_name=demo", "tracking.experiment=mine"])) == "mine"


def test_new_experiment_opens_on_the_runs_table(store, tmp_path):
    # mlflow.experimentKind=custom_model_development: MLflow 3's UI shows the runs table, not
    # the GenAI traces overview (the values are in mlflow/server/js)
    run(store, tmp_path / "run", finished, experiment="kind-check")
    exp = client(store).get_experiment_by_name("kind-check")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"


EVAL = ["task=eval", "data=tiny_ocr", "data.train_ratio=0.5", "data.val_ratio=0.25", "eval.limit=2"]


def test_eval_split_is_logged_as_a_dataset_input(store, tmp_path):
    from ocrft.evaluation.evaluate import load_eval_split
    from ocrft.tracking.inputs import records_digest

    seen = []

    def task(cfg, ctx):
        seen.extend(load_eval_split(cfg, ctx.run_dir, ctx.tracker))
        return TaskResult()

    run(store, tmp_path / "run", task, *EVAL)
    (di,) = client(store).get_run(record(tmp_path / "run")["mlflow_run_id"]).inputs.dataset_inputs
    assert {t.key: t.value for t in di.tags} == {"mlflow.data.context": "test"}
    assert di.dataset.name == "json_ocr:tests/assets/tiny_ocr/ocr.json"
    assert di.dataset.digest == records_digest(seen[:2]) and len(seen) == 2
    assert json.loads(di.dataset.profile) == {"num_rows": 2}
    assert json.loads(di.dataset.source) == {"uri": str((REPO / "tests/assets/tiny_ocr/ocr.json").resolve())}
    # the same samples read again (a resumed or repeated eval) are the same dataset: same digest
    run(store, tmp_path / "again", task, *EVAL)
    (again,) = client(store).get_run(record(tmp_path / "again")["mlflow_run_id"]).inputs.dataset_inputs
    assert again.dataset.digest == di.dataset.digest



def test_analyze_and_prepare_log_the_splits_they_read_and_wrote(store, tmp_path):
    from ocrft.tasks.analyze import run_analyze
    from ocrft.tasks.prepare import run_prepare

    def contexts(run_dir: Path) -> dict[str, int]:
        run_id = record(run_dir)["mlflow_run_id"]
        inputs = client(store).get_run(run_id).inputs.dataset_inputs
        return {di.tags[0].value: json.loads(di.dataset.profile)["num_rows"] for di in inputs}

    run(store, tmp_path / "analyze", run_analyze, "task=analyze", "data=tiny_ocr")
    assert set(contexts(tmp_path / "analyze")) == {"train", "validation", "test"}
    out = tmp_path / "prepared"
    run(store, tmp_path / "prepare", run_prepare, "task=prepare", "data=tiny_ocr", f"data.output_dir={out}")
    written = {s: len(json.loads((out / f"{s}.json").read_text())) for s in ("train", "val", "test")}
    assert contexts(tmp_path / "prepare") == {
        {"val": "validation"}.get(s, s): n for s, n in written.items() if n}

def test_tracking_none_and_non_zero_ranks_log_nothing(tmp_path, monkeypatch):
    assert run("sqlite:///unused.db", tmp_path / "a", finished, "tracking=none")["eval/cer"] == 0.25
    assert record(tmp_path / "a")["mlflow_run_id"] is None
    trackers = []

    def task(cfg, ctx):
        trackers.append(type(ctx.tracker))
        return TaskResult()

    monkeypatch.setenv("RANK", "1")  # torchrun: only rank 0 tracks
    run(f"sqlite:///{tmp_path}/never.db", tmp_path / "b", task)
    assert trackers == [tracking.NullTracker]
    assert not (tmp_path / "never.db").exists()


def test_failed_run_is_marked_failed_with_the_error(store, tmp_path):
    def task(cfg, ctx):
        raise ValueError("bad sample 7")

    with pytest.raises(ValueError, match="bad sample 7"):
        run(store, tmp_path / "run", task)
    rec = record(tmp_path / "run")
    r = client(store).get_run(rec["mlflow_run_id"])
    assert rec["status"] == "failed"
    assert r.info.status == "FAILED"
    assert r.data.tags["ocrft.error"] == "ValueError: bad sample 7"
    assert r.data.tags["ocrft.status"] == "failed"
    assert "error.txt" in artifact_paths(store, r.info.run_id)


def test_interrupted_run_is_killed(store, tmp_path):
    def task(cfg, ctx):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(store, tmp_path / "run", task)
    r = client(store).get_run(record(tmp_path / "run")["mlflow_run_id"])
    assert (r.info.status, r.data.tags["ocrft.status"]) == ("KILLED", "killed")


def test_pruned_run_is_killed_with_status_tag(store, tmp_path):
    def task(cfg, ctx):
        ctx.tracker.set_terminal_status("pruned")
        return TaskResult(status="pruned")

    run(store, tmp_path / "run", task)
    r = client(store).get_run(record(tmp_path / "run")["mlflow_run_id"])
    assert (r.info.status, r.data.tags["ocrft.status"]) == ("KILLED", "pruned")


def test_resumed_run_continues_the_same_mlflow_run(store, tmp_path):
    def crash_after_step_1(cfg, ctx):
        ctx.tracker.log_metrics({"train/loss": 2.0}, step=1)
        raise RuntimeError("node lost")

    def step_2(cfg, ctx):
        ctx.tracker.log_metrics({"train/loss": 1.0}, step=2)
        return TaskResult()

    run_dir = tmp_path / "run"
    with pytest.raises(RuntimeError):
        run(store, run_dir, crash_after_step_1)
    first = record(run_dir)["mlflow_run_id"]
    assert client(store).get_run(first).info.status == "FAILED"

    # the second attempt changes a param: MLflow params are write-once, so it is kept (and warned about)
    run(store, run_dir, step_2, "train.learning_rate=1e-3")
    assert record(run_dir)["mlflow_run_id"] == first
    r = client(store).get_run(first)
    assert r.info.status == "FINISHED"
    assert r.data.tags["ocrft.resumed"] == "true"
    assert r.data.params["train.learning_rate"] == "0.0002"
    assert [(m.step, m.value) for m in client(store).get_metric_history(first, "train/loss")] == [(1, 2.0), (2, 1.0)]
    assert len(client(store).search_runs([r.info.experiment_id], f"attributes.run_id = '{first}'")) == 1


def test_run_json_naming_an_unknown_run_starts_a_new_run(store, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"mlflow_run_id": "0" * 32}))
    run(store, run_dir, finished)
    run_id = record(run_dir)["mlflow_run_id"]
    assert run_id != "0" * 32
    assert client(store).get_run(run_id).info.status == "FINISHED"


def grep_tree(root: Path, *needles: str) -> list[str]:
    """Files under ``root`` (the database included) whose bytes contain any needle."""
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path}: {n}" for n in needles if n.encode() in data]
    return hits


def test_secrets_never_reach_the_store(tmp_path, monkeypatch):
    env_secret = f"plantedEnvSecret{uuid.uuid4().hex}"  # no known token shape: only the env scrub catches it
    cli_secret = f"plantedOverrideSecret{uuid.uuid4().hex}"
    url_password = f"plantedUrlPassword{uuid.uuid4().hex}"
    monkeypatch.setenv("OCRFT_FAKE_API_KEY", env_secret)
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    uri = f"sqlite:///{store_dir / 'mlflow.db'}"

    def leaky_task(cfg, ctx):
        ctx.tracker.log_params({"note": f"called with {env_secret}"})
        ctx.tracker.set_tags({"ocrft.note": env_secret, "ocrft.auth_token": "anything"})
        ctx.tracker.log_metrics({"eval/cer": 0.5})
        (ctx.run_dir / "results.json").write_text(json.dumps({"prediction": f"key is {env_secret}"}))
        (ctx.run_dir / "adapter").mkdir()
        (ctx.run_dir / "adapter" / "notes.md").write_text(f"trained with {env_secret}")
        ctx.tracker.log_artifact(ctx.run_dir / "results.json")
        ctx.tracker.log_artifact(ctx.run_dir / "adapter")
        raise RuntimeError(f"401 Unauthorized for key {env_secret}")

    with pytest.raises(RuntimeError):
        run(uri, tmp_path / "run", leaky_task,
            "model=endpoint",  # the endpoint keys (model.base_url) belong to the endpoint backend
            f"+model.api_key={cli_secret}",
            f"model.base_url=https://ocr:{url_password}@api.example.com/v1",
            f"data.path=/data/{env_secret}/ocr.json",
            f"run_name=ocr-{env_secret}")

    assert grep_tree(store_dir, env_secret, cli_secret, url_password) == []
    # ... and it was not a vacuous pass: the run and its artifacts are there, redacted
    run_id = record(tmp_path / "run")["mlflow_run_id"]
    r = client(uri).get_run(run_id)
    assert r.info.run_name == f"ocr-{REDACTED}"
    assert r.data.params["model.api_key"] == REDACTED
    assert r.data.params["data.path"] == f"/data/{REDACTED}/ocr.json"
    assert r.data.params["model.base_url"] == f"https://ocr:{REDACTED}@api.example.com/v1"
    assert r.data.tags["ocrft.error"] == f"RuntimeError: 401 Unauthorized for key {REDACTED}"
    assert r.data.tags["ocrft.auth_token"] == REDACTED
    assert artifact_paths(uri, run_id) >= {"config.yaml", "results.json", "adapter/notes.md", "error.txt"}
    # the files in the run folder itself are the user's and stay as written
    assert env_secret in (tmp_path / "run" / "adapter" / "notes.md").read_text()


def toy_sweep(cwd: Path, *overrides: str, env_secret: str) -> subprocess.CompletedProcess:
    """`--multirun` of the toy app (the real conf/, runner and callback) in a fresh process."""
    env = {**os.environ, "OCRFT_FAKE_API_KEY": env_secret}
    env.pop(parent_run.PARENT_RUN_ENV, None)
    cmd = [sys.executable, str(TOY_APP), "--multirun", "tracking.uri=sqlite:///mlflow.db",
           "tracking.experiment=sweeps", "hydra.sweep.dir=sweep", *overrides]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def sweep_runs(uri: str, sweep_dir: Path):
    parent_id = (sweep_dir / parent_run.PARENT_RUN_FILE).read_text().strip()
    parent = client(uri).get_run(parent_id)
    children = client(uri).search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'", order_by=["tags.ocrft.sweep_job"])
    return parent, sorted(children, key=lambda r: int(r.data.tags["ocrft.sweep_job"]))


@pytest.mark.slow
def test_multirun_is_a_parent_run_with_one_child_per_job(tmp_path):
    env_secret = f"plantedEnvSecret{uuid.uuid4().hex}"
    cli_secret = f"plantedOverrideSecret{uuid.uuid4().hex}"
    proc = toy_sweep(tmp_path, "seed=1,2,3", f"+model.api_key={cli_secret}", f"+notes.path=/d/{env_secret}",
                     env_secret=env_secret)
    assert proc.returncode == 0, proc.stderr[-3000:]

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent, children = sweep_runs(uri, tmp_path / "sweep")
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["ocrft.sweep"] == "true"
    assert parent.data.tags["ocrft.sweep_dir"] == str((tmp_path / "sweep").resolve())
    assert parent.data.tags["ocrft.sweeper"].endswith("BasicSweeper")
    assert client(uri).get_experiment(parent.info.experiment_id).name == "sweeps"
    assert parent.data.metrics == {
        "sweep/jobs": 3.0, "sweep/finished": 2.0, "sweep/pruned": 1.0, "sweep/failed": 0.0, "sweep/running": 0.0,
        "best/val/cer": 0.2,  # the pruned job's 0.1 does not count
    }
    assert parent.data.tags["ocrft.best_mlflow_run_id"] == children[1].info.run_id
    assert parent.data.tags["ocrft.best_run_dir"] == str(tmp_path / "sweep" / "1")

    assert [c.data.params["seed"] for c in children] == ["1", "2", "3"]
    assert [c.info.status for c in children] == ["FINISHED", "FINISHED", "KILLED"]
    assert children[2].data.tags["ocrft.status"] == "pruned"
    assert [c.data.metrics["val/cer"] for c in children] == [0.3, 0.2, 0.1]
    for job, child in enumerate(children):
        assert child.info.experiment_id == parent.info.experiment_id
        assert record(tmp_path / "sweep" / str(job))["mlflow_run_id"] == child.info.run_id
        assert f"seed={job + 1}" in child.data.tags["ocrft.overrides"]
        assert f"+model.api_key={REDACTED}" in child.data.tags["ocrft.overrides"]
    # neither the database nor the artifacts hold them (Hydra's own files in the sweep folder do)
    hits = grep_tree(tmp_path, env_secret, cli_secret)
    assert [h for h in hits if not h.startswith(str(tmp_path / "sweep"))] == []


@pytest.mark.slow
def test_sweep_that_dies_on_a_failed_job_ends_its_parent_failed(tmp_path):
    # Hydra's basic sweeper re-raises a job's error after the batch: on_multirun_end never runs
    proc = toy_sweep(tmp_path, "seed=1,4", env_secret="unused-secret-value")
    assert proc.returncode != 0
    parent, children = sweep_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "sweep")
    assert parent.info.status == "FAILED"
    assert parent.data.metrics["sweep/failed"] == 1.0 and parent.data.metrics["sweep/finished"] == 1.0
    assert [c.info.status for c in children] == ["FINISHED", "FAILED"]
    assert children[1].data.tags["ocrft.error"] == "RuntimeError: toy job 4 failed on purpose"


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` (SQLite backend, proxied artifacts) on a free local port."""
    root = tmp_path_factory.mktemp("server")
    with servers.mlflow_server(root, f"sqlite:///{root / 's.db'}") as url:
        yield url, root


@pytest.mark.slow
def test_logging_through_a_tracking_server(mlflow_server, tmp_path):
    url, root = mlflow_server

    def task(cfg, ctx):
        ctx.tracker.log_metrics({"eval/cer": 0.125}, step=2)
        (ctx.run_dir / "results.json").write_text("{}")
        ctx.tracker.log_artifact(ctx.run_dir / "results.json")
        return TaskResult(metrics={"eval/cer": 0.125})

    run(url, tmp_path / "run", task, experiment="server")
    run_id = record(tmp_path / "run")["mlflow_run_id"]
    r = client(url).get_run(run_id)
    assert r.info.status == "FINISHED"
    assert r.data.metrics == {"eval/cer": 0.125}
    assert r.data.params["tracking.uri"] == url
    assert r.data.tags["ocrft.task"] == "train"
    assert artifact_paths(url, run_id) == {"config.yaml", "results.json"}
    # the artifacts went through the server's proxy into its artifact destination
    assert len(list((root / "artifacts").rglob(f"{run_id}/artifacts/results.json"))) == 1


@pytest.mark.slow
def test_mlflow_ui_shows_the_run(mlflow_server, tmp_path):
    from tests.browser import Browser

    url, _ = mlflow_server
    run(url, tmp_path / "run", finished, "run_name=ui-check-run", experiment="ui")
    run_id = record(tmp_path / "run")["mlflow_run_id"]
    exp_id = client(url).get_run(run_id).info.experiment_id

    with Browser(timeout=60) as b:
        b.open(f"{url}/#/experiments/{exp_id}/runs/{run_id}", wait_for_css="#root")
        # a React app: the run's name and metric appear once its API calls return
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            text = b.run_js("return document.body.innerText")
            if "ui-check-run" in text and "eval/cer" in text:
                break
            time.sleep(1)
        b.screenshot(tmp_path / "mlflow_run_page.png")
        # the UI asks for the signed-in user, which a server without auth answers with 404
        errors = [e for e in b.console_errors() if "/users/current" not in e]
    assert "ui-check-run" in text, text[:2000]
    assert "eval/cer" in text, text[:2000]
    assert errors == []
