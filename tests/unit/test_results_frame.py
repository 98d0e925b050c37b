"""Results as pandas tables: to_frame, and the per-sample table logged to a real MLflow store."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from ocrft.evaluation.results import build_results, load_results, score_samples, to_frame, write_results
from ocrft.tracking import MlflowTracker, NullTracker


def results() -> dict:
    rows = [
        {"id": "a", "image_path": "a.png", "label": "abcd", "prediction": "abcc"},
        {"id": "b", "image_path": "b.png", "label": "Hello  World", "prediction": "hello world"},
        {"id": "c", "image_path": "c.png", "label": "xyz", "prediction": None, "error": "HTTP 500 after 5 retries"},
    ]
    metrics, scored = score_samples(rows, None)
    return build_results(scored, "tiny", None, metrics)


def test_to_frame_is_one_row_per_sample_with_the_file_numbers(tmp_path):
    res = load_results(write_results(tmp_path / "results.json", results()))  # what the call sites read
    frame = to_frame(res)
    assert list(frame["id"]) == ["a", "b", "c"] and len(frame) == res["total_samples"]
    assert list(frame.columns[:4]) == ["id", "image_path", "label", "prediction"]
    assert frame["cer_score"].tolist()[:2] == [s["cer_score"] for s in res["samples"][:2]]
    assert frame.loc[0, "cer_score"] == pytest.approx(0.25)  # one substitution in four characters
    assert math.isnan(frame.loc[2, "cer_score"]) and frame.loc[2, "error"] == "HTTP 500 after 5 retries"
    # The corpus CER is total edits over total reference characters, computable from the table.
    ok = frame[frame["error"].isna()]
    assert res["overall_cer"] == pytest.approx((ok["cer_score"] * ok["label"].str.len()).sum() / ok["label"].str.len().sum())


def test_to_frame_of_no_samples_is_empty():
    assert to_frame({"samples": []}).empty


def test_null_tracker_accepts_a_table_and_writes_nothing(tmp_path, monkeypatch):
    """tracking=none: eval and train hand the results table to the tracker as to MLflow's; it
    is accepted and ignored: the frame is left as it was and no file appears."""
    monkeypatch.chdir(tmp_path)
    frame = to_frame(results())
    kept = frame.copy()
    assert NullTracker().log_table(frame, "results_table.json") is None
    assert NullTracker().log_table(frame.head(1), "tables/before.json") is None
    pd.testing.assert_frame_equal(frame, kept)
    assert list(tmp_path.rglob("*")) == []


@pytest.mark.integration  # a real SQLite MLflow store
def test_log_table_is_readable_by_mlflow_replaces_on_a_rerun_and_scrubs(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    secret = "sk-table-SECRET-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(client.create_experiment("t", artifact_location=(tmp_path / "art").as_uri()))
    tracker = MlflowTracker(client, run.info.run_id)
    frame = to_frame(results())
    frame.loc[1, "prediction"] = f"leaked {secret}"
    tracker.log_table(frame, "results_table.json")
    tracker.log_table(frame, "results_table.json")  # a re-run of the run folder logs it again
    tracker.log_table(frame.head(1), "tables/before.json")

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # MlflowClient.load_table searches runs through the fluent API
    back = client.load_table(run.info.experiment_id, "results_table.json", run_ids=[run.info.run_id])
    assert len(back) == 3  # replaced, not appended (MlflowClient.log_table would give 6)
    assert back["cer_score"].tolist()[:2] == pytest.approx(frame["cer_score"].tolist()[:2])
    assert secret not in back.to_json() and back.loc[1, "prediction"].startswith("leaked ")
    assert len(client.load_table(run.info.experiment_id, "tables/before.json", run_ids=[run.info.run_id])) == 1
    tags = client.get_run(run.info.run_id).data.tags["mlflow.loggedArtifacts"]
    assert tags.count("results_table.json") == 1 and "tables/before.json" in tags
