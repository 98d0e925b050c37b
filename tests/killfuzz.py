"""Kill fuzzing: SIGKILL a command at seeded random points, run it again, compare with an unkilled run.

A :class:`FuzzTask` is one ``python -m ocrft`` command (or any command) plus four views of
what it leaves on disk: ``point`` (what exists right now, in words: where a kill landed),
``check`` (what must hold after every kill: every file whole, nothing twice), ``outcome``
(the final outputs) and ``reset`` (remove them all). :func:`fuzz` then

1. runs the command once to its end, unkilled: the reference outcome, and the *window*
   from the run's first progress signal (a regex in its output, printed once the start-up
   is over and the work begins) to its last word (another regex; else its exit: the
   interpreter's teardown after the run is written is no point worth a kill);
2. starts the command and SIGKILLs its whole process group a seeded random delay in
   ``[0, window]`` after that signal; records the kill point; checks the files; starts the
   same command again, which resumes and may be killed in turn;
3. when a run prints its last word before its kill, it is left to exit, and that chain of
   kills is over: its outcome must equal the reference's, the outputs are removed and the
   next chain starts from nothing;
4. after ``kills`` kills, runs the command to its end and compares once more.

So each draw either kills a run somewhere in its real work, or lets it finish and proves the
resumed outcome; one unkilled reference serves every kill of a task. A failure reproduces
with its task and seed: the draws are ``random.Random(seed)``.

``OCRFT_KILL_POINTS`` sets the number of kills per task (:func:`kill_points`, default 2);
``OCRFT_KILL_REPORT`` names a JSON file each fuzzed task appends its kills to
(:func:`append_report`), which experiments/kill_fuzz/summarize.py turns into tables.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

log = logging.getLogger(__name__)

KILL_POINTS_ENV = "OCRFT_KILL_POINTS"
REPORT_ENV = "OCRFT_KILL_REPORT"
POLL_S = 0.01  # how often the output is searched for the signal and the child's exit checked


def kill_points(default: int = 2) -> int:
    """Kills per task: ``OCRFT_KILL_POINTS`` (``make fuzz`` sets 10), else ``default`` (CI)."""
    return int(os.environ.get(KILL_POINTS_ENV) or default)


def quiet_env(extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    """The environment of a fuzzed child: one thread each (oversubscribed OpenMP threads spin on
    a shared 2-core machine), unbuffered output so the signal shows up when it happens."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1", **(extra or {})}  # fmt: skip


def assert_equal(reference: Any, got: Any) -> None:
    """The default comparison of two outcomes: plain equality, the two shown on failure."""
    assert got == reference, f"outcome after kills differs from the unkilled run:\n got {got!r}\n ref {reference!r}"


@dataclass
class FuzzTask:
    """One command to fuzz and how to read what it leaves behind.

    Attributes:
        name: the task's name in reports (``train``, ``eval``, ...).
        argv: the command, run the same way every time.
        started: a regex the command prints once its start-up is over (the first progress
            signal); kill delays count from there.
        finished: a regex the command prints when its outputs are written; the reference's
            time from ``started`` to it bounds the delays (None: to the exit).
        point: what is on disk now, in words (called right after each kill).
        check: raises if a kill broke an invariant (a torn file, a duplicate id).
        outcome: the final outputs, compared with the unkilled run's by ``compare``.
        reset: removes every output, so the next run starts from nothing.
        compare: ``(reference, got)``, raises if they differ; plain equality by default.
        cwd: where the command runs.
        env: extra environment variables for the command.
        timeout: seconds one run may take.
    """

    name: str
    argv: list[str]
    started: str
    point: Callable[[], str]
    check: Callable[[], None]
    outcome: Callable[[], Any]
    reset: Callable[[], None]
    compare: Callable[[Any, Any], None] = assert_equal
    finished: Optional[str] = r"ocrft \w+: finished in"
    cwd: Optional[Path] = None
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 300.0


