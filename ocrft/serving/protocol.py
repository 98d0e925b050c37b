"""The OpenAI chat-completions protocol as task=serve speaks it: the request subset it acts
on, the OCR request inside it, OpenAI-shaped errors and the completion / SSE answers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from pydantic import BaseModel, ConfigDict, ValidationError

# The OpenAI error ``type`` of each status a client can get from this server.
ERROR_TYPES = {
    401: "authentication_error",
    429: "rate_limit_error",
}


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


_TEXT_PART = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
}
_IMAGE_PART = {
    "type": "object",
    "required": ["type", "image_url"],
    "properties": {
        "type": {"const": "image_url"},
        "image_url": {
            "type": "object",
            "required": ["url"],
            "properties": {"url": {"type": "string", "description": "data:image/png;base64,... (remote URLs are refused)"}},
        },
    },
}
# The request body of POST /v1/chat/completions in the app's OpenAPI schema (app.openapi(); the
# server publishes no /openapi.json: this is for tests and tooling). The handler reads the raw
# body itself (capped at serve.max_body_bytes while it arrives), so FastAPI cannot derive it
# from a parameter. It is the shape ChatRequest reads, with parse_request's roles and part
# types; its one rule across messages (exactly one image, in a user message) is not expressed.
# Extra fields are accepted and ignored.
CHAT_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["messages"],
    "properties": {
        "model": {"type": ["string", "null"]},
        "messages": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["role"],
                "properties": {
                    "role": {"enum": ["system", "developer", "user"]},
                    "content": {"anyOf": [
                        {"type": "string"},
                        {"type": "array", "items": {"oneOf": [_TEXT_PART, _IMAGE_PART]}},
                        {"type": "null"},
                    ]},
                },
            },
        },
        "max_tokens": {"type": ["integer", "null"], "minimum": 1},
        "max_completion_tokens": {"type": ["integer", "null"], "minimum": 1},
        "temperature": {"type": ["number", "null"], "description": "accepted and ignored: decoding is greedy"},
        "n": {"const": 1},
        "stream": {"type": "boolean"},
        "stream_options": {
            "type": ["object", "null"],
            "properties": {"include_usage": {"type": "boolean"}},
        },
    },
}  # fmt: skip


class RequestError(Exception):
    """A request the server refuses; becomes an OpenAI-style JSON error."""

    def __init__(self, status: int, message: str, code: str = "invalid_request"):
        super().__init__(message)
        self.status = status
        self.code = code


def error_body(status: int, message: str, code: str) -> dict:
    """The OpenAI error object for ``status`` (what the openai SDK parses into its exceptions)."""
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "code": code}}


def parse_chat_body(body: bytes) -> ChatRequest:
    """The chat request in a JSON body.

    Raises:
        RequestError: 400 naming the invalid fields (locations and messages only: echoing
            inputs would echo whole images).
    """
    try:
        return ChatRequest.model_validate_json(body)
    except ValidationError as e:
        detail = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()[:5])
        raise RequestError(400, f"invalid request: {detail}") from None


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


def completion_body(head: dict, text: str, finish: str, usage: dict) -> dict:
    """A non-streamed ``chat.completion`` answer."""
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
    return {**head, "object": "chat.completion", "choices": [choice], "usage": usage}


async def sse_chunks(head: dict, text: str, finish: str, usage: Optional[dict]) -> Iterator[str]:
    """The finished text as OpenAI chunks: role, content, finish reason, [usage], [DONE]."""
    head = {**head, "object": "chat.completion.chunk"}
    deltas = [({"role": "assistant", "content": ""}, None), ({"content": text}, None), ({}, finish)]
    for delta, reason in deltas:
        chunk = {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": reason}]}
        yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
    if usage is not None:
        yield f"data: {json.dumps({**head, 'choices': [], 'usage': usage})}\n\n"
    yield "data: [DONE]\n\n"
