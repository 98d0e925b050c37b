"""A throwaway PostgreSQL server for tests: installed if missing, started on a free port.

CI runs as root on a fresh Debian machine, so ``ensure_postgres()`` installs the server
with apt-get when its binaries are missing. ``PostgresServer`` runs ``initdb`` into a temp
folder and ``pg_ctl start`` on a free loopback port (trust auth, no fsync: nothing here
needs durability), as the ``postgres`` user when we are root (PostgreSQL refuses to run as
root), and ``pg_ctl stop`` removes it again.

    with PostgresServer() as pg:
        url = pg.create_database("optuna")   # postgresql://ocrft@127.0.0.1:<port>/optuna
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

from tests.servers import free_port

log = logging.getLogger(__name__)

USER = "ocrft"  # the database superuser initdb creates


class PostgresUnavailable(RuntimeError):
    """PostgreSQL is not installed and could not be installed here."""


def find_bin_dir() -> Optional[Path]:
    """The folder holding initdb/pg_ctl: on PATH, else Debian's /usr/lib/postgresql/<v>/bin."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def ensure_postgres() -> Path:
    """The server binaries' folder, installing the ``postgresql`` package (as root) if needed.

    Raises:
        PostgresUnavailable: not installed, and this machine cannot install it.
    """
    found = find_bin_dir()
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise PostgresUnavailable("PostgreSQL is not installed and apt-get (as root) is not available to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"]
    log.info("installing PostgreSQL: %s", " ".join(install))
    if subprocess.run(install, env=env, capture_output=True, timeout=900).returncode != 0:
        # a fresh machine has no package lists yet
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise PostgresUnavailable(f"apt-get install postgresql failed: {done.stderr[-1000:]}")
    found = find_bin_dir()
    if not found:
        raise PostgresUnavailable("the postgresql package installed no initdb/pg_ctl")
    return found


class PostgresServer:
    """One PostgreSQL cluster in a temp folder, listening on 127.0.0.1 only."""

    def __init__(self) -> None:
        self.bin = ensure_postgres()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="ocrft-pg-"))  # under /tmp: the postgres user can reach it
        self.data = self.root / "data"
        self.log_file = self.root / "server.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")  # created by the postgresql package
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self._ids = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        else:
            self._ids = {}

    def _run(self, *args: str) -> None:
        done = subprocess.run([str(self.bin / args[0]), *args[1:]], capture_output=True, text=True, timeout=120,
                              cwd=self.root, **self._ids)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stdout[-1500:]}{done.stderr[-1500:]}"
                               f"\n{self.log_file.read_text()[-1500:] if self.log_file.exists() else ''}")  # fmt: skip

    def start(self) -> "PostgresServer":
        self._run("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "--encoding=UTF8", "--no-sync")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off " \
                  "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"  # fmt: skip
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_file), "-o", options, "-w", "-t", "60", "start")
        log.info("PostgreSQL on 127.0.0.1:%d (data in %s)", self.port, self.data)
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database ``name``; returns its SQLAlchemy URL."""
        import psycopg

        # autocommit: CREATE DATABASE cannot run in a transaction
        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "PostgresServer":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