@dataclass
class Kill:
    """One SIGKILL: where it landed and how it was drawn."""

    task: str
    seed: int
    chain: int  # kills of one chain act on one set of outputs, each run resuming the last
    delay_s: float  # after the run's start signal
    point: str  # what existed on disk at the kill


@dataclass
class FuzzResult:
    """What :func:`fuzz` did for one task."""

    task: str
    seed: int
    reference_s: float  # the unkilled run, start to exit
    window_s: float  # its start signal to exit: the range delays are drawn from
    kills: list[Kill]
    runs: int  # killed and finished runs after the reference
    chains: int  # chains compared with the reference (each ends in a finished run)
    finished_before_kill: int  # draws that landed after the run's end: a resumed run that finished
    wall_s: float


@dataclass
class _Run:
    """One start of the command: how it ended and when."""

    killed: bool
    signal_s: Optional[float]  # seconds from start to the start signal (None: never seen)
    finished_s: Optional[float]  # seconds from start to the finished signal (None: not seen)
    end_s: float  # seconds from start to exit or kill
    log_file: Path


def _launch(task: FuzzTask, log_file: Path, delay: Optional[float]) -> _Run:
    """Run ``task.argv``; with ``delay``, SIGKILL it (its whole group) ``delay`` s after the signal."""
    started = re.compile(task.started)
    finished = re.compile(task.finished) if task.finished else None
    t0 = time.monotonic()
    with log_file.open("w") as out:
        child = subprocess.Popen(task.argv, cwd=task.cwd, stdout=out, stderr=subprocess.STDOUT,
                                 env=quiet_env(task.env), start_new_session=True)  # fmt: skip
    signal_at: Optional[float] = None
    finished_at: Optional[float] = None
    try:
        while child.poll() is None:
            now = time.monotonic()
            assert now - t0 < task.timeout, f"{task.name}: no exit after {task.timeout} s ({log_file})"
            if signal_at is None or (finished and finished_at is None):
                text = log_file.read_text(errors="replace")
                if signal_at is None and started.search(text):
                    signal_at = now
                if finished and finished_at is None and finished.search(text):
                    finished_at = now
            if finished_at is not None:
                delay = None  # its outputs are written: what is left is the interpreter's exit
            if signal_at is not None and delay is not None and now - signal_at >= delay:
                os.killpg(child.pid, signal.SIGKILL)  # the command and any child it started
                child.wait(30)
                return _Run(True, signal_at - t0, None, now - t0, log_file)
            time.sleep(POLL_S)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(30)
    end = time.monotonic()
    text = log_file.read_text(errors="replace")
    assert child.returncode == 0, f"{task.name}: exit {child.returncode} ({log_file}):\n{text[-4000:]}"
    if signal_at is None and started.search(text):  # printed just before a quick exit
        signal_at = end
    if finished and finished_at is None and finished.search(text):
        finished_at = end
    rel = lambda t: None if t is None else t - t0  # noqa: E731
    return _Run(False, rel(signal_at), rel(finished_at), end - t0, log_file)


