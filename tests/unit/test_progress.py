"""A run's progress.jsonl (ocrft.progress): appended events, read incrementally, a torn last
line left for the next read, a corrupt line skipped."""

from __future__ import annotations

from ocrft.progress import FILE, ProgressLog, read_progress


def test_events_are_read_incrementally_and_the_latest_values_win(tmp_path):
    log = ProgressLog(tmp_path)
    log.event("start", task="train")
    log.event("train", step=1, max_steps=4, metrics={"train/loss": 6.0})
    progress, offset = read_progress(tmp_path)
    assert (progress.phase, progress.step, progress.max_steps, progress.metrics) == ("train", 1, 4, {"train/loss": 6.0})
    log.event("validation", step=2, metrics={"val/cer": 0.5})
    log.event("train", step=4, max_steps=4, metrics={"train/loss": 5.0})
    log.event("end", status="finished", metrics={"eval/cer": 0.4})
    progress, offset2 = read_progress(tmp_path, offset, progress)
    assert offset2 > offset and progress.step == 4 and progress.status == "finished" and progress.phase == "end"
    assert progress.metrics == {"train/loss": 5.0, "val/cer": 0.5, "eval/cer": 0.4}
    assert read_progress(tmp_path, offset2, progress) == (progress, offset2)  # nothing new


def test_a_torn_last_line_waits_and_a_corrupt_line_is_skipped(tmp_path):
    path = tmp_path / FILE
    path.write_text('{"phase": "train", "step": 1}\nnot json\n{"phase": "train", "st')
    progress, offset = read_progress(tmp_path)
    assert progress.step == 1 and offset == len('{"phase": "train", "step": 1}\nnot json\n')
    with open(path, "a") as f:
        f.write('ep": 2}\n')
    progress, _ = read_progress(tmp_path, offset, progress)
    assert progress.step == 2


def test_no_run_dir_writes_nothing_and_a_missing_file_reads_as_nothing(tmp_path):
    ProgressLog(None).event("train", step=1)
    progress, offset = read_progress(tmp_path)
    assert progress.step is None and offset == 0 and not (tmp_path / FILE).exists()
