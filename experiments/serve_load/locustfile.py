"""Locust load on task=serve: every user posts one real line image per request, back to
back, waiting only the Retry-After of a 429 (as the openai SDK does; it never resends the
refused request itself), until OCRFT_LOAD_REQUESTS requests were sent in all, then the
run quits.

Requests are named by their HTTP status ("200", "429", ...; "0" is a connection error),
so locust's --csv stats give latency per status. 200 and 429 count as successes, anything
else as a failure (locust then exits 1).

    locust -f experiments/serve_load/locustfile.py --headless -u 64 -r 64 --run-time 120s \\
        --host http://127.0.0.1:8000 --csv out/load --only-summary
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import gevent
from locust import FastHttpUser, constant, task
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


class OcrClient(FastHttpUser):
    wait_time = constant(0)
    # no client-side timeout shorter than the server's: a queued request must be answered
    network_timeout = 300.0
    connection_timeout = 10.0

    @task
    def transcribe(self) -> None:
        global _sent
        if _sent >= MAX_REQUESTS:
            if _sent == MAX_REQUESTS:
                _sent += 1
                gevent.spawn(self.environment.runner.quit)  # not from this greenlet: quit kills users
            raise StopUser()
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