def fuzz(task: FuzzTask, kills: int, seed: int, logs: Path, max_runs: Optional[int] = None) -> FuzzResult:
    """Kill ``task`` ``kills`` times at seeded random points; every resumed outcome must equal an unkilled run's.

    Args:
        task: the command and its views of the disk.
        kills: how many SIGKILLs to land.
        seed: seeds the delays; the same seed on the same machine draws the same delays.
        logs: folder for each run's output (``<task>-<n>.log``).
        max_runs: gives up (fails) after this many runs; default ``4 * kills + 4``.

    Returns:
        The kills and the runs it took, for reports.
    """
    logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    task.reset()
    ref_run = _launch(task, logs / f"{task.name}-reference.log", None)
    assert ref_run.signal_s is not None, f"{task.name}: the reference run never printed /{task.started}/"
    task.check()
    reference = task.outcome()
    assert not task.finished or ref_run.finished_s is not None, f"{task.name}: the reference never printed /{task.finished}/"
    window = (ref_run.finished_s or ref_run.end_s) - ref_run.signal_s
    log.info("%s: reference run %.1f s, window %.2f s after /%s/", task.name, ref_run.end_s, window, task.started)
    task.reset()

    rng = random.Random(seed)
    landed: list[Kill] = []
    runs = chains = early = 0
    limit = max_runs or 4 * kills + 4
    chain_has_kill = False
    while len(landed) < kills:
        assert runs < limit, f"{task.name}: {runs} runs landed only {len(landed)} of {kills} kills"
        delay = rng.uniform(0.0, window)
        run = _launch(task, logs / f"{task.name}-{runs}.log", delay)
        runs += 1
        if run.killed:
            point = task.point()
            landed.append(Kill(task.name, seed, chains, round(delay, 3), point))
            log.info("%s kill %d (chain %d): %.2f s after the signal: %s", task.name, len(landed), chains, delay, point)
            task.check()
            chain_has_kill = True
            continue
        early += 1  # this run finished first: the chain is over, and must match the reference
        task.check()
        task.compare(reference, task.outcome())
        if chain_has_kill:
            chains += 1
        chain_has_kill = False
        task.reset()
    _launch(task, logs / f"{task.name}-{runs}.log", None)  # the last chain's end
    runs += 1
    task.check()
    task.compare(reference, task.outcome())
    chains += 1
    return FuzzResult(task.name, seed, round(ref_run.end_s, 2), round(window, 2), landed, runs, chains, early,
                      round(time.monotonic() - started, 1))  # fmt: skip


def append_report(result: FuzzResult, extra: Optional[dict] = None) -> None:
    """Append ``result`` to the JSON list named by ``OCRFT_KILL_REPORT`` (no-op when unset)."""
    target = os.environ.get(REPORT_ENV)
    if not target:
        return
    path = Path(target)
    done = json.loads(path.read_text()) if path.is_file() else []
    done.append({**asdict(result), **(extra or {})})
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(done, indent=1, ensure_ascii=False) + "\n")
    tmp.replace(path)


# --- what a kill leaves on disk ---------------------------------------------------------------

_CHECKED = {".json", ".jsonl", ".yaml", ".yml", ".html", ".safetensors"}


def assert_every_file_parses(run_dir: Path) -> int:
    """Every JSON/JSONL/YAML/HTML/safetensors file ocrft wrote into ``run_dir`` is whole.

    Trainer checkpoints (written by transformers, not atomically) and the eval checkpoint
    (append-only: its last line may be cut, by design) are checked elsewhere. Returns the
    number of files checked.
    """
    from safetensors import safe_open

    checked = 0
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir)
        if not path.is_file() or rel.parts[0] == "checkpoints" or path.name.endswith(".tmp"):
            continue
        if any(part.startswith(".") for part in rel.parts):  # a temp file or folder mid-swap
            continue
        if path.name == "eval_checkpoint.jsonl" or path.suffix not in _CHECKED:
            continue
        text = None if path.suffix == ".safetensors" else path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            json.loads(text)
        elif path.suffix == ".jsonl":
            [json.loads(line) for line in text.splitlines()]
        elif path.suffix in (".yaml", ".yml"):
            yaml.safe_load(text)
        elif path.suffix == ".html":
            assert text.rstrip().endswith("</html>"), f"{rel} is cut short"
        else:
            with safe_open(str(path), "pt") as f:
                [f.get_tensor(k) for k in f.keys()]
        checked += 1
    return checked


def complete_checkpoints(folder: Path) -> list[int]:
    """Steps of the Trainer checkpoints whose trainer_state.json (written last) parses."""
    steps = []
    for path in folder.glob("checkpoint-*"):
        try:
            json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            continue
        steps.append(int(path.name.split("-")[1]))
    return sorted(steps)


def checkpoint_rows(path: Path) -> tuple[list[dict], int]:
    """The whole rows of an eval checkpoint and how many lines were cut short."""
    rows, cut = [], 0
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        try:
            rows.append(json.loads(line))
        except ValueError:
            cut += 1
    return rows, cut
