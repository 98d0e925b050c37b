"""Launched runs: ``python -m ocrft ...`` child processes, a FIFO queue kept on disk, and their JSON API.

A job is one CLI run with its own ``run_dir`` (``<first root>/studio/<id>`` unless the launch
names one inside the roots): cancelling it (SIGINT, then SIGTERM after a grace period) leaves
its checkpoints there, and "resume" starts the same argv again, which continues from the last
checkpoint. At most ``max_jobs`` run at once per studio; the rest wait, in order. The argv is
a list and no shell is involved, so an override is never interpreted by one; what it may ask
for at all is ocrft.studio.override_policy's.

The queue and history are a SQLite file (ocrft.studio.job_store) in ``<first root>/studio/``,
so they survive a restart; several studios on the same roots share them and never start a job
twice. A job whose studio died is ``interrupted`` and resumes from the list. The child watches
its parent (``OCRFT_PARENT_PID``, ocrft.parent_watch): when the studio dies, the run stops as
on Ctrl-C instead of running on unseen.

Progress comes from the run's ``progress.jsonl`` (ocrft.progress: step, max_steps, loss,
``val/<metric>``), never from its log, and once it ends from its ``run.json``.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Optional, Sequence

from ocrft.progress import FILE as PROGRESS_FILE
from ocrft.progress import Progress, read_progress
from ocrft.run_record import RunRecord
from ocrft.studio.compose import OverrideError, compose
from ocrft.studio.job_store import ACTIVE, RESUMABLE, STATUSES, Job, JobStore, new_job_id

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 0.5  # how often a running job's progress.jsonl is read


class JobManager:
    """Starts, queues, watches and cancels launched runs; every method is thread-safe.

    Args:
        runs_root: jobs write under ``<runs_root>/studio/``, where the jobs file lives too.
        roots: the folders a launch may write in (``studio.roots``); default ``[runs_root]``.
        max_jobs: runs of this studio at once.
        python: the interpreter that runs ``-m ocrft``.
        cwd: the children's working folder: relative paths in overrides mean what they mean there.
        grace_s: how long a stopped run gets after each signal before the next.
        poll_s: how often the queue is read for jobs that other studios queued.
    """

    def __init__(self, *, runs_root: str | Path, roots: Optional[Sequence[str | Path]] = None, max_jobs: int = 1,
                 python: str = sys.executable, cwd: str | Path | None = None, grace_s: float = 20.0,
                 poll_s: float = 1.0) -> None:  # fmt: skip
        from filelock import FileLock

        self.cwd = Path(cwd or os.getcwd()).resolve()
        self.runs_root = _absolute(Path(runs_root), self.cwd)
        self.roots = [_absolute(Path(r), self.cwd) for r in (roots or [runs_root])]
        self.max_jobs = max(1, int(max_jobs))
        self.python, self.grace_s, self.poll_s = python, grace_s, poll_s
        self.store = JobStore(self.runs_root / "studio")
        # This studio's life, as a lock the OS frees when the process dies (SIGKILL included).
        self.owner = uuid.uuid4().hex[:12]
        self._owner_lock = FileLock(self._owner_file(self.owner))
        self._owner_lock.acquire()
        self._processes: dict[str, subprocess.Popen] = {}
        self._lock = threading.RLock()  # _start registers its process while _dispatch holds it
        self._changed = threading.Condition(self._lock)
        self._closed = False
        self._watchers: list[threading.Thread] = []
        for job_id in self.store.mark_orphans(self._owner_alive):
            log.warning("job %s was running when its studio stopped: interrupted (resume it to continue)", job_id)
        self._dispatcher = threading.Thread(target=self._dispatch, name="studio-jobs", daemon=True)
        self._dispatcher.start()
        atexit.register(self.shutdown)  # no run outlives the studio unseen: each gets its Ctrl-C

    @classmethod
    def from_config(cls, studio_cfg: Any) -> "JobManager":
        """The manager of ``task=studio``: jobs under the first of ``studio.roots``."""
        roots = list(studio_cfg.roots) or ["outputs"]
        return cls(runs_root=roots[0], roots=roots, max_jobs=studio_cfg.max_jobs)

    # -- submitting ----------------------------------------------------------------------
    def check(self, overrides: list[str], multirun: bool = False, job_id: str = "preview") -> tuple[list[str], Path, Any]:
        """(the overrides as launched, the run_dir, the composed config), or
        :class:`OverrideError` if the CLI would refuse them or the studio may not launch them."""
        overrides = [o.strip() for o in overrides if o and o.strip()]
        given = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") == "run_dir"]
        run_dir = Path(given[-1].split("=", 1)[1]) if given else self.runs_root / "studio" / job_id
        run_dir = _absolute(run_dir, self.cwd)
        overrides = [o for o in overrides if o not in given]
        # compose refuses a run_dir outside the roots (${oc.env:HOME}, ../..): it is a written path
        cfg = compose([*overrides, f"run_dir={run_dir}"], multirun=multirun, roots=self.roots, cwd=self.cwd)
        return overrides, Path(cfg.run_dir), cfg

    def submit(self, overrides: list[str], multirun: bool = False) -> Job:
        """Check ``overrides`` (:meth:`check`: nothing starts if refused), then queue the run;
        it starts when a slot is free."""
        job_id = new_job_id()
        overrides, run_dir, _ = self.check(overrides, multirun, job_id)
        # A multirun writes its jobs under the sweep folder (hydra.sweep.dir), one subfolder each.
        overrides.append(f"hydra.sweep.dir={run_dir}" if multirun else f"run_dir={run_dir}")
        argv = [self.python, "-m", "ocrft", *(["--multirun"] if multirun else []), *overrides]
        job = Job(id=job_id, overrides=overrides, multirun=multirun, run_dir=run_dir, argv=argv,
                  log_path=run_dir.parent / f"{run_dir.name}.log")  # fmt: skip
        self.store.add(job)
        log.info("job %s queued: %s", job.id, " ".join(overrides))
        self._wake()
        return job

    def resume(self, job_id: str) -> Job:
        """Queue a cancelled, failed or interrupted job again with the same argv and run_dir
        (it resumes from its last checkpoint)."""
        reset = {"status": "queued", "cancel_requested": False, "returncode": None, "error": None, "ended": None}
        if not self.store.update(job_id, only_if=RESUMABLE, **reset):
            job = self.store.get(job_id)  # KeyError for an unknown id
            raise ValueError(f"job {job_id} is {job.status}: only a {', '.join(RESUMABLE)} job resumes")
        log.info("job %s queued to resume", job_id)
        job = self.store.get(job_id)  # as queued: read before the dispatcher is woken to start it
        self._wake()
        return job

    def cancel(self, job_id: str) -> Job:
        """Cancel: a queued job leaves the queue; a running one gets SIGINT (ocrft's own
        Ctrl-C path: run.json is written), then SIGTERM and SIGKILL if it lingers."""
        if self.store.update(job_id, only_if=("queued",), status="cancelled", ended=time.time()):
            self._wake()
            return self.store.get(job_id)
        job = self.store.get(job_id)
        if job.status != "running" or job.pid is None:
            return job  # already over (or not started yet): nothing to cancel
        self.store.update(job_id, cancel_requested=True)
        with self._lock:
            process = self._processes.get(job_id)
        # Ours, or another live studio's (same machine, same user): the signal goes to its group.
        threading.Thread(target=self._stop, args=(job.pid, process), name=f"cancel-{job_id}", daemon=True).start()
        return self.store.get(job_id)

    # -- reading -------------------------------------------------------------------------
    def get(self, job_id: str) -> dict[str, Any]:
        return self.store.get(job_id).as_dict()

    def list(self) -> list[dict[str, Any]]:
        return [job.as_dict() for job in self.store.all()]

    def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the job is over (not queued or running) or ``timeout`` passes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (job := self.store.get(job_id)).status in ACTIVE:
            if deadline is not None and time.monotonic() >= deadline:
                break
            with self._lock:
                self._changed.wait(self.poll_s)
        return job.as_dict()

    def shutdown(self) -> None:
        """The studio is stopping: queued jobs stay queued (the next studio runs them); running
        ones get SIGINT (then SIGTERM, SIGKILL) and end ``interrupted``. Returns once they are gone."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            processes = dict(self._processes)
            self._changed.notify_all()
        for process in processes.values():
            self._stop(process.pid, process)
        self._dispatcher.join(timeout=5)
        for watcher in self._watchers:
            watcher.join(timeout=5)  # each records how its job ended
        self._owner_lock.release()

    # -- internals -----------------------------------------------------------------------
    def _owner_file(self, owner: str) -> Path:
        (self.store.state_dir / "owners").mkdir(exist_ok=True)
        return self.store.state_dir / "owners" / f"{owner}.lock"

    def _owner_alive(self, owner: Optional[str]) -> bool:
        """Whether the studio ``owner`` still runs: it holds its lock until it dies."""
        from filelock import FileLock, Timeout

        if owner == self.owner:
            return True
        if not owner:
            return False
        lock = FileLock(self._owner_file(owner))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return True
        lock.release()
        self._owner_file(owner).unlink(missing_ok=True)
        return False

    def _wake(self) -> None:
        with self._lock:
            self._changed.notify_all()

    def _dispatch(self) -> None:
        """Start queued jobs while this studio has free slots; the only thread that starts
        children. Polls the shared file for jobs queued by other studios."""
        while True:
            with self._lock:  # claim and start under the lock: shutdown() never misses a job
                if self._closed:
                    return
                job = self.store.claim(self.owner) if len(self._processes) < self.max_jobs else None
                if job is not None:
                    self._start(job)
                    continue
                self._changed.wait(self.poll_s)

    def _start(self, job: Job) -> None:
        if job.pid is not None:  # its last process, started by a studio that died, may still be ending
            self._await_orphan(job)
        try:
            job.run_dir.parent.mkdir(parents=True, exist_ok=True)
            # The child stops (as on Ctrl-C) when this studio dies: ocrft.parent_watch.
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "OCRFT_PARENT_PID": str(os.getpid())}
            with open(job.log_path, "ab") as log_file:  # appended to on resume
                log_file.write(f"$ {' '.join(job.argv)}\n".encode())
                # The run writes its log itself, so what it says after a studio died is kept too.
                # Own session: a signal meant for the studio (Ctrl-C) does not reach the runs;
                # cancel signals the whole group, dataloader workers included.
                process = subprocess.Popen(job.argv, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL,
                                           stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        except OSError as err:  # the interpreter vanished, the folder is not writable
            self.store.update(job.id, status="failed", error=f"could not start: {err}", ended=time.time())
            return
        with self._lock:
            self._processes[job.id] = process
        self.store.update(job.id, pid=process.pid, step=job.step, started=time.time())
        log.info("job %s started (pid %d), log %s", job.id, process.pid, job.log_path)
        watcher = threading.Thread(target=self._watch, args=(job, process), name=f"job-{job.id}", daemon=True)
        self._watchers = [t for t in self._watchers if t.is_alive()] + [watcher]  # shutdown joins the live ones
        watcher.start()

    def _watch(self, job: Job, process: subprocess.Popen) -> None:
        """Follow the run's ``progress.jsonl`` (ocrft.progress) until it ends; then record how it ended."""
        progress, offsets = Progress(step=job.step, max_steps=job.max_steps, metrics=dict(job.metrics)), {}
        while True:
            ended = process.poll() is not None  # read once more after the end: the last events
            if _follow_progress(job, progress, offsets):
                self.store.update(job.id, step=job.step, max_steps=job.max_steps, metrics=job.metrics)
            if ended:
                break
            time.sleep(PROGRESS_EVERY_S)
        returncode = process.wait()
        record = RunRecord.read(job.run_dir) or RunRecord()  # a multirun's is per trial; a run may die first
        job.metrics.update({k: v for k, v in record.metrics.items() if isinstance(v, (int, float))})
        if "train/global_step" in job.metrics:
            job.step = int(job.metrics["train/global_step"])
        with self._lock:
            self._processes.pop(job.id, None)
            closing_down = self._closed
        if self.store.get(job.id).cancel_requested:
            status, error = "cancelled", None
        elif returncode == 0:
            status, error = "finished", None
        elif closing_down:
            status, error = "interrupted", "the studio stopped while it ran; resume it to continue"
        else:
            status, error = "failed", record.error or f"exit status {returncode}; see {job.log_path}"
        self.store.update(job.id, status=status, error=error, returncode=returncode, ended=time.time(), pid=None,
                          step=job.step, max_steps=job.max_steps, metrics=job.metrics)  # fmt: skip
        log.info("job %s %s (exit %s)", job.id, status, returncode)
        self._wake()

    def _stop(self, pid: int, process: Optional[subprocess.Popen] = None) -> None:
        """SIGINT, SIGTERM, SIGKILL to the job's process group, ``grace_s`` apart, until it is
        gone (``process``, when it is our child; else the group)."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                return
            if self._gone(pid, process, self.grace_s):
                return
            log.warning("pid %d still running %.0f s after %s", pid, self.grace_s, sig.name)

    def _await_orphan(self, job: Job) -> None:
        """Wait for the process a dead studio started for ``job`` to stop by itself (it watches
        its parent); stop it if it lingers and is still that process (not a reused pid)."""
        assert job.pid is not None
        if not self._gone(job.pid, None, self.grace_s) and _started_near(job.pid, job.started):
            log.warning("job %s: the process of its previous run (pid %d) is still running; stopping it", job.id, job.pid)
            self._stop(job.pid)

    @staticmethod
    def _gone(pid: int, process: Optional[subprocess.Popen], timeout: float) -> bool:
        """Whether our child ``process`` exits (or, not ours, group ``pid`` empties) within ``timeout``."""
        if process is not None:
            try:
                process.wait(timeout)  # reaps it: a zombie would still count as a group member
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.1)
        return False


def _started_near(pid: int, when: Optional[float], slack_s: float = 10.0) -> bool:
    """Whether process ``pid`` started within ``slack_s`` of ``when`` (Linux /proc); False where
    that cannot be read, so a reused pid is never signalled."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime"))
    except (OSError, ValueError, IndexError, StopIteration):
        return False
    return when is not None and abs(boot + ticks / os.sysconf("SC_CLK_TCK") - when) < slack_s


def _absolute(path: Path, cwd: Path) -> Path:
    return path if path.is_absolute() else cwd / path


def _follow_progress(job: Job, progress: Progress, offsets: dict[Path, int]) -> bool:
    """Update ``job`` from the new events of its run's progress.jsonl (of a multirun: its
    newest trial's); whether anything changed."""
    files = [job.run_dir / PROGRESS_FILE] if not job.multirun else sorted(
        job.run_dir.glob(f"*/{PROGRESS_FILE}"), key=lambda p: p.stat().st_mtime)  # fmt: skip
    if not files or not files[-1].exists():
        return False
    path = files[-1]
    before = (progress.step, progress.max_steps, dict(progress.metrics))
    if path not in offsets and job.multirun:  # a new trial: its own steps
        progress.step = progress.max_steps = None
    progress, offsets[path] = read_progress(path.parent, offsets.get(path, 0), progress)
    job.step, job.max_steps = progress.step, progress.max_steps
    job.metrics.update(progress.metrics)
    return (progress.step, progress.max_steps, progress.metrics) != before


__all__ = ["Job", "JobManager", "OverrideError", "STATUSES"]
