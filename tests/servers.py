"""Real servers the tests start on loopback: free ports, a local `mlflow server`, the studio,
and task=serve (its app in a thread with a fake model, or the real task in a child process)."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from PIL import Image

from tests.helpers import REPO
from ocrft.evaluation.generation import Generation


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


# --- task=serve: its app in this process with a fake model, or the real task in a child -------

MODEL = "tiny-ocr"  # the model name FakeGenerator's apps serve
LINE_IMAGE = "tests/assets/tiny_ocr/line_00.png"


class FakeGenerator:
    """Deterministic stand-in for a VLM: answers with the image size and the prompt."""

    def __init__(self, delay: float = 0.05):
        self.delay = delay
        self.batch_sizes: list[int] = []
        self.limits: list[int] = []

    def read(self, images: list, prompts: list[str], max_new_tokens: int) -> list[Generation]:
        self.batch_sizes.append(len(images))
        self.limits.append(max_new_tokens)
        time.sleep(self.delay)  # the model is busy: requests arriving meanwhile queue up
        return [Generation(f"{im.width}x{im.height} {im.mode} {prompt}") for im, prompt in zip(images, prompts)]

    def count_tokens(self, text: str) -> int:
        return len(text.split())


@contextlib.contextmanager
def running(app) -> Iterator[str]:
    """Serve the ASGI ``app`` with uvicorn in a thread on a free loopback port; yield its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def data_url(size=(30, 12), mode="RGB", fmt="PNG") -> str:
    buf = io.BytesIO()
    Image.new(mode, size, "white").save(buf, format=fmt)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode()}"


def line_image_url() -> str:
    """A real line image of the tiny OCR set as a data URL."""
    return "data:image/png;base64," + base64.b64encode((REPO / LINE_IMAGE).read_bytes()).decode()


def chat(url: str, image_url: str, text: str = "Read.", **extra) -> dict:
    """The body of a chat completion asking ``MODEL`` to read one image."""
    content = [{"type": "image_url", "image_url": {"url": image_url}}, {"type": "text", "text": text}]
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}


@contextlib.contextmanager
def serve_process(folder: Path, *overrides: str, model: str = "demo_base",
                  env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:  # fmt: skip
    """``python -m ocrft task=serve model=<model> tracking=none`` on a free port (``env`` added to
    this process's environment), logging to ``folder/serve.log``; yields (base URL, process)
    once /health answers. A server the test left running gets SIGTERM (it finishes what is in
    flight), then SIGKILL if it does not exit."""
    port = free_port()
    log = folder / "serve.log"  # a file, not a pipe nobody drains: a full pipe would stall the server
    cmd = [sys.executable, "-m", "ocrft", "task=serve", f"model={model}", "tracking=none", f"serve.port={port}",
           f"run_dir={folder / 'serve-run'}", *overrides]  # fmt: skip
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **env} if env else None, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/health", proc, log, "task=serve", timeout=180)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
