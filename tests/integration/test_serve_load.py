"""task=serve under locust load (issue 18): 64 users hammering a server that admits 8 get
200 or 429 and nothing else, the server stays healthy, and its memory stays bounded
(before admission control, every waiting request held its decoded image)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from tests.helpers import REPO
from tests.servers import chat, line_image_url, serve_process

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LOCUSTFILE = REPO / "experiments" / "serve_load" / "locustfile.py"
REQUESTS = 1000


def test_load_past_the_limit_is_200_or_429_and_memory_stays_bounded(tmp_path):
    import psutil

    overrides = ("serve.max_concurrent_requests=8", "serve.max_new_tokens=16")
    with serve_process(tmp_path, *overrides) as (url, proc):
        server = psutil.Process(proc.pid)
        # one request first: the first generation allocates what every later one reuses
        assert httpx.post(f"{url}/v1/chat/completions", json=chat(url, line_image_url()), timeout=60).status_code == 200
        before = server.memory_info().rss
        cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", "64", "-r", "64",
               "--run-time", "80s", "--stop-timeout", "30", "--host", url, "--only-summary", "--loglevel", "WARNING"]
        env = {**os.environ, "OCRFT_LOAD_REQUESTS": str(REQUESTS), "OCRFT_LOAD_SUMMARY": str(tmp_path / "load.json")}
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150)
        after = server.memory_info().rss
        assert httpx.get(f"{url}/health").status_code == 200
        assert httpx.post(f"{url}/v1/chat/completions", json=chat(url, line_image_url()), timeout=60).status_code == 200
    statuses = json.loads((tmp_path / "load.json").read_text())["statuses"]
    counts = {name: s["count"] for name, s in statuses.items()}
    assert done.returncode == 0, f"locust reported failures: {counts}\n{done.stderr[-3000:]}"
    assert set(counts) == {"200", "429"}, counts  # no other status, no connection error ("0")
    assert sum(counts.values()) == REQUESTS and sum(s["failures"] for s in statuses.values()) == 0
    assert counts["200"] >= 8 and counts["429"] >= 8
    assert statuses["429"]["p99_ms"] < 1000  # refused at once
    assert after - before < 300 * 2**20, f"RSS grew by {(after - before) / 2**20:.0f} MB"
