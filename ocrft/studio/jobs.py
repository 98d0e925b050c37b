"""Launched runs: ``python -m ocrft ...`` child processes, a FIFO queue, and their JSON API.

A job is one CLI run with its own ``run_dir=<runs_root>/studio/<id>``: cancelling it
(SIGINT, then SIGTERM after a grace period) leaves its checkpoints there, and "resume"
starts the same argv again, which continues from the last checkpoint. At most ``max_jobs``
run at once; the rest wait, in order. The argv is a list and no shell is involved, so an
override is never interpreted by one.

Progress comes from the child's output (the trainer's step bar, its loss dicts, the
``val/<metric>`` lines of ocrft's validation) and, once it ends, from its ``run.json``.
"""

from __future__ import annotations

import atexit
import codecs
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ocrft.studio.compose import OverrideError, compose

log = logging.getLogger(__name__)

STATUSES = ("queued", "running", "finished", "failed", "cancelled")
# The trainer's tqdm bar has no label ("eval after:", "Loading weights:" ones do): " 50%|##  | 2/4 [".
_STEP = re.compile(r"^\s*\d+%\|[^|]*\|\s*(\d+)/(\d+) \[")
_LOSS = re.compile(r"'loss': '?([0-9.eE+-]+)")
_VAL = re.compile(r"step (\d+): (val/\w+) = ([0-9.eE+-]+)")


@dataclass
class Job:
    id: str
    overrides: list[str]
    multirun: bool
    run_dir: Path
    argv: list[str]
    log_path: Path
    status: str = "queued"
    step: Optional[int] = None
    max_steps: Optional[int] = None
    metrics: dict[str, float] = field(default_factory=dict)
    returncode: Optional[int] = None
    error: Optional[str] = None
    submitted: float = field(default_factory=time.time)
    started: Optional[float] = None
    ended: Optional[float] = None
    cancel_requested: bool = False
    process: Optional[subprocess.Popen] = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "status": self.status, "step": self.step, "max_steps": self.max_steps,
            "metrics": dict(self.metrics), "run_dir": str(self.run_dir), "overrides": list(self.overrides),
            "multirun": self.multirun, "argv": list(self.argv), "log": str(self.log_path),
            "returncode": self.returncode, "error": self.error, "submitted": self.submitted,
            "started": self.started, "ended": self.ended,
        }  # fmt: skip


