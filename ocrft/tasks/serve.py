"""task=serve: a local model behind the OpenAI chat-completions API.

    python -m ocrft task=serve model.path=outputs/train/<run> serve.port=8000
    python -m ocrft task=eval model=endpoint model.provider=ocrft data=json_ocr data.path=test.json

Endpoints: POST /v1/chat/completions (text + base64 data-URL image, ``stream`` supported),
GET /v1/models, GET /health. Concurrent requests are batched: a background task collects
up to ``serve.max_batch_size`` requests for ``serve.batch_wait_ms`` and calls the
generator once, in a worker thread so the event loop keeps accepting requests.

Hardening, because a served model is reachable by whoever can reach the port: loopback
by default, optional bearer key, bodies capped at ``serve.max_body_bytes`` (declared and
counted), image size checked from the header before decoding (decompression bombs),
a short list of image decoders, and no fetching of remote image URLs (no SSRF).
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations
# (``request: Request``) at definition time, and Request is imported inside create_app.
import asyncio
import base64
import binascii
import hmac
import io
import json
import logging
import math
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Optional, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from ocrft.config import ConfigError

log = logging.getLogger(__name__)

# Decoders a request may reach; PIL's others (EPS runs Ghostscript, ...) stay out of reach.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")


class Generator(Protocol):
    """What task=serve serves (ocrft.evaluation.generation.build_generator returns one).

    ``generate`` gets one image and one prompt per sample and returns one string per
    sample. An optional ``count_tokens(text) -> int`` makes the reported usage exact.
    """

    def generate(self, images: list[Any], prompts: list[str], max_new_tokens: int) -> list[str]: ...


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: Optional[str] = None
    image_url: Optional[Any] = None  # {"url": ...} per the spec; a bare string is accepted too


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: Optional[str | list[_Part]] = None


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The subset of the OpenAI chat-completions request this server acts on; other
    fields clients send (seed, user, ...) are accepted and ignored. Decoding is greedy,
    so ``temperature`` is accepted and ignored too."""

    model_config = ConfigDict(extra="allow")
    model: Optional[str] = None
    messages: list[_Message]
    max_tokens: Optional[int] = None
    max_completion_tokens: Optional[int] = None
    temperature: Optional[float] = None
    n: int = 1
    stream: bool = False
    stream_options: Optional[_StreamOptions] = None


class RequestError(Exception):
    """A request the server refuses; becomes an OpenAI-style JSON error."""

    def __init__(self, status: int, message: str, code: str = "invalid_request"):
        super().__init__(message)
        self.status = status
        self.code = code


def read_server_key(serve_cfg: Any) -> Optional[str]:
    """The bearer key from environment variable ``serve.api_key_env`` (None: no auth).

    Raises:
        ConfigError: if ``serve.api_key_env`` is set but the variable is empty, so a
            misconfigured server never starts open.
    """
    if not serve_cfg.api_key_env:
        return None
    key = os.environ.get(serve_cfg.api_key_env, "").strip()
    if not key:
        raise ConfigError(
            f"serve.api_key_env={serve_cfg.api_key_env} but that environment variable is empty: "
            f"export {serve_cfg.api_key_env}=<a secret> or unset serve.api_key_env"
        )
    return key


def decode_data_url(url: str) -> bytes:
    """The bytes of a ``data:<mime>;base64,<data>`` URL; remote URLs are refused."""
    if url.startswith(("http://", "https://")):
        raise RequestError(400, "remote image URLs are not fetched; send the image inline as a data URL "
                                "(data:image/png;base64,...)", "remote_url_refused")
    header, sep, data = url.partition(",")
    if not header.startswith("data:") or not sep or not header.endswith(";base64"):
        raise RequestError(400, "image_url must be a base64 data URL (data:image/png;base64,...)")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, "image data URL is not valid base64") from None


def decode_image(data: bytes, max_pixels: int) -> Any:
    """An RGB PIL image from encoded bytes, prepared as ocrft.data.images.open_image does
    (EXIF orientation, transparency onto white) so served and local results agree.

    The pixel count is read from the header and refused (413) before any decoding.
    """
    from PIL import Image, ImageOps

    from ocrft.data.images import flatten_to_rgb

    try:
        im = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError:
        raise RequestError(413, f"image is larger than {max_pixels} pixels", "image_too_large") from None
    except (OSError, SyntaxError, ValueError):
        raise RequestError(400, f"image is not a decodable {'/'.join(IMAGE_FORMATS)} file", "invalid_image") from None
    if im.width * im.height > max_pixels:
        raise RequestError(413, f"image is {im.width}x{im.height}, over {max_pixels} pixels", "image_too_large")
    try:
        im.load()
        return flatten_to_rgb(ImageOps.exif_transpose(im))
    except (OSError, SyntaxError, ValueError):
        raise RequestError(400, "image is truncated or corrupt", "invalid_image") from None


