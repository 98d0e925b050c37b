"""run.json has one schema, the RunRecord dataclass (ocrft/run_record.py): what the runner and
the sweeper write is what tracking, sweeps and the studio read back."""

from __future__ import annotations

import json

from ocrft.run_record import RunRecord


def test_round_trip_keeps_a_tasks_own_keys_at_the_top_level(tmp_path):
    record = RunRecord(task="serve", status="finished", start_time="2026-12-07T10:00:00+00:00", metrics={"eval/cer": 0.1},
                       paths={"run_dir": str(tmp_path)}, mlflow_run_id="abc", extra={"url": "http://127.0.0.1:8000/v1"})  # fmt: skip
    record.write(tmp_path)
    on_disk = json.loads((tmp_path / "run.json").read_text())
    assert on_disk["url"] == "http://127.0.0.1:8000/v1" and "extra" not in on_disk
    assert "error" not in on_disk and "duration_s" not in on_disk and on_disk["end_time"] is None
    assert RunRecord.read(tmp_path) == record


def test_a_record_written_before_the_dataclass_reads(tmp_path):
    """A sweep folder's record (task: sweep, study, best_trial) and an older run's."""
    (tmp_path / "run.json").write_text(json.dumps({
        "task": "sweep", "status": "finished", "start_time": "t0", "end_time": "t1", "metrics": {"val/cer": 0.2},
        "paths": {"best_config": "best.yaml"}, "mlflow_run_id": None, "study": {"name": "s", "trials": 4},
        "best_trial": {"number": 2}}))  # fmt: skip
    record = RunRecord.read(tmp_path)
    assert record.task == "sweep" and record.metrics == {"val/cer": 0.2} and record.extra["study"]["trials"] == 4
    assert record.to_json()["best_trial"] == {"number": 2}


def test_missing_or_unreadable_records_read_as_none(tmp_path):
    assert RunRecord.read(tmp_path) is None
    (tmp_path / "run.json").write_text('{"task": "train", "status": "runn')  # a torn write from elsewhere
    assert RunRecord.read(tmp_path) is None
    (tmp_path / "run.json").write_text("[1, 2]")
    assert RunRecord.read(tmp_path) is None


def test_a_record_naming_only_its_mlflow_run_reads(tmp_path):
    """What a tool other than the runner may write: the MLflow run a re-run should continue."""
    (tmp_path / "run.json").write_text('{"mlflow_run_id": "abc"}')
    assert RunRecord.read(tmp_path).mlflow_run_id == "abc"
