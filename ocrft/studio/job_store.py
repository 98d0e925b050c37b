"""The studio's jobs on disk: a small SQLite file in its state folder, shared by every studio
on the same roots.

The queue and history survive a restart or a crash. Each studio process is an *owner* that
holds an exclusive lock on ``owners/<id>.lock`` for as long as it lives (``filelock``: the OS
drops the lock when the process dies, SIGKILL included). A job is claimed by an atomic
``UPDATE ... WHERE status = 'queued'``, so two studios never start the same job; a running
job whose owner's lock is free belonged to a studio that died, and is marked ``interrupted``.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator, Optional

STATUSES = ("queued", "running", "finished", "failed", "cancelled", "interrupted")
RESUMABLE = ("cancelled", "failed", "interrupted")
ACTIVE = ("queued", "running")

_COLUMNS = """id TEXT PRIMARY KEY, overrides TEXT, multirun INTEGER, run_dir TEXT, argv TEXT, log_path TEXT,
    status TEXT, step INTEGER, max_steps INTEGER, metrics TEXT, returncode INTEGER, error TEXT, submitted REAL,
    started REAL, ended REAL, cancel_requested INTEGER, owner TEXT, pid INTEGER, seq INTEGER"""
_JSON = ("overrides", "argv", "metrics")


@dataclass
class Job:
    """One launched ``python -m ocrft`` run: a row of the jobs table."""

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
    owner: Optional[str] = None  # the studio running it
    pid: Optional[int] = None  # its process (and process group), while it runs

    def as_dict(self) -> dict[str, Any]:
        """The job as the jobs API returns it."""
        data = asdict(self)
        data["run_dir"], data["log"] = str(self.run_dir), str(data.pop("log_path"))
        for internal in ("cancel_requested", "owner", "pid"):
            data.pop(internal)
        return data


class JobStore:
    """The jobs table in ``<state_dir>/jobs.sqlite``; each call is one short transaction."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / "jobs.sqlite"
        state_dir.mkdir(parents=True, exist_ok=True)
        with self._transaction() as db:
            db.execute(f"CREATE TABLE IF NOT EXISTS jobs ({_COLUMNS})")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # A connection per call: the manager's threads share no connection, and IMMEDIATE
        # takes the write lock up front, so a read-then-update (a claim) is atomic across studios.
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as db:
            db.row_factory = sqlite3.Row
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # -- writing -------------------------------------------------------------------------
    def add(self, job: Job) -> None:
        row = _to_row(job)
        with self._transaction() as db:
            row["seq"] = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
            db.execute(f"INSERT INTO jobs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))

    def update(self, job_id: str, *, only_if: tuple[str, ...] = (), **values: Any) -> bool:
        """Set ``values`` on the job (when its status is one of ``only_if``, if given);
        whether a row changed."""
        row = _to_row(values)
        sql = f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in row)} WHERE id = ?"
        params = [*row.values(), job_id]
        if only_if:
            sql += f" AND status IN ({', '.join('?' * len(only_if))})"
            params += list(only_if)
        with self._transaction() as db:
            return db.execute(sql, params).rowcount == 1

    def claim(self, owner: str) -> Optional[Job]:
        """The oldest queued job, now ``running`` and owned by ``owner``; None if none waits."""
        with self._transaction() as db:
            row = db.execute("SELECT * FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET status = 'running', owner = ?, started = ? WHERE id = ?",
                       (owner, time.time(), row["id"]))  # fmt: skip
            return _from_row(db.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone())

    def mark_orphans(self, alive: Any) -> list[str]:
        """Mark ``interrupted`` every running job whose owner ``alive(owner)`` says is gone."""
        marked = []
        with self._transaction() as db:
            for row in db.execute("SELECT id, owner FROM jobs WHERE status = 'running'").fetchall():
                if not alive(row["owner"]):
                    db.execute("UPDATE jobs SET status = 'interrupted', ended = ?, error = ? WHERE id = ?",
                               (time.time(), "the studio running it stopped; resume it to continue", row["id"]))  # fmt: skip
                    marked.append(row["id"])
        return marked

    # -- reading -------------------------------------------------------------------------
    def get(self, job_id: str) -> Job:
        """The job; KeyError for an unknown id."""
        with self._transaction() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise KeyError(job_id)
        return _from_row(row)

    def all(self) -> list[Job]:
        """Every job, in launch order."""
        with self._transaction() as db:
            return [_from_row(row) for row in db.execute("SELECT * FROM jobs ORDER BY seq").fetchall()]

    def count(self, status: str, owner: str) -> int:
        with self._transaction() as db:
            return db.execute("SELECT COUNT(*) FROM jobs WHERE status = ? AND owner = ?", (status, owner)).fetchone()[0]


def new_job_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def _to_row(values: Any) -> dict[str, Any]:
    items = {f.name: getattr(values, f.name) for f in fields(values)} if isinstance(values, Job) else dict(values)
    row = {}
    for key, value in items.items():
        if key in _JSON:
            value = json.dumps(value)
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, bool):
            value = int(value)
        row[key] = value
    return row


def _from_row(row: sqlite3.Row) -> Job:
    data = {k: row[k] for k in row.keys() if k != "seq"}
    for key in _JSON:
        data[key] = json.loads(data[key])
    data["run_dir"], data["log_path"] = Path(data["run_dir"]), Path(data["log_path"])
    data["multirun"], data["cancel_requested"] = bool(data["multirun"]), bool(data["cancel_requested"])
    return Job(**data)
