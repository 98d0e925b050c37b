"""The ASGI app of task=serve: POST /v1/chat/completions (text + base64 data-URL image,
``stream`` supported), GET /v1/models, GET /health.

Each chat request is admitted (ocrft.serving.admission: 429 past
``serve.max_concurrent_requests``), authorized, read (body capped at
``serve.max_body_bytes``, declared and counted), parsed, its image decoded in a worker
thread, and queued for the Batcher. It gets 504 if not answered within
``serve.request_timeout_s``; a client that hangs up while queued is dropped from the queue
before its batch runs (a batch already running finishes; its answer is discarded).
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations
# (``request: Request``) at definition time, and Request is imported inside create_app.
import asyncio
import logging
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any, Awaitable, TypeVar

from ocrft.serving.admission import Admission
from ocrft.serving.auth import authorized, read_server_key
from ocrft.serving.batcher import Batcher, Reader
from ocrft.serving.images import decode_data_url, decode_image
from ocrft.serving.origin_guard import OriginGuard, allowed_hosts, is_loopback
from ocrft.serving.protocol import (CHAT_REQUEST_SCHEMA, RequestError, completion_body, error_body, parse_chat_body,
                                    parse_request, sse_chunks)

log = logging.getLogger(__name__)

T = TypeVar("T")


class ClientGone(Exception):
    """The client closed its connection before its answer was ready."""


def _error(status: int, message: str, code: str = "invalid_request") -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse(error_body(status, message, code), status_code=status)


async def _read_body(request: Any, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise RequestError(413, f"request body over {limit} bytes", "body_too_large")
    body = bytearray()
    async for chunk in request.stream():  # counted as it arrives: chunked uploads declare nothing
        body += chunk
        if len(body) > limit:
            raise RequestError(413, f"request body over {limit} bytes", "body_too_large")
    return bytes(body)


async def _hangup(request: Any) -> None:
    # Once the body is read, the server's receive() blocks until the connection closes.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def until_hangup(request: Any, work: Awaitable[T]) -> T:
    """The result of ``work``, or ClientGone as soon as the client disconnects (``work``
    is then cancelled: a Batcher job's future with it, so the job is never generated).

    Call only after the request body has been read: it listens on the request's receive.
    """
    job = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_hangup(request))
    try:
        await asyncio.wait({job, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if job.done():
            return job.result()
        raise ClientGone()
    finally:
        job.cancel()  # no-op when done; cancels the queued job on hang-up, timeout or shutdown
        watcher.cancel()


def create_app(predictor: Reader, serve_cfg: Any, model_name: str) -> Admission:
    """The ASGI app serving ``predictor`` (ocrft.evaluation.predictor) as ``model_name``: a FastAPI app behind the
    admission control (its ``draining``, ``in_flight`` and ``refused`` are the server's).

    Raises:
        ConfigError: if ``serve.api_key_env`` names an empty variable.
    """
    from fastapi import FastAPI, Request
    from fastapi.responses import StreamingResponse

    key = read_server_key(serve_cfg)
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state["batcher"] = Batcher(predictor, serve_cfg.max_batch_size, serve_cfg.batch_wait_ms / 1000)
        task = asyncio.create_task(state["batcher"].run())
        yield
        task.cancel()

    app = FastAPI(title="ocrft", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": model_name}

    @app.get("/v1/models")
    async def models(request: Request) -> Any:
        if not authorized(request.headers.get("authorization", ""), key):
            return _error(401, "missing or wrong bearer key", "invalid_api_key")
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0, "owned_by": "ocrft"}]}

    async def answer(request: Request) -> Any:
        req = parse_chat_body(await _read_body(request, serve_cfg.max_body_bytes))
        ocr = parse_request(req, serve_cfg.max_new_tokens)
        if ocr.system and not state.get("warned"):
            state["warned"] = True
            log.warning("a request's system message is ignored: the model uses the system prompt it was "
                        "loaded with (prompt.system); this is logged once")
        stream, include_usage = req.stream, bool(req.stream_options and req.stream_options.include_usage)
        data = decode_data_url(ocr.image_url)
        # A queued request holds its decoded image only, not its base64 text as well.
        del req
        ocr.image_url = ""
        image = await asyncio.to_thread(decode_image, data, serve_cfg.max_image_pixels)
        del data
        submitted = state["batcher"].submit(image, ocr.prompt, ocr.max_new_tokens)
        text, n_prompt, n_completion = await until_hangup(request, submitted)
        finish = "length" if getattr(predictor, "count_tokens", None) and n_completion >= ocr.max_new_tokens else "stop"
        usage = {"prompt_tokens": n_prompt, "completion_tokens": n_completion, "total_tokens": n_prompt + n_completion}
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": model_name}
        if not stream:
            return completion_body(head, text, finish, usage)
        return StreamingResponse(sse_chunks(head, text, finish, usage if include_usage else None),
                                 media_type="text/event-stream")  # fmt: skip

    # The body is read by hand (see answer), so its schema is declared for the OpenAPI document.
    body_schema = {"required": True, "content": {"application/json": {"schema": CHAT_REQUEST_SCHEMA}}}

    @app.post("/v1/chat/completions", openapi_extra={"requestBody": body_schema})
    async def chat_completions(request: Request) -> Any:
        if not authorized(request.headers.get("authorization", ""), key):
            return _error(401, "missing or wrong bearer key", "invalid_api_key")
        timeout = serve_cfg.request_timeout_s
        try:
            return await asyncio.wait_for(answer(request), timeout)
        except RequestError as e:
            return _error(e.status, str(e), e.code)
        except asyncio.TimeoutError:
            return _error(504, f"no answer within serve.request_timeout_s={timeout:g} s", "timeout")
        except ClientGone:
            log.info("a client hung up before its answer; its request was dropped")
            return _error(499, "client closed the request", "client_closed_request")  # nginx's code; nobody reads it

    return Admission(guarded(app, serve_cfg), serve_cfg.max_concurrent_requests, serve_cfg.retry_after_s)


def guarded(app: Any, serve_cfg: Any) -> Any:
    """``app`` behind the Host check (ocrft.serving.origin_guard) when the server is bound to
    loopback or ``serve.allowed_hosts`` is set: a page whose DNS name was rebound to 127.0.0.1
    gets 403. Bound beyond loopback with no list, every Host is answered (the key guards it)."""
    hosts = serve_cfg.allowed_hosts
    if hosts is None and not is_loopback(serve_cfg.host):
        return app
    # No Origin check: browser clients on other origins (a chat UI) may call a served model.
    return OriginGuard(app, allowed_hosts(hosts, serve_cfg.host), check_origin=False, setting="serve",
                       render=lambda why: error_body(403, why, "host_not_allowed"))  # fmt: skip
