"""Host and Origin checks for a server on the user's own machine (DNS rebinding, cross-site requests).

A web page the user opens can make the browser send requests to ``127.0.0.1``. Two ways
in, and what stops each:

- **DNS rebinding.** A page at ``evil.example`` rebinds its name to 127.0.0.1; the browser
  then treats the local server as ``evil.example``'s own origin and lets the page read its
  answers. The browser still sends ``Host: evil.example:<port>``: refusing every Host that
  is not a name of this server stops it (what Jupyter, Ray's dashboard and Ollama added).
- **Cross-site requests.** A foreign page can POST to ``http://127.0.0.1:<port>`` without
  reading the answer (a "simple" request needs no CORS preflight), and a WebSocket has no
  CORS check at all. Browsers send ``Origin`` with both: refusing a state-changing request or
  a WebSocket whose Origin is not this server's own stops them. A request with no Origin
  (curl, a script, the openai SDK) is not from a browser page and passes.

Pure ASGI, in front of everything (Gradio's routes included); a refusal is a 403 whose JSON
body says which header was refused and what to set to allow it.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import urllib.parse
from typing import Any, Callable, Iterable, Optional

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
# Methods that change state: these need a same-origin Origin (or none). GET and HEAD only read.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ANY_HOST = "*"


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine (``localhost``, 127.0.0.0/8, ::1)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_allowed_hosts(bound_host: str) -> list[str]:
    """The names this server is reached by: the loopback names and the host it is bound to
    (with a wildcard bind, this machine's name, since a wildcard is never a Host header)."""
    names = list(LOOPBACK_NAMES)
    if bound_host in ("0.0.0.0", "::", ""):
        names += [socket.gethostname(), socket.getfqdn()]
    else:
        names.append(bound_host.strip("[]"))
    return list(dict.fromkeys(n.lower() for n in names))


def allowed_hosts(configured: Optional[Iterable[str]], bound_host: str) -> list[str]:
    """``serve.allowed_hosts`` / ``studio.allowed_hosts`` when set, else :func:`default_allowed_hosts`."""
    return list(configured) if configured is not None else default_allowed_hosts(bound_host)


def host_name(netloc: str) -> Optional[str]:
    """The host part of a ``Host`` header or an origin's netloc, lower-cased, brackets removed;
    None when it cannot be parsed."""
    try:
        parsed = urllib.parse.urlsplit(f"//{netloc}")
        parsed.port  # raises on a port that is no number
    except ValueError:  # a bad port or bracket
        return None
    return parsed.hostname or None  # urlsplit lower-cases it and drops the brackets


class OriginGuard:
    """ASGI middleware: 403 for a Host not in ``allowed_hosts`` (every route); with
    ``check_origin``, 403 for a state-changing request or WebSocket from a foreign Origin.

    Args:
        app: the application behind it.
        allowed_hosts: host names (no port) the server answers to; ``*`` allows any.
        check_origin: refuse POST/PUT/PATCH/DELETE and WebSockets whose ``Origin`` is not
            this server's own (scheme://host[:port] with the request's own Host).
        setting: the config section named in refusals, so the user knows what to change.
        render: the JSON body of a refusal, from its reason (serve answers OpenAI-shaped errors).
    """

    def __init__(
        self,
        app: Any,
        allowed_hosts: Iterable[str],
        *,
        check_origin: bool,
        setting: str,
        render: Callable[[str], dict] = lambda why: {"detail": why},
    ) -> None:
        self.app = app
        self.allowed = {h.strip("[]").lower() for h in allowed_hosts}
        self.check_origin = check_origin
        self.setting = setting
        self.render = render

    def refusal(self, scope: dict) -> Optional[str]:
        """Why the request is refused, or None to let it through."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host_header = headers.get("host", "")
        name = host_name(host_header)
        if ANY_HOST not in self.allowed and name not in self.allowed:
            return (f"Host {host_header!r} is not a name of this server (DNS rebinding guard); "
                    f"add it to {self.setting}.allowed_hosts to serve it")  # fmt: skip
        unsafe = scope["type"] == "websocket" or scope.get("method") in UNSAFE_METHODS
        origin = headers.get("origin")
        scheme = {"ws": "http", "wss": "https"}.get(scope.get("scheme", "http"), scope.get("scheme", "http"))
        if self.check_origin and unsafe and origin is not None and not _same_origin(origin, scheme, host_header):
            return (f"Origin {origin!r} is not this server's own ({host_header}): a page of another site "
                    f"may not change anything here")  # fmt: skip
        return None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        why = self.refusal(scope)
        if why is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": why[:120]})  # policy violation
        else:
            body = json.dumps(self.render(why)).encode()
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})  # fmt: skip
            await send({"type": "http.response.body", "body": body})


def _same_origin(origin: str, scheme: str, host_header: str) -> bool:
    """Whether ``origin`` (scheme://host[:port]) is the scheme, host and port the request was sent to."""
    parsed = urllib.parse.urlsplit(origin)
    if parsed.scheme != scheme or not parsed.netloc:
        return False  # "null" (a sandboxed frame, a file:// page) is no origin of ours
    try:
        default_port = 443 if parsed.scheme == "https" else 80
        origin_port = parsed.port or default_port
        request = urllib.parse.urlsplit(f"//{host_header}")
        request_port = request.port or default_port
    except ValueError:
        return False
    return (parsed.hostname or "").lower() == (request.hostname or "").lower() and origin_port == request_port
