"""The studio's jobs kept on disk (ocrft.studio.job_store): they outlive the studio, and two
studios on the same roots never start one job twice.

The scheduler is what is tested here, so each job's "python" is a shell script that records
its start and sleeps: a real ``python -m ocrft`` would only add its import time. The restart
test with real trainings is tests/integration/test_studio_safety.py.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ocrft.studio.job_store import JobStore
from ocrft.studio.jobs import JobManager

pytestmark = pytest.mark.integration  # starts child processes


@pytest.fixture
def fake_python(tmp_path: Path) -> Path:
    script = tmp_path / "fake-python"
    # $$ is the job's pid; the last argument is run_dir=<folder>
    script.write_text('#!/bin/sh\nfor a; do last="$a"; done\necho "$$ $last" >> "$STARTS"\nsleep "${SLEEP:-0.3}"\n')
    script.chmod(0o755)
    return script


def manager(tmp_path: Path, python: Path, **kwargs) -> JobManager:
    return JobManager(runs_root=tmp_path / "outputs", cwd=tmp_path, python=str(python), grace_s=5, poll_s=0.1, **kwargs)


def wait_all_over(m: JobManager, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = m.list()
        if not any(j["status"] in ("queued", "running") for j in jobs):
            return jobs
        assert time.monotonic() < deadline, jobs
        time.sleep(0.1)


def test_two_studios_on_the_same_roots_run_every_job_exactly_once(tmp_path, fake_python, monkeypatch):
    starts = tmp_path / "starts.txt"
    monkeypatch.setenv("STARTS", str(starts))
    a, b = manager(tmp_path, fake_python, max_jobs=2), manager(tmp_path, fake_python, max_jobs=2)
    try:
        ids = [(a if i % 2 else b).submit(["train.max_steps=2"]).id for i in range(10)]
        jobs = wait_all_over(a)
    finally:
        a.shutdown()
        b.shutdown()
    assert [j["id"] for j in jobs] == ids and all(j["status"] == "finished" for j in jobs)
    started = [line.split()[1] for line in starts.read_text().splitlines()]
    assert sorted(started) == sorted(f"run_dir={j['run_dir']}" for j in jobs)  # each once, none twice
    owners = {row.owner for row in JobStore(tmp_path / "outputs" / "studio").all()}
    assert owners == {a.owner, b.owner}  # both studios took jobs from the one queue


def test_history_and_queue_survive_a_restart(tmp_path, fake_python, monkeypatch):
    monkeypatch.setenv("STARTS", str(tmp_path / "starts.txt"))
    first = manager(tmp_path, fake_python)
    done = first.submit(["train.max_steps=2"])
    assert first.wait(done.id, timeout=30)["status"] == "finished"
    monkeypatch.setenv("SLEEP", "30")
    running = first.submit(["train.max_steps=3"])
    waiting = first.submit(["train.max_steps=4"])
    deadline = time.monotonic() + 30
    while first.get(running.id)["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first.shutdown()  # a clean stop: the running job is interrupted, the queued one stays queued
    assert first.get(running.id)["status"] == "interrupted" and first.get(waiting.id)["status"] == "queued"

    monkeypatch.setenv("SLEEP", "0.1")
    second = manager(tmp_path, fake_python)
    try:
        assert second.wait(waiting.id, timeout=30)["status"] == "finished"  # the queue goes on
        statuses = {j["id"]: j["status"] for j in second.list()}
        assert statuses == {done.id: "finished", running.id: "interrupted", waiting.id: "finished"}
        assert second.resume(running.id).status == "queued"
        assert second.wait(running.id, timeout=30)["status"] == "finished"
        with pytest.raises(ValueError, match="only a cancelled, failed, interrupted job resumes"):
            second.resume(done.id)
        with pytest.raises(KeyError):
            second.resume("nope")
    finally:
        second.shutdown()


def test_a_job_whose_studio_died_is_marked_interrupted(tmp_path, fake_python, monkeypatch):
    """A studio that dies holds no lock any more: its running jobs are found and marked."""
    import subprocess
    import sys

    monkeypatch.setenv("STARTS", str(tmp_path / "starts.txt"))
    monkeypatch.setenv("SLEEP", "60")
    code = (f"import time; from ocrft.studio.jobs import JobManager; "
            f"m = JobManager(runs_root={str(tmp_path / 'outputs')!r}, cwd={str(tmp_path)!r}, python={str(fake_python)!r}, poll_s=0.1); "
            f"m.submit(['train.max_steps=2']); time.sleep(60)")  # fmt: skip
    studio = subprocess.Popen([sys.executable, "-c", code])
    store = None
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline and studio.poll() is None
        if (tmp_path / "outputs" / "studio" / "jobs.sqlite").exists():
            store = JobStore(tmp_path / "outputs" / "studio")
            jobs = store.all()
            if jobs and jobs[0].status == "running" and jobs[0].pid:
                break
        time.sleep(0.1)
    studio.kill()  # SIGKILL: no shutdown, no atexit
    studio.wait()
    orphan_pid = jobs[0].pid
    second = manager(tmp_path, fake_python)
    try:
        job = second.get(jobs[0].id)
        assert job["status"] == "interrupted" and "resume" in job["error"]
    finally:
        second.shutdown()
        try:  # the fake job does not watch its parent as `python -m ocrft` does: end it here
            os.killpg(orphan_pid, 9)
        except ProcessLookupError:
            pass
