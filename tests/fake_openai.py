"""A real OpenAI chat-completions server on 127.0.0.1 that misbehaves on cue.

The answer to a request is the label of its image, looked up by the SHA-256 of the image
bytes the client sent, so a correct prediction proves the image made the round trip.
Faults are scripted per image: ``script={sha: ["429:1", "500", "ok"]}`` answers that
image's first request with a 429 (Retry-After: 1), the second with a 500, and every later
one correctly; concurrency cannot reorder a per-image script.

Faults: ``ok``; ``429`` / ``429:<s>`` (Retry-After seconds, sent as given) / ``429-date:<s>``
(as an HTTP date) / ``429-ms:<ms>`` (retry-after-ms, beside a Retry-After of 9 s); ``500``, ``503``; ``400`` (not retryable); ``slow:<s>`` (answer after s seconds);
``garbage`` (HTML with status 200); ``nochoices`` (JSON without choices); ``truncated``
(body or SSE stream cut off, no [DONE]); ``drop`` (close without answering); ``json`` (a
correct answer as one JSON body even when a stream was asked for, as some servers do).

``hold_after=N`` lets N correct answers through and then holds every request until
``release()``, when held requests get a 503: the kill test uses it to stop a client at a
known point. ``log`` records every request in order of arrival (its scripted fault, then
its outcome once answered), so a test can prove what was (re)sent.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_dataset(folder: Path, n: int) -> tuple[list, dict[str, str], list[str]]:
    """``n`` distinct PNG lines: records, {image sha: label} (FakeOpenAI's labels), shas in record order."""
    from PIL import Image, ImageDraw

    from ocrft.data.record import Record

    folder.mkdir(parents=True, exist_ok=True)
    records, labels, shas = [], {}, []
    for i in range(n):
        path = folder / f"line_{i:02d}.png"
        im = Image.new("L", (60, 16), 255)
        ImageDraw.Draw(im).text((2, 2), f"L{i}", fill=i * 7 % 200)
        im.save(path)
        label = f"line {i} текст"
        records.append(Record(id=f"img-{i}", image=str(path), text=label))
        labels[sha256(path.read_bytes())] = label
        shas.append(sha256(path.read_bytes()))
    return records, labels, shas


class FakeOpenAI:
    """A scripted chat-completions server; use as a context manager."""

    def __init__(
        self,
        labels: dict[str, str],
        api_key: Optional[str] = None,
        script: Optional[dict[str, list[str]]] = None,
        hold_after: Optional[int] = None,
    ):
        self.labels = labels
        self.api_key = api_key
        self.script = script or {}
        self.hold_after = hold_after
        self.log: list[dict] = []  # {"sha", "fault", "stream", "outcome"} per request, by arrival
        self._attempts: dict[str, int] = {}
        self._ok = 0
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def release(self) -> None:
        """Answer held requests (503) and stop holding new ones."""
        with self._lock:
            self.hold_after = None
        self._release.set()

    def faults(self, sha: str) -> list[str]:
        """What this image's requests were answered with, in order of arrival."""
        with self._lock:
            return [r["fault"] for r in self.log if r["sha"] == sha]

    def served(self, sha: str) -> int:
        """How many correct answers this image got."""
        with self._lock:
            return sum(r["sha"] == sha and r["outcome"] == "ok" for r in self.log)

    def held(self) -> int:
        with self._lock:
            return sum(r["fault"] == "hold" for r in self.log)

    def _arrive(self, sha: str, stream: bool) -> dict:
        """Log a request and pick its fault from the image's script."""
        with self._lock:
            n = self._attempts.get(sha, 0)
            self._attempts[sha] = n + 1
            faults = self.script.get(sha, [])
            fault = faults[n] if n < len(faults) else "ok"
            if fault == "ok":
                if self.hold_after is not None and self._ok >= self.hold_after:
                    fault = "hold"
                else:
                    self._ok += 1
            entry = {"sha": sha, "fault": fault, "stream": stream, "outcome": None}
            self.log.append(entry)
            return entry


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:  # noqa: A002 - silence stderr
        pass

    def do_POST(self) -> None:
        fake: FakeOpenAI = self.server.fake  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if fake.api_key is not None and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
            # Echo what came in, as careless servers do: the client must scrub it.
            got = self.headers.get("Authorization")
            return self._json(401, {"error": {"message": f"invalid key in header {got!r}", "type": "auth"}})
        try:
            req = json.loads(body)
            parts = [p for m in req["messages"] if isinstance(m["content"], list) for p in m["content"]]
            url = next(p["image_url"]["url"] for p in parts if p["type"] == "image_url")
            prompt = "".join(p.get("text", "") for p in parts if p["type"] == "text")
            sha = sha256(base64.b64decode(url.split(",", 1)[1]))
            label = fake.labels[sha]
        except (ValueError, KeyError, StopIteration, IndexError, TypeError) as e:
            return self._json(400, {"error": {"message": f"bad request: {type(e).__name__}: {e}"}})
        entry = fake._arrive(sha, bool(req.get("stream")))
        try:
            outcome = self._answer(fake, entry["fault"], label, prompt, req)
        except (BrokenPipeError, ConnectionResetError):
            outcome = "client gone"
        with fake._lock:
            entry["outcome"] = outcome

    def _answer(self, fake: FakeOpenAI, fault: str, label: str, prompt: str, req: dict) -> str:
        name, _, arg = fault.partition(":")
        stream = bool(req.get("stream"))
        if name == "hold":
            fake._release.wait(60)
            self._json(503, {"error": {"message": "held, then released"}})
            return "released"
        if name in ("429", "429-date", "429-ms"):
            headers = {}
            if name == "429" and arg:
                headers["Retry-After"] = arg  # as given, readable or not
            elif name == "429-date":
                headers["Retry-After"] = email.utils.formatdate(time.time() + float(arg), usegmt=True)
            elif name == "429-ms":  # OpenAI's own header, beside a much longer Retry-After
                headers.update({"retry-after-ms": arg, "Retry-After": "9"})
            self._json(429, {"error": {"message": "rate limited"}}, headers)
            return fault
        if name in ("400", "500", "503"):
            self._json(int(name), {"error": {"message": f"scripted {name}"}})
            return fault
        if name == "garbage":
            self._raw(200, b"<html>upstream proxy error</html>", "text/html")
            return fault
        if name == "nochoices":
            self._json(200, {"id": "x", "object": "chat.completion"})
            return fault
        if name == "drop":
            self.close_connection = True
            return fault
        if name == "slow":
            time.sleep(float(arg))
        usage = {"prompt_tokens": 100 + len(prompt), "completion_tokens": len(label)}
        if stream and name != "json":
            self._stream(label, usage, truncated=name == "truncated", include_usage=bool((req.get("stream_options") or {}).get("include_usage")))
        elif name == "truncated":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"choices": [')
            self.close_connection = True
        else:
            message = {"role": "assistant", "content": label}
            self._json(200, {"id": "c", "object": "chat.completion", "choices": [{"index": 0, "message": message, "finish_reason": "stop"}], "usage": usage})
        return "ok" if name in ("ok", "json") else fault

    def _stream(self, label: str, usage: dict, truncated: bool, include_usage: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        pieces = [label[i : i + 3] for i in range(0, len(label), 3)] or [""]
        self.wfile.write(b": keep-alive comment\n\n")
        for i, piece in enumerate(pieces):
            chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
            if truncated and i == 0:
                return  # the stream just stops: no finish_reason, no [DONE]
        # As OpenAI and vLLM end a choice: an empty delta with its finish_reason.
        chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        if include_usage:
            self.wfile.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")

    def _json(self, status: int, obj: dict, headers: Optional[dict] = None) -> None:
        self._raw(status, json.dumps(obj).encode(), "application/json", headers)

    def _raw(self, status: int, body: bytes, content_type: str, headers: Optional[dict] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
