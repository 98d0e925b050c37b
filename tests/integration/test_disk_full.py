"""A full disk while ocrft writes: one `ocrft: error:` line naming the file (exit 2), the
previous good state intact, and the same command finishing once space is freed.

The filesystem is real (tests/diskfull.py): a small tmpfs where mounting is allowed, else a
file-size limit (RLIMIT_FSIZE, EFBIG) on the child process. Covered: eval results (then the
re-run resumes from the eval checkpoint), prepare's crops, a Trainer checkpoint filling the
disk mid-save (the re-run resumes from the last complete checkpoint), an MLflow artifact.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import pytest

from tests.helpers import compose
from tests.files import page_file

pytestmark = pytest.mark.integration
ERROR = re.compile(r"^ocrft: error: (no space left on device|file size limit reached) while writing (\S+): (.*)$", re.M)


def warm_cache(overrides: list[str]) -> None:
    """Build the tiny model and the rendered data in the test cache now, so that a child under
    a file-size limit only writes its own outputs."""
    from ocrft.data.loading import load_data
    from ocrft.models.loading import resolve_model

    cfg = compose(["tracking=none", *overrides])
    resolve_model(cfg.model.family, cfg.model.path)
    load_data(cfg.data, Path(cfg.run_dir))


def disk_full_error(done) -> tuple[str, str]:
    """(path, rest of the message) of the one `ocrft: error:` line; fails on a traceback."""
    assert done.returncode == 2, f"exit {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    found = ERROR.findall(done.stderr)
    assert len(found) == 1, done.stderr[-2000:]
    return found[0][1], found[0][2]


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


EVAL = ["tracking=none", "task=eval", "data.num_test=48", "eval.batch_size=8", "eval.max_new_tokens=4"]


def test_eval_results_on_full_disk_then_the_same_command_resumes(fs, tmp_path):
    run_dir = fs.root / "eval"
    cmd = [*EVAL, f"run_dir={run_dir}"]
    warm_cache(EVAL)
    fs.fill(leave=64 * 1024 if fs.kind == "tmpfs" else 16 * 1024)  # the checkpoint fits, results.json does not
    path, rest = disk_full_error(fs.run(cmd, cwd=tmp_path))
    assert path in (str(run_dir / "results.json"), str(run_dir / "results.html"))
    assert rest.startswith(f"free space on {fs.root} and run" if fs.kind == "tmpfs" else "raise the file size limit")
    assert "run the same command again; no partial results." in rest
    assert not list(run_dir.glob(".*.tmp"))  # no temporary file left
    rows = [json.loads(line) for line in (run_dir / "eval_checkpoint.jsonl").read_text().splitlines()]
    assert len(rows) == 48  # every generated sample kept
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"

    fs.free()
    done = fs.run(cmd, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "48 samples, 48 already done" in done.stdout + done.stderr  # resumed: nothing generated again
    assert json.loads((run_dir / "results.json").read_text())["total_samples"] == 48


def noisy_export(root: Path) -> Path:
    """A PAGE-XML export of one noise scan: its line crops do not compress (~20 kB each)."""
    from PIL import Image

    root.mkdir(parents=True)
    Image.frombytes("L", (600, 240), bytes((i * 7919 + i // 600 * 104729) % 251 for i in range(600 * 240))).save(root / "p.png")
    lines = [(f"l{k}", f"0,{80 * k} 599,{80 * k} 599,{80 * k + 79} 0,{80 * k + 79}", f"line {k}") for k in range(3)]
    page_file(root / "page" / "p.xml", "p.png", (600, 240), lines)
    return root


def test_prepare_on_full_disk_keeps_the_previous_output(fs, tmp_path):
    out = fs.root / "prepared"
    cmd = ["tracking=none", "task=prepare", "data=page_xml", f"data.input_dir={noisy_export(tmp_path / 'export')}",
           f"data.output_dir={out}", "data.train_ratio=1.0", "data.val_ratio=0", f"run_dir={tmp_path / 'run'}"]  # fmt: skip
    assert fs.run(cmd, cwd=tmp_path).returncode == 0
    before = tree(out)
    assert min((out / name).stat().st_size for name in before if name.endswith(".png")) > 12 * 1024
    fs.fill(leave=8 * 1024)  # config.yaml and run.json fit, a crop does not
    path, rest = disk_full_error(fs.run(cmd, cwd=tmp_path))
    assert path.startswith(str(fs.root / ".prepared.tmp-")) and path.endswith(".png")  # the crop being written
    assert "run the same command again" in rest
    assert tree(out) == before  # the previous output, untouched
    assert [p.name for p in fs.root.iterdir() if p.name != ".filler"] == ["prepared"]  # the work folder removed
    fs.free()
    assert fs.run(cmd, cwd=tmp_path).returncode == 0
    assert tree(out).keys() == before.keys()


def test_checkpoint_save_fills_the_disk_then_training_resumes_from_the_last_complete_one(fs, tmp_path):
    run_dir = fs.root / "train"
    train = ["tracking=none", "train.max_steps=5", "train.save_steps=1", "train.per_device_train_batch_size=2",
             "data.num_train=8", "data.num_val=2", "data.num_test=2", "eval.before_after=false", "eval.max_new_tokens=4"]  # fmt: skip
    cmd = [*train, f"run_dir={run_dir}"]
    warm_cache(train)
    log_file = tmp_path / "first.log"
    child = fs.start(cmd, cwd=tmp_path, log_file=log_file)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "checkpoints" / "checkpoint-1" / "trainer_state.json").exists():
            assert child.poll() is None, log_file.read_text()[-3000:]
            assert time.monotonic() < deadline, "no first checkpoint"
            time.sleep(0.02)
        fs.fill(leave=64 * 1024, pid=child.pid)  # a checkpoint is ~480 kB (adapter 132 kB, optimizer 280 kB)
        child.wait(120)
    finally:
        if child.poll() is None:
            child.kill()
    done = type("Done", (), {"returncode": child.returncode, "stdout": "", "stderr": log_file.read_text()})
    path, rest = disk_full_error(done)
    failed = Path(path)
    assert failed.parent == run_dir / "checkpoints" and failed.name.startswith("checkpoint-")
    step = int(failed.name.split("-")[1])
    assert 2 <= step <= 5
    assert f"the partial {failed.name} was removed; checkpoint-{step - 1} is complete and the run resumes from it" in rest
    assert not failed.exists()
    for ckpt in (run_dir / "checkpoints").glob("checkpoint-*"):  # what is left is whole
        assert json.loads((ckpt / "trainer_state.json").read_text())["global_step"] < step

    fs.free()
    done = fs.run(cmd, cwd=tmp_path, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming from {run_dir / 'checkpoints' / f'checkpoint-{step - 1}'}" in done.stdout + done.stderr
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "finished" and record["metrics"]["train/global_step"] == 5
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()


def test_mlflow_artifact_on_full_disk_names_it_and_keeps_the_local_adapter(fs, tmp_path):
    from mlflow import MlflowClient

    from ocrft.atomic import DiskFullError
    from ocrft.runner import user_error_message
    from ocrft.tracking import open_tracker
    from ocrft.tracking.experiment import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # the store is fine; the artifact folder fills up
    client = MlflowClient(tracking_uri=uri)
    client.create_experiment("full", artifact_location=str(fs.root / "artifacts"), tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    cfg = compose(["task=eval", "tracking=mlflow", f"tracking.uri={uri}", "tracking.experiment=full"])
    run_dir = tmp_path / "run"
    adapter = run_dir / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 800)  # 200 kB
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    before = tree(adapter)

    with pytest.raises(DiskFullError) as caught, open_tracker(cfg, run_dir) as tracker:
        run_id = tracker.run_id
        fs.fill(leave=64 * 1024)
        with fs.limited():
            tracker.log_artifact(adapter, "model")
    remote = fs.root / "artifacts" / run_id / "artifacts" / "model"
    assert caught.value.filename == str(remote)
    message = user_error_message(caught.value)
    assert f"while writing {remote}: " in message
    assert message.endswith(f"run the same command again; the local {adapter} is kept; only its MLflow copy is missing")
    assert tree(adapter) == before  # the trained adapter on disk is untouched
    assert not remote.exists()  # the partial upload was removed
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and "DiskFullError" in run.data.tags["ocrft.error"]

    fs.free()  # the re-run continues the same MLflow run and uploads it whole
    (run_dir / "run.json").write_text(json.dumps({"mlflow_run_id": run_id}))
    with open_tracker(cfg, run_dir) as tracker:
        assert tracker.run_id == run_id
        tracker.log_artifact(adapter, "model")
    assert tree(remote) == before
    assert client.get_run(run_id).info.status == "FINISHED"
