"""Real servers the tests start on loopback: free ports and a local `mlflow server`."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(root: Path, backend_store_uri: str) -> Iterator[str]:
    """Start ``mlflow server`` (proxied artifacts under ``root``) and yield its URL; stop it after."""
    port = free_port()
    log_file = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_store_uri,
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        cwd=root, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        # no background job workers (GenAI evaluation): they cost CPU and nothing here uses them
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/health", proc, root / "server.log", "mlflow server", timeout=180)
        yield url
    finally:
        # the server forks uvicorn workers into its own session: end the whole group we started
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log_file.close()


def wait_until_up(url: str, proc: subprocess.Popen, log: Path, what: str, timeout: float = 120) -> None:
    """Poll ``url`` until it answers; fail with the tail of ``log`` if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            pass
        if proc.poll() is not None:
            pytest.fail(f"{what} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not up after {timeout} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


@contextlib.contextmanager
def studio_server(folder: Path, roots: Path, env: dict | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """``python -m ocrft task=studio`` serving ``roots`` on a free port, its log in
    ``folder/studio.log``; yields (url, process) and stops it with SIGTERM."""
    port = free_port()
    log = folder / "studio.log"
    cmd = [sys.executable, "-m", "ocrft", "task=studio", f"studio.port={port}", f"studio.roots=[{roots}]",
           "tracking=none", f"run_dir={folder / 'studio-run'}"]  # fmt: skip
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_up(url, proc, log, "the studio")
        yield url, proc
    finally:
        proc.terminate()  # SIGTERM: the task stops uvicorn and records its run as finished
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()



def wait_job_over(url: str, job_id: str, timeout: float = 180) -> dict:
    """Poll the studio's jobs API at ``url`` until the job is no longer queued or running."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{url}/api/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s")