@dataclass
class OcrRequest:
    image_url: str
    prompt: str  # the user text parts, joined
    max_new_tokens: int
    system: str  # the system/developer text, which the served model does not take (see parse_request)


def parse_request(req: ChatRequest, default_max_tokens: int) -> OcrRequest:
    """The OCR request in a chat request: exactly one image, the user's text as prompt.

    System messages are accepted but not passed on: the generator applies the system prompt
    it was loaded with (``prompt.system``), as task=eval does locally. Passing the client's
    too would make a served model answer differently from the same model evaluated locally.
    """
    if req.n != 1:
        raise RequestError(400, "n must be 1")
    urls: list[str] = []
    system: list[str] = []
    user: list[str] = []
    for m in req.messages:
        if m.role not in ("system", "developer", "user"):
            raise RequestError(400, f"messages with role {m.role!r} are not supported (single-turn OCR only)")
        texts = system if m.role in ("system", "developer") else user
        parts = [_Part(type="text", text=m.content)] if isinstance(m.content, str) else (m.content or [])
        for p in parts:
            if p.type == "text":
                texts.append(p.text or "")
            elif p.type == "image_url" and m.role == "user":
                url = p.image_url.get("url") if isinstance(p.image_url, dict) else p.image_url
                if not isinstance(url, str):
                    raise RequestError(400, "image_url.url must be a string")
                urls.append(url)
            else:
                raise RequestError(400, f"content part of type {p.type!r} is not supported in a {m.role} message")
    if len(urls) != 1:
        raise RequestError(400, f"send exactly one image per request (got {len(urls)})")
    asked = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    if asked is not None and asked < 1:
        raise RequestError(400, "max_tokens must be >= 1")
    # Never more than the server's cap: one request must not hold the model for long.
    max_new = min(asked, default_max_tokens) if asked is not None else default_max_tokens
    return OcrRequest(urls[0], "\n".join(user), max_new, "\n".join(system))


@dataclass
class _Job:
    image: Any
    prompt: str
    max_new_tokens: int
    future: asyncio.Future


class Batcher:
    """Collects concurrent requests into generator batches; one generate() at a time."""

    def __init__(self, generator: Generator, max_batch_size: int, wait_s: float):
        self.generator = generator
        self.max_batch_size = max_batch_size
        self.wait_s = wait_s
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()

    async def submit(self, image: Any, prompt: str, max_new_tokens: int) -> tuple[str, int, int]:
        """(text, prompt tokens, completion tokens) for one request, once its batch ran."""
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Job(image, prompt, max_new_tokens, future))
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.wait_s
            while len(batch) < self.max_batch_size:
                while len(batch) < self.max_batch_size and not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                if len(batch) >= self.max_batch_size or loop.time() >= deadline:
                    break
                await asyncio.sleep(min(0.002, deadline - loop.time()))
            batch = [j for j in batch if not j.future.done()]  # clients that hung up
            # One generate() per max_new_tokens value: a shared limit would change answers.
            for limit in sorted({j.max_new_tokens for j in batch}):
                group = [j for j in batch if j.max_new_tokens == limit]
                try:
                    results = await asyncio.to_thread(self._generate, group, limit)
                except Exception as e:  # noqa: BLE001 - reported to every waiting client
                    log.exception("generation failed for a batch of %d", len(group))
                    message = f"generation failed: {type(e).__name__}"  # details stay in the server log
                    results = [RequestError(500, message, "generation_failed") for _ in group]
                for job, result in zip(group, results):
                    if job.future.done():
                        continue
                    if isinstance(result, Exception):
                        job.future.set_exception(result)
                    else:
                        job.future.set_result(result)

    def _generate(self, jobs: list[_Job], max_new_tokens: int) -> list[tuple[str, int, int]]:
        texts = self.generator.generate([j.image for j in jobs], [j.prompt for j in jobs], max_new_tokens)
        if len(texts) != len(jobs):
            raise RuntimeError(f"generator returned {len(texts)} texts for {len(jobs)} prompts")
        log.debug("generated a batch of %d", len(jobs))
        count = getattr(self.generator, "count_tokens", None) or _estimate_tokens
        return [(t, count(j.prompt), count(t)) for j, t in zip(jobs, texts)]


