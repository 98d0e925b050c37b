"""What was evaluated on what: results, comparison reports, task=serve and MLflow name the
model (base before training, the run and its step after) and the data each run read.

One 2-step tiny training with tracking on a real SQLite store (module fixture) feeds every test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import compose

pytestmark = [pytest.mark.slow, pytest.mark.integration]

TRAIN = ["model=tiny_qwen2_vl", "data=tiny_ocr", "data.train_ratio=0.5", "data.val_ratio=0.25",
         "train.max_steps=2", "train.per_device_train_batch_size=4", "train.save_steps=100",
         "eval.max_new_tokens=4", "eval.before_after=true", "tracking.experiment=provenance"]  # fmt: skip


def client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def inputs_of(uri: str, run_id: str) -> dict[str, tuple[str, str, dict, dict]]:
    """context -> (dataset name, digest, source dict, profile dict) of a run's dataset inputs."""
    out = {}
    for di in client(uri).get_run(run_id).inputs.dataset_inputs:
        tags = {t.key: t.value for t in di.tags}
        d = di.dataset
        out[tags["mlflow.data.context"]] = (d.name, d.digest, json.loads(d.source), json.loads(d.profile))
        assert d.source_type == "local"
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """The SQLite MLflow store the training is tracked in."""
    return f"sqlite:///{tmp_path_factory.mktemp('provenance') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def train_overrides(store) -> list[str]:
    return [*TRAIN, "tracking=mlflow", f"tracking.uri={store}"]


@pytest.fixture(scope="module")
def tracked(store, trained, trained_record) -> tuple[str, Path, dict]:
    """(store uri, run folder, run.json) of the 2-step tiny LoRA training (tests/fixtures/runs.py)
    tracked in SQLite."""
    return store, trained, trained_record


def test_results_before_and_after_training_name_base_and_run_step(tracked):
    _, run_dir, record = tracked
    before = json.loads(Path(record["paths"]["results_before"]).read_text())
    after = json.loads(Path(record["paths"]["results"]).read_text())
    assert before["model_name"] != after["model_name"]
    assert before["model_name"] == "tiny:qwen2_vl (before training)"
    assert before["model"]["kind"] == "base" and before["model"]["base"] == "tiny:qwen2_vl"
    assert before["model"]["stage"] == "before training"
    assert after["model_name"] == "tiny-run step 2"
    assert {k: after["model"][k] for k in ("kind", "run", "base", "step")} == {
        "kind": "run", "run": "tiny-run", "base": "tiny:qwen2_vl", "step": 2}
    assert "/" not in after["model"]["id"]


def test_compare_report_header_names_both_sides(tracked, tmp_path):
    from ocrft.__main__ import resolve_task
    from ocrft.runner import run_task

    _, run_dir, record = tracked
    cfg = compose(["task=report", "tracking=none", f"run_dir={tmp_path}", f"report.results={record['paths']['results_before']}",
                   f"report.compare={record['paths']['results']}"])  # fmt: skip
    run_task(cfg, resolve_task(cfg.task))
    page = (tmp_path / "report.html").read_text()
    assert "<h1>OCR comparison: tiny:qwen2_vl (before training) (A) vs tiny-run step 2 (B)</h1>" in page
    assert "(kind run, base tiny:qwen2_vl, adapter adapter, step 2)" in page


def test_training_run_logs_its_splits_as_mlflow_datasets(tracked):
    from ocrft.data.loading import load_data
    from ocrft.tracking.inputs import records_digest

    uri, run_dir, record = tracked
    inputs = inputs_of(uri, record["mlflow_run_id"])
    assert set(inputs) == {"train", "validation", "test"}
    cfg = compose([*TRAIN, "tracking=none"])
    data = load_data(cfg.data, run_dir)
    data_file = str((Path(cfg.data.path)).resolve())
    for split, context in (("train", "train"), ("val", "validation"), ("test", "test")):
        name, digest, source, profile = inputs[context]
        assert name == "json_ocr:tests/assets/tiny_ocr/ocr.json"
        assert digest == records_digest(data.splits[split])
        assert source == {"uri": data_file}
        assert profile == {"num_rows": len(data.splits[split])}
    assert len({d for _, d, _, _ in inputs.values()}) == 3  # three different sets of records
    # MLflow reads the stored source back as its own local source (what the UI does)
    from mlflow.data.dataset_source_registry import get_dataset_source_from_json

    parsed = get_dataset_source_from_json(json.dumps(inputs["test"][2]), "local")
    assert type(parsed).__name__ == "LocalArtifactDatasetSource" and parsed.uri == data_file


def test_experiment_is_marked_as_model_training(tracked):
    uri, _, record = tracked
    c = client(uri)
    exp = c.get_experiment(c.get_run(record["mlflow_run_id"]).info.experiment_id)
    assert exp.name == "provenance"
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"


def test_existing_experiment_without_a_kind_gets_it_and_a_set_kind_is_kept(tracked):
    from ocrft.tracking.experiment import experiment_id

    uri, _, _ = tracked
    c = client(uri)
    old = c.create_experiment("made-by-hand")
    assert "mlflow.experimentKind" not in c.get_experiment(old).tags
    assert experiment_id(c, "made-by-hand", uri) == old
    assert c.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"
    genai = c.create_experiment("genai", tags={"mlflow.experimentKind": "genai_development"})
    experiment_id(c, "genai", uri)
    assert c.get_experiment(genai).tags["mlflow.experimentKind"] == "genai_development"


def test_eval_of_the_run_folder_names_it_and_logs_the_eval_split(tracked, tmp_path):
    from ocrft.__main__ import resolve_task
    from ocrft.runner import run_task

    uri, run_dir, _ = tracked
    cfg = compose(["task=eval", "model=tiny_qwen2_vl", f"model.path={run_dir}", "data=tiny_ocr", "data.train_ratio=0.5",
                   "data.val_ratio=0.25", "eval.limit=2", "eval.max_new_tokens=4", f"tracking.uri={uri}",
                   "tracking.experiment=provenance", f"run_dir={tmp_path}"])  # fmt: skip
    run_task(cfg, resolve_task(cfg.task))
    record = json.loads((tmp_path / "run.json").read_text())
    results = json.loads(Path(record["paths"]["results"]).read_text())
    assert results["model_name"] == "tiny-run step 2"
    assert results["model"]["kind"] == "run" and results["model"]["adapter"] == "adapter"
    inputs = inputs_of(uri, record["mlflow_run_id"])
    assert set(inputs) == {"test"} and inputs["test"][3] == {"num_rows": 2}


def test_served_run_folder_is_listed_by_its_short_name(tracked):
    from fastapi.testclient import TestClient

    from ocrft.provenance import serve_model_name
    from ocrft.serving.app import create_app

    _, run_dir, _ = tracked
    cfg = compose(["task=serve", "model=tiny_qwen2_vl", f"model.path={run_dir}", "tracking=none"])
    name = serve_model_name(cfg)
    assert name == "tiny-run"

    class Echo:
        def read(self, images, prompts, max_new_tokens):
            from ocrft.evaluation.generation import Generation

            return [Generation("x") for _ in images]

    with TestClient(create_app(Echo(), cfg.serve, name), base_url="http://127.0.0.1") as http:
        ids = [m["id"] for m in http.get("/v1/models").json()["data"]]
        health = http.get("/health").json()
    assert ids == ["tiny-run"] and "/" not in ids[0]
    assert health["model"] == "tiny-run"
    named = compose(["task=serve", "model=tiny_qwen2_vl", f"model.path={run_dir}", "serve.model_name=my-ocr"])
    assert serve_model_name(named) == "my-ocr"
