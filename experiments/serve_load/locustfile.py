"""Locust load on task=serve: every user posts one real line image per request, back to
back, waiting the Retry-After of a 429 before its next request (as the openai SDK waits
before a retry), until OCRFT_LOAD_REQUESTS requests were sent in all and
answered, then the run quits.

Requests are named by their HTTP status ("200", "429", ...; "0" is a connection error),
so locust's stats give latency per status; OCRFT_LOAD_SUMMARY=<file> writes them as JSON
at the end. 200 and 429 count as successes, anything else as a failure (locust then exits 1).

    OCRFT_LOAD_SUMMARY=load.json locust -f experiments/serve_load/locustfile.py --headless \\
        -u 64 -r 64 --run-time 120s --host http://127.0.0.1:8000 --only-summary
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, constant, events, task
from locust.exception import StopUser

IMAGE = Path(os.environ.get("OCRFT_LOAD_IMAGE", Path(__file__).resolve().parents[2] / "tests/assets/tiny_ocr/line_00.png"))
MAX_REQUESTS = int(os.environ.get("OCRFT_LOAD_REQUESTS", "1000"))
EXPECTED = {200, 429}

_BODY = json.dumps({
    "model": "ocrft",
    "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(IMAGE.read_bytes()).decode()}},
        {"type": "text", "text": "Transcribe the text in this image."},
    ]}],
})  # fmt: skip
_sent = 0  # across users: gevent switches only at I/O, so the check-and-increment is atomic


@events.test_start.add_listener
def _quit_when_done(environment: Any, **_: Any) -> None:
    # Quit only once every user stopped by itself: runner.quit() would kill the requests
    # still in flight, and they would be missing from the stats.
    def watch() -> None:
        while _sent < MAX_REQUESTS or environment.runner.user_count > 0:
            gevent.sleep(0.1)
        environment.runner.quit()

    gevent.spawn(watch)


@events.quitting.add_listener
def _write_summary(environment: Any, **_: Any) -> None:
    # locust's --csv files are written every 2 s, not at the end, so they can miss the last
    # answers: the final figures are written here, where the stats are complete.
    path = os.environ.get("OCRFT_LOAD_SUMMARY")
    if not path:
        return
    summary = {
        entry.name: {"count": entry.num_requests, "failures": entry.num_failures,
                     "p50_ms": entry.get_response_time_percentile(0.5), "p99_ms": entry.get_response_time_percentile(0.99),
                     "max_ms": entry.max_response_time}
        for entry in environment.stats.entries.values()
    }  # fmt: skip
    Path(path).write_text(json.dumps({"sent": _sent, "statuses": summary}, indent=1))


class OcrClient(FastHttpUser):
    wait_time = constant(0)
    # no client-side timeout shorter than the server's: a queued request must be answered
    network_timeout = 300.0
    connection_timeout = 10.0

    @task
    def transcribe(self) -> None:
        global _sent
        if _sent >= MAX_REQUESTS:
            raise StopUser()  # the others finish their requests; _quit_when_done ends the run
        _sent += 1
        with self.client.post("/v1/chat/completions", data=_BODY, headers={"Content-Type": "application/json"},
                              catch_response=True) as response:  # fmt: skip
            response.request_meta["name"] = str(response.status_code)
            if response.status_code in EXPECTED:
                response.success()
            else:
                response.failure(f"HTTP {response.status_code}: {response.text[:200] if response.text else ''}")
            retry_after = float(response.headers.get("Retry-After") or 0) if response.status_code == 429 else 0.0
        gevent.sleep(retry_after)  # as the openai SDK does