def _estimate_tokens(text: str) -> int:
    # ~4 characters per token: used only when the generator cannot count (image tokens excluded).
    return math.ceil(len(text) / 4)


def _error(status: int, message: str, code: str = "invalid_request") -> Any:
    from fastapi.responses import JSONResponse

    kind = "authentication_error" if status == 401 else "server_error" if status >= 500 else "invalid_request_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": code}}, status_code=status)


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


def create_app(generator: Generator, serve_cfg: Any, model_name: str) -> Any:
    """The FastAPI app serving ``generator`` as ``model_name``.

    Raises:
        ConfigError: if ``serve.api_key_env`` names an empty variable.
    """
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import StreamingResponse

    key = read_server_key(serve_cfg)
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state["batcher"] = Batcher(generator, serve_cfg.max_batch_size, serve_cfg.batch_wait_ms / 1000)
        task = asyncio.create_task(state["batcher"].run())
        yield
        task.cancel()

    app = FastAPI(title="ocrft", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    def authorized(request: Request) -> bool:
        if key is None:
            return True
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {key}".encode())

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": model_name}

    @app.get("/v1/models")
    async def models(request: Request) -> Any:
        if not authorized(request):
            return _error(401, "missing or wrong bearer key", "invalid_api_key")
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0, "owned_by": "ocrft"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        if not authorized(request):
            return _error(401, "missing or wrong bearer key", "invalid_api_key")
        try:
            body = await _read_body(request, serve_cfg.max_body_bytes)
            try:
                req = ChatRequest.model_validate_json(body)
            except ValidationError as e:
                # Locations and messages only: echoing inputs would echo whole images.
                detail = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()[:5])
                raise RequestError(400, f"invalid request: {detail}") from None
            ocr = parse_request(req, serve_cfg.max_new_tokens)
            if ocr.system and not state.get("warned"):
                state["warned"] = True
                log.warning("a request's system message is ignored: the model uses the system prompt it was "
                            "loaded with (prompt.system); this is logged once")
            image = await asyncio.to_thread(decode_image, decode_data_url(ocr.image_url), serve_cfg.max_image_pixels)
            text, n_prompt, n_completion = await state["batcher"].submit(image, ocr.prompt, ocr.max_new_tokens)
        except RequestError as e:
            return _error(e.status, str(e), e.code)
        finish = "length" if getattr(generator, "count_tokens", None) and n_completion >= ocr.max_new_tokens else "stop"
        usage = {"prompt_tokens": n_prompt, "completion_tokens": n_completion, "total_tokens": n_prompt + n_completion}
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": model_name}
        if not req.stream:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
            return {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return StreamingResponse(_sse(head, text, finish, usage if include_usage else None), media_type="text/event-stream")

    return app


async def _sse(head: dict, text: str, finish: str, usage: Optional[dict]):
    """The finished text as OpenAI chunks: role, content, finish reason, [usage], [DONE]."""
    head = {**head, "object": "chat.completion.chunk"}
    deltas = [({"role": "assistant", "content": ""}, None), ({"content": text}, None), ({}, finish)]
    for delta, reason in deltas:
        chunk = {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": reason}]}
        yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
    if usage is not None:
        yield f"data: {json.dumps({**head, 'choices': [], 'usage': usage})}\n\n"
    yield "data: [DONE]\n\n"


def run_serve(cfg: Any, ctx: Any) -> Any:
    """task=serve: load the model (ocrft.evaluation.generation.build_generator) and serve it until Ctrl-C."""
    import uvicorn

    from ocrft.evaluation.generation import build_generator
    from ocrft.provenance import serve_model_name
    from ocrft.runner import TaskResult

    read_server_key(cfg.serve)  # refuse a keyless "protected" server before loading weights
    host, port = cfg.serve.host, cfg.serve.port
    if host not in ("127.0.0.1", "localhost", "::1") and not cfg.serve.api_key_env:
        log.warning("serving on %s without a key: anyone who can reach port %d can use the model", host, port)
    generator = build_generator(cfg)
    model_name = serve_model_name(cfg)  # short: the run folder's name or the base's id, never a path
    app = create_app(generator, cfg.serve, model_name)
    url = f"http://{host}:{port}/v1"
    log.info("serving %s at %s (POST /chat/completions, GET /models, GET /health); Ctrl-C stops", model_name, url)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=10))
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal. Make a
    # re-raised SIGTERM (docker stop) a KeyboardInterrupt too, so both end the run cleanly.
    in_main = threading.current_thread() is threading.main_thread()  # signal.signal's own rule
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler) if in_main else None
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    log.info("server stopped")
    return TaskResult(paths={}, extra={"url": url, "model_name": model_name})