class JobManager:
    """Starts, queues, watches and cancels launched runs; every method is thread-safe."""

    def __init__(
        self,
        max_jobs: Any,
        runs_root: str | Path | None = None,
        python: str = sys.executable,
        cwd: str | Path | None = None,
        grace_s: float = 20.0,
    ) -> None:
        """``max_jobs`` runs at once; jobs write under ``<runs_root>/studio/``. Given the
        ``studio`` config instead of a number, its ``max_jobs`` and first root are used."""
        if not isinstance(max_jobs, int):  # the studio config node (StudioConfig)
            studio_cfg, max_jobs = max_jobs, max_jobs.max_jobs
            runs_root = runs_root or (list(studio_cfg.roots) or ["outputs"])[0]
        self.max_jobs = max(1, int(max_jobs))
        self.runs_root = Path(runs_root or "outputs").resolve()
        self.python = python
        self.cwd = Path(cwd or os.getcwd()).resolve()  # relative paths in overrides mean what they mean on the CLI
        self.grace_s = grace_s
        self._jobs: dict[str, Job] = {}
        self._queue: deque[str] = deque()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        atexit.register(self.shutdown)  # no run outlives the studio unseen: each gets its Ctrl-C

    # -- submitting ----------------------------------------------------------------------
    def submit(self, overrides: list[str], multirun: bool = False) -> Job:
        """Validate ``overrides`` as the CLI would (:class:`OverrideError` if it would refuse
        them: nothing starts), then queue the run; it starts when a slot is free."""
        overrides = [o.strip() for o in overrides if o and o.strip()]
        job_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        given = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") == "run_dir"]
        run_dir = Path(given[-1].split("=", 1)[1]) if given else self.runs_root / "studio" / job_id
        run_dir = run_dir if run_dir.is_absolute() else self.cwd / run_dir
        # A multirun writes its jobs under the sweep folder (hydra.sweep.dir), one subfolder each.
        where = f"hydra.sweep.dir={run_dir}" if multirun else f"run_dir={run_dir}"
        overrides = [o for o in overrides if o not in given] + [where]
        compose(overrides, multirun=multirun)  # raises OverrideError naming the key
        argv = [self.python, "-m", "ocrft", *(["--multirun"] if multirun else []), *overrides]
        job = Job(id=job_id, overrides=overrides, multirun=multirun, run_dir=run_dir, argv=argv,
                  log_path=run_dir.parent / f"{run_dir.name}.log")  # fmt: skip
        with self._lock:
            self._jobs[job.id] = job
            self._queue.append(job.id)
            log.info("job %s queued: %s", job.id, " ".join(overrides))
            self._pump()
        return job

    def resume(self, job_id: str) -> Job:
        """Queue a cancelled or failed job again with the same argv and run_dir (it resumes
        from its last checkpoint)."""
        with self._lock:
            job = self._get(job_id)
            if job.status not in ("cancelled", "failed"):
                raise ValueError(f"job {job_id} is {job.status}: only a cancelled or failed job resumes")
            job.status, job.cancel_requested, job.returncode, job.error, job.ended = "queued", False, None, None, None
            self._queue.append(job.id)
            log.info("job %s queued to resume in %s", job.id, job.run_dir)
            self._pump()
            return job

    def cancel(self, job_id: str) -> Job:
        """Cancel: a queued job leaves the queue; a running one gets SIGINT (ocrft's own
        Ctrl-C path: run.json is written), then SIGTERM and SIGKILL if it lingers."""
        with self._lock:
            job = self._get(job_id)
            if job.status == "queued":
                self._queue.remove(job.id)
                job.status, job.ended = "cancelled", time.time()
                self._changed.notify_all()
                return job
            if job.status != "running" or job.process is None:
                return job  # already over: nothing to cancel
            job.cancel_requested = True
            process = job.process
        threading.Thread(target=self._stop, args=(process,), name=f"cancel-{job_id}", daemon=True).start()
        return job

    # -- reading -------------------------------------------------------------------------
    def get(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            return self._get(job_id).as_dict()

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [job.as_dict() for job in self._jobs.values()]

    def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the job is over (finished, failed, cancelled) or ``timeout`` passes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            job = self._get(job_id)
            while job.status in ("queued", "running"):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._changed.wait(left)
            return job.as_dict()

    def shutdown(self) -> None:
        """Cancel everything (the studio is stopping): queued jobs are dropped, running ones get
        SIGINT (then SIGTERM, SIGKILL); returns once they are gone."""
        with self._lock:
            self._queue.clear()
            processes = []
            for job in self._jobs.values():
                if job.status == "queued":
                    job.status, job.ended = "cancelled", time.time()
                elif job.status == "running" and job.process is not None:
                    job.cancel_requested = True
                    processes.append(job.process)
        for process in processes:
            self._stop(process)

    # -- internals -----------------------------------------------------------------------
    def _get(self, job_id: str) -> Job:
        if job_id not in self._jobs:
            raise KeyError(job_id)
        return self._jobs[job_id]

    def _pump(self) -> None:
        """Start queued jobs while slots are free (called with the lock held)."""
        running = sum(job.status == "running" for job in self._jobs.values())
        while self._queue and running < self.max_jobs:
            job = self._jobs[self._queue.popleft()]
            try:
                self._start(job)
                running += 1
            except OSError as err:  # the interpreter vanished, the folder is not writable
                job.status, job.error, job.ended = "failed", f"could not start: {err}", time.time()
            self._changed.notify_all()

    def _start(self, job: Job) -> None:
        job.run_dir.parent.mkdir(parents=True, exist_ok=True)
        logfile = open(job.log_path, "ab")  # appended to on resume
        logfile.write(f"$ {' '.join(job.argv)}\n".encode())
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # Own session: a signal meant for the studio (Ctrl-C) does not reach the runs; cancel
        # signals the whole group, dataloader workers included.
        job.process = subprocess.Popen(job.argv, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        job.status, job.started = "running", time.time()
        log.info("job %s started (pid %d), log %s", job.id, job.process.pid, job.log_path)
        threading.Thread(target=self._watch, args=(job, logfile), name=f"job-{job.id}", daemon=True).start()

    def _watch(self, job: Job, logfile: Any) -> None:
        """Copy the child's output to its log while parsing progress; then record how it ended."""
        process = job.process
        assert process is not None and process.stdout is not None
        pending, decoder = "", codecs.getincrementaldecoder("utf-8")("replace")  # a character may span chunks
        with logfile:
            while chunk := process.stdout.read1(65536):  # blocks until output or EOF: no polling
                logfile.write(chunk)
                logfile.flush()
                lines = re.split(r"[\r\n]", pending + decoder.decode(chunk))
                pending = lines.pop()
                with self._lock:
                    for line in lines:
                        _parse_progress(job, line)
            returncode = process.wait()
        record = _read_run_record(job.run_dir)
        with self._lock:
            job.returncode, job.ended, job.process = returncode, time.time(), None
            job.metrics.update({k: v for k, v in record.get("metrics", {}).items() if isinstance(v, (int, float))})
            if "train/global_step" in job.metrics:
                job.step = int(job.metrics["train/global_step"])
            if job.cancel_requested:
                job.status = "cancelled"
            elif returncode == 0:
                job.status = "finished"
            else:
                job.status = "failed"
                job.error = record.get("error") or f"exit status {returncode}; see {job.log_path}"
            log.info("job %s %s (exit %s)", job.id, job.status, returncode)
            self._pump()
            self._changed.notify_all()

    def _stop(self, process: subprocess.Popen) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(timeout=self.grace_s)
                return
            except subprocess.TimeoutExpired:
                log.warning("pid %d still running %.0f s after %s", process.pid, self.grace_s, sig.name)


def _parse_progress(job: Job, line: str) -> None:
    if match := _STEP.match(line):
        job.step, job.max_steps = int(match[1]), int(match[2])
    elif match := _LOSS.search(line):
        job.metrics["train/loss"] = float(match[1])
    elif match := _VAL.search(line):
        job.metrics[match[2]] = float(match[3])


def _read_run_record(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return {}  # a multirun (run.json per trial) or a run that died before writing one


def jobs_router(manager: JobManager):
    """The JSON jobs API, to be mounted at ``/api/jobs`` (docs/studio.md)."""
    from ocrft.studio.jobs_api import build_router

    return build_router(manager)


def launch_tab(manager: JobManager) -> None:
    """The Launch tab's components, in the current ``gr.Blocks`` context."""
    from ocrft.studio.launch_form import build_launch_tab

    build_launch_tab(manager)


__all__ = ["Job", "JobManager", "OverrideError", "STATUSES", "jobs_router", "launch_tab"]
