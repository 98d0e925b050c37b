"""task=serve under locust load, with admission control and without (issue 18).

Starts `python -m ocrft task=serve model=demo_base` once per limit, warms it with one
request, then runs experiments/serve_load/locustfile.py headless (USERS users posting a
real line image back to back, waiting Retry-After after a 429) until REQUESTS requests were
sent. Prints, per limit: the 200/429 split, p50/p99 latency of each, throughput of
answered requests, and the server's RSS before, at its peak during and after the load;
then the ratios of the bounded run to the unbounded one (limit 1000 = the old behaviour).

    python bench/bench_serve_load.py [--users 64] [--requests 600] [--limits 8 1000] [--image PNG] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCUSTFILE = REPO / "experiments" / "serve_load" / "locustfile.py"
MB = 2**20


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"task=serve exited {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("task=serve did not come up")


def warm(url: str, image_path: Path) -> None:
    """One request, so the first generation's allocations are in the 'before' figure."""
    import base64

    image = base64.b64encode(image_path.read_bytes()).decode()
    body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}}]}]}
    req = urllib.request.Request(f"{url}/v1/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        assert r.status == 200


def render_page(path: Path) -> Path:
    """An A4 page at 200 dpi (1654x2339) of printed lines: 11.6 MB once decoded to RGB."""
    from PIL import Image, ImageDraw

    page = Image.new("RGB", (1654, 2339), "white")
    draw = ImageDraw.Draw(page)
    for y in range(40, 2300, 40):
        draw.text((60, y), "The quick brown fox jumps over the lazy dog 0123456789 " * 3, fill="black")
    page.save(path)
    return path


def measure(limit: int, users: int, requests: int, max_new_tokens: int, image: Path, out: Path) -> dict:
    """One server at ``limit``, one locust run against it; the figures of that run."""
    import psutil

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (out / f"serve_{limit}.log").open("w")
    cmd = [sys.executable, "-m", "ocrft", "task=serve", "model=demo_base", "tracking=none", f"serve.port={port}",
           f"serve.max_concurrent_requests={limit}", f"serve.max_new_tokens={max_new_tokens}",
           f"run_dir={out / f'serve_{limit}'}"]  # fmt: skip
    server = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_up(url, server)
        warm(url, image)
        proc = psutil.Process(server.pid)
        before = proc.memory_info().rss
        peak = [before]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.05):
                peak[0] = max(peak[0], proc.memory_info().rss)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        summary = out / f"load_{limit}.json"
        began = time.monotonic()
        subprocess.run([sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(users),
                        "-r", str(users), "--run-time", "600s", "--stop-timeout", "120", "--host", url,
                        "--only-summary", "--loglevel", "WARNING"],
                       env={**os.environ, "OCRFT_LOAD_REQUESTS": str(requests), "OCRFT_LOAD_SUMMARY": str(summary),
                            "OCRFT_LOAD_IMAGE": str(image)},
                       check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        wall = time.monotonic() - began
        stop.set()
        sampler.join()
        after = proc.memory_info().rss
    finally:
        server.terminate()
        server.wait(60)
        log.close()
    stats = json.loads(summary.read_text())["statuses"]
    ok = stats.get("200", {"count": 0})["count"]
    return {"limit": limit, "statuses": stats, "wall_s": wall, "answered_per_s": ok / wall,
            "rss_before_mb": before / MB, "rss_peak_mb": peak[0] / MB, "rss_after_mb": after / MB}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--limits", type=int, nargs="+", default=[8, 1000])
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--image", type=Path, default=REPO / "tests/assets/tiny_ocr/line_00.png",
                        help="the image every request sends (default: a 123x32 line; 'page': an A4 page rendered here)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-serve-load-"))
    out.mkdir(parents=True, exist_ok=True)
    if str(args.image) == "page":
        args.image = render_page(out / "page.png")
    results = [measure(limit, args.users, args.requests, args.max_new_tokens, args.image, out) for limit in args.limits]
    print(f"{args.users} users, {args.requests} requests of {args.image.name}, serve.max_new_tokens={args.max_new_tokens}; "
          f"logs in {out}")
    print("| limit | 200 | 429 | other | p50 / p99 of 200 (ms) | p50 / p99 of 429 (ms) | answered/s | wall (s) | RSS before / peak / after (MB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        s = r["statuses"]
        ok, busy = s.get("200", {"count": 0, "p50_ms": 0, "p99_ms": 0}), s.get("429", {"count": 0, "p50_ms": 0, "p99_ms": 0})
        other = sum(v["count"] for k, v in s.items() if k not in ("200", "429"))
        print(f"| {r['limit']} | {ok['count']} | {busy['count']} | {other} | {ok['p50_ms']:.0f} / {ok['p99_ms']:.0f} "
              f"| {busy['p50_ms']:.0f} / {busy['p99_ms']:.0f} | {r['answered_per_s']:.1f} | {r['wall_s']:.1f} "
              f"| {r['rss_before_mb']:.0f} / {r['rss_peak_mb']:.0f} / {r['rss_after_mb']:.0f} |")  # fmt: skip
    if len(results) >= 2:
        bounded, unbounded = results[0], results[-1]
        p99 = bounded["statuses"]["200"]["p99_ms"] / unbounded["statuses"]["200"]["p99_ms"]
        growth = (bounded["rss_peak_mb"] - bounded["rss_before_mb"]) / max(unbounded["rss_peak_mb"] - unbounded["rss_before_mb"], 1e-9)
        rate = bounded["answered_per_s"] / unbounded["answered_per_s"]
        print(f"limit {bounded['limit']} vs {unbounded['limit']}: p99 of answered requests x{p99:.2f}, "
              f"peak RSS growth x{growth:.2f}, answered/s x{rate:.2f}")


if __name__ == "__main__":
    main()
