"""Backpressure of task=serve's app on a real uvicorn server (in-process, free loopback
port) with a fake generator that blocks until the test lets it go: 429 past the limit
before the body is read, 504 past the timeout, and clients that hang up while queued are
never generated."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from ocrft.config import ServeConfig
from ocrft.serving.app import create_app
from ocrft.serving.batcher import Batcher
from tests.servers import chat, data_url, running
from ocrft.evaluation.generation import Generation


class GatedGenerator:
    """Generates only while ``gate`` is set; records the prompts of every batch it ran."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()
        self.batches: list[list[str]] = []

    def read(self, images: list, prompts: list[str], max_new_tokens: int) -> list[Generation]:
        self.batches.append(list(prompts))
        self.started.set()
        assert self.gate.wait(30), "the test never opened the gate"
        return [Generation(f"read {p}") for p in prompts]


def wait_for(condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def post(url: str, prompt: str, **kw) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=chat(url, data_url(), prompt), timeout=30, **kw)


def test_requests_past_the_limit_get_429_at_once_and_probes_pass():
    generator = GatedGenerator()
    cfg = ServeConfig(max_concurrent_requests=2, retry_after_s=7, max_batch_size=1, batch_wait_ms=1, max_body_bytes=10_000)
    app = create_app(generator, cfg, "m")
    with running(app) as url, ThreadPoolExecutor(2) as pool:
        inside = [pool.submit(post, url, p) for p in ("a", "b")]
        wait_for(lambda: app.in_flight == 2 and generator.started.is_set(), "two requests inside")
        began = time.monotonic()
        r = post(url, "c")
        assert time.monotonic() - began < 2  # refused at once, not queued
        assert r.status_code == 429 and r.headers["retry-after"] == "7"
        assert r.json()["error"]["type"] == "rate_limit_error" and r.json()["error"]["code"] == "too_many_requests"
        # Refused before the body is read: an oversized body would otherwise be a 413.
        big = httpx.post(f"{url}/v1/chat/completions", content=b"x" * 50_000, timeout=30)
        assert big.status_code == 429
        assert httpx.get(f"{url}/health").status_code == 200 and httpx.get(f"{url}/v1/models").status_code == 200
        generator.gate.set()
        assert [f.result().json()["choices"][0]["message"]["content"] for f in inside] == ["read a", "read b"]
        assert app.refused == 2
        wait_for(lambda: app.in_flight == 0, "the two requests to leave")
        assert post(url, "d").status_code == 200  # room again
    assert sorted(p for batch in generator.batches for p in batch) == ["a", "b", "d"]


def test_request_timeout_is_504_and_a_queued_job_is_dropped():
    generator = GatedGenerator()
    cfg = ServeConfig(request_timeout_s=0.5, max_batch_size=1, batch_wait_ms=1)
    app = create_app(generator, cfg, "m")
    with running(app) as url, ThreadPoolExecutor(2) as pool:
        running_one = pool.submit(post, url, "running")
        wait_for(generator.started.is_set, "the first batch to start")
        queued = post(url, "queued")  # behind the running batch, which outlasts the timeout
        assert queued.status_code == 504, queued.text
        assert queued.json()["error"] == {"message": "no answer within serve.request_timeout_s=0.5 s",
                                          "type": "server_error", "code": "timeout"}  # fmt: skip
        assert running_one.result().status_code == 504  # its batch runs on, its client is answered
        generator.gate.set()
        wait_for(lambda: app.in_flight == 0, "both requests to leave")
        assert post(url, "after").status_code == 200
    assert generator.batches == [["running"], ["after"]]  # the queued one never reached the model


def _raw_request(port: int, prompt: str) -> socket.socket:
    """Send one chat request on a raw socket and return the socket unread."""
    import json

    body = json.dumps(chat("", data_url(), prompt)).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body)
    return sock


def test_a_client_that_hangs_up_while_queued_is_never_generated():
    generator = GatedGenerator()
    app = create_app(generator, ServeConfig(max_batch_size=1, batch_wait_ms=1), "m")
    with running(app) as url, ThreadPoolExecutor(1) as pool:
        first = pool.submit(post, url, "first")
        wait_for(generator.started.is_set, "the first batch to start")
        port = int(url.rsplit(":", 1)[1])
        gone = _raw_request(port, "gone")
        wait_for(lambda: app.in_flight == 2, "the second request to be queued")
        time.sleep(0.2)  # let its image be decoded and the job queued
        gone.close()
        wait_for(lambda: app.in_flight == 1, "the server to notice the hang-up")
        generator.gate.set()
        assert first.result().json()["choices"][0]["message"]["content"] == "read first"
        assert post(url, "next").status_code == 200
    assert generator.batches == [["first"], ["next"]]


def test_batcher_skips_cancelled_jobs():
    class Recorder:
        def __init__(self) -> None:
            self.prompts: list[str] = []

        def read(self, images, prompts, max_new_tokens):
            self.prompts += prompts
            return [Generation(p) for p in prompts]

    async def scenario(gen: Recorder) -> list:
        batcher = Batcher(gen, max_batch_size=8, wait_s=0.05)
        jobs = [asyncio.ensure_future(batcher.submit(None, p, 4)) for p in ("keep", "cancel", "also")]
        await asyncio.sleep(0)  # all three queued
        jobs[1].cancel()
        runner = asyncio.ensure_future(batcher.run())
        done = await asyncio.gather(jobs[0], jobs[2])
        runner.cancel()
        return done

    gen = Recorder()
    assert asyncio.run(scenario(gen)) == [("keep", 1, 1), ("also", 1, 1)]
    assert gen.prompts == ["keep", "also"]


@pytest.mark.parametrize("status, kind", [(429, "rate_limit_error"), (401, "authentication_error"),
                                          (400, "invalid_request_error"), (504, "server_error")])  # fmt: skip
def test_error_bodies_are_openai_shaped(status, kind):
    from ocrft.serving.protocol import error_body

    assert error_body(status, "why", "code") == {"error": {"message": "why", "type": kind, "code": "code"}}


def test_a_draining_server_answers_503_and_still_answers_probes():
    app = create_app(GatedGenerator(), ServeConfig(), "m")
    with running(app) as url:
        app.draining = True  # what run_serve's SIGTERM handler sets
        r = post(url, "late")
        assert r.status_code == 503 and r.json()["error"]["code"] == "shutting_down"
        assert httpx.get(f"{url}/health").status_code == 200


def test_ocrft_endpoint_client_waits_out_a_429(tmp_path):
    from PIL import Image

    from ocrft.evaluation.endpoint import EndpointClient

    generator = GatedGenerator()
    app = create_app(generator, ServeConfig(max_concurrent_requests=1, retry_after_s=1, max_batch_size=1), "m")
    path = tmp_path / "line.png"
    Image.new("L", (40, 12), 200).save(path)
    with running(app) as url, ThreadPoolExecutor(2) as pool:
        holder = pool.submit(post, url, "holder")
        wait_for(generator.started.is_set, "the holder to generate")
        client = EndpointClient(f"{url}/v1", "m", max_tokens=8, timeout=30, max_retries=3)
        began = time.monotonic()
        waiting = pool.submit(client.transcribe, path, "second")
        wait_for(lambda: app.refused >= 1, "the client to be refused")
        generator.gate.set()  # room again: the client's retry, after Retry-After, gets in
        done = waiting.result()
        assert holder.result().status_code == 200
    assert (done.text, done.error) == ("read second", None)
    assert time.monotonic() - began >= 1.0  # it waited the Retry-After before resending
