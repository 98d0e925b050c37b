"""Backpressure: at most ``limit`` chat requests inside the server at once.

A request beyond the limit is answered 429 with ``Retry-After`` at once, as
text-generation-inference does past ``--max-concurrent-requests``: before its body is
read or its image decoded, so a flood costs neither memory nor CPU. Without it every
waiting request held its decoded image (issue 18: +389 MB RSS and a 14 s p99 with 256
concurrent requests; experiments/serve_load/README.md measures both). Once the server drains
(SIGTERM) new chat requests get 503; probes (/health, /v1/models) are never refused.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from ocrft.serving.protocol import error_body

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


async def send_error(send: Any, status: int, message: str, code: str, *, headers: dict[str, str] | None = None) -> None:
    """Answer an ASGI request with an OpenAI-shaped JSON error, without touching its body."""
    body = json.dumps(error_body(status, message, code)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class Admission:
    """ASGI middleware counting the requests to ``paths`` that are inside ``app``.

    Pure ASGI rather than a Starlette ``BaseHTTPMiddleware``: the refusal must not read
    the body, and the count must last until the response (streamed ones too) is sent.

    Args:
        app: the application behind it.
        limit: the most requests to ``paths`` inside ``app`` at once (serve.max_concurrent_requests).
        retry_after_s: sent as ``Retry-After`` with each 429 (serve.retry_after_s).
        paths: the POST paths that are counted; everything else passes through.
    """

    def __init__(self, app: ASGIApp, limit: int, retry_after_s: int, paths: tuple[str, ...] = ("/v1/chat/completions",)):
        self.app = app
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.paths = paths
        self.in_flight = 0
        self.refused = 0
        self.draining = False  # set on SIGTERM: finish what is inside, take nothing new

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        if self.draining:
            await send_error(send, 503, "the server is shutting down", "shutting_down")
            return
        # No await between the check and the increment: the event loop cannot interleave.
        if self.in_flight >= self.limit:
            self.refused += 1
            await send_error(send, 429, f"the server is at its limit of {self.limit} concurrent requests; "
                                        f"retry after {self.retry_after_s} s", "too_many_requests",
                             headers={"Retry-After": str(self.retry_after_s)})  # fmt: skip
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
