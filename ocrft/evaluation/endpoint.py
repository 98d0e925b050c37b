"""model=endpoint: a client for any OpenAI-compatible chat-completions server.

One client speaks to OpenAI, Gemini and Claude (through their OpenAI-compatible
endpoints), vLLM, and this project's own ``task=serve``. Providers are plain YAML files in
``conf/provider/`` (base URL, default model, the environment variable holding the key, an
approximate price table); ``model.base_url``, ``model.remote_model`` and
``model.api_key_env`` override them.

The transport is the official ``openai`` SDK (``OpenAI(base_url=...)``): it retries 408,
409, 429, 5xx, timeouts and dropped connections with exponential backoff and jitter, and
honours Retry-After. On top of it this module adds what an evaluation needs: a 200 answer
that is no chat completion (an HTML error page, no choices, a stream cut short) is retried
too, and a failed sample's error is returned instead of raised; ocrft.evaluation.endpoint_eval runs
the client over a data set. Keys come from the environment only and are scrubbed from
every error message, so they reach no log, result or checkpoint.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ocrft.conf_dir import CONF_DIR
from ocrft.config import ConfigError
from ocrft.redact import scrub_text

log = logging.getLogger(__name__)

PROVIDER_DIR = CONF_DIR / "provider"  # conf/ of the checkout, or the one a wheel ships
# Formats every hosted API accepts as-is; anything else (TIFF, BMP, ...) is re-encoded as PNG.
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"))
# What the SDK retries besides every 5xx: an error with one of these statuses after the
# whole retry budget reads "gave up after N retries".
_RETRYABLE_STATUS = {408, 409, 429}
# Sent as the key where none is configured: the SDK refuses to start without one and would
# otherwise take OPENAI_API_KEY from the environment and send it to any server. Keyless
# servers (vLLM, task=serve without serve.api_key_env) ignore it; vLLM's docs use the same.
_NO_KEY = "EMPTY"


@dataclass(frozen=True)
class ProviderConfig:
    """One ``conf/provider/<name>.yaml``: where a provider lives and what it costs."""

    name: str
    base_url: str
    model: str
    api_key_env: Optional[str] = None
    api_key_required: bool = False
    models: list[str] = field(default_factory=list)
    pricing: dict[str, dict[str, float]] = field(default_factory=dict)  # model -> USD per 1M tokens
    pricing_as_of: Optional[str] = None


def known_providers() -> list[str]:
    """Names of the providers in ``conf/provider/``."""
    return sorted(p.stem for p in PROVIDER_DIR.glob("*.yaml"))


def load_provider(name: str) -> ProviderConfig:
    """Read ``conf/provider/<name>.yaml``.

    Raises:
        ConfigError: if ``name`` is not a known provider (the message lists them).
    """
    import yaml

    known = known_providers()
    if name not in known:  # also keeps `name` from reaching outside PROVIDER_DIR
        raise ConfigError(f"model.provider={name!r} is unknown; known providers: {known}")
    raw = yaml.safe_load((PROVIDER_DIR / f"{name}.yaml").read_text()) or {}
    return ProviderConfig(**raw)


def read_api_key(env_var: Optional[str], required: bool, provider: str = "endpoint") -> Optional[str]:
    """The API key from environment variable ``env_var``; None when absent and optional.

    Raises:
        ConfigError: naming the variable to set, when the key is required and missing.
    """
    value = os.environ.get(env_var, "").strip() if env_var else ""
    if not value:
        if required:
            raise ConfigError(
                f"model.provider={provider} needs an API key: set the environment variable "
                f"{env_var or '<model.api_key_env>'} (keys are read from the environment only, never from configs)"
            )
        return None
    if not value.isascii() or not value.isprintable():
        # Say which variable, never the value: httpx would otherwise fail on the header.
        raise ConfigError(f"model.api_key_env: the value of {env_var} is not a valid API key (non-ASCII or control "
                          "characters)")
    return value


@dataclass
class Completion:
    """One transcription: the text, what it cost, and how hard it was to get."""

    text: str
    usage: dict[str, Optional[int]]  # prompt_tokens, completion_tokens (None: server did not say)
    latency_s: float  # duration of the request that produced the answer, backoff excluded
    retries: int
    error: Optional[str] = None


def image_data_url(image: Any) -> str:
    """``image`` (a path or a PIL image) as a base64 ``data:`` URL.

    PNG, JPEG and GIF files are sent byte for byte (detected from content, not the
    extension); other formats are decoded like local evaluation does and sent as PNG.
    """
    import io

    if isinstance(image, (str, os.PathLike)):
        data = Path(image).read_bytes()
        for magic, mime in _MAGIC:
            if data.startswith(magic):
                return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return f"data:image/webp;base64,{base64.b64encode(data).decode('ascii')}"
        from ocrft.data.images import open_image

        image = open_image(image)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return f"data:image/png;base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


class _Malformed(Exception):
    """A 200 answer that is no chat completion (an HTML error page, no choices, a stream cut
    short or broken): the SDK hands it over as it came, and another try may well succeed."""

    def __init__(self, message: str, retries_taken: int):
        super().__init__(message)
        self.retries_taken = retries_taken


def retry_delay(retries: int) -> float:
    """Seconds to wait before re-sending after a malformed answer: the SDK's own curve for
    its HTTP retries (0.5 s doubling up to 8 s, less up to 25 % jitter), so that both kinds
    of retry pace alike."""
    return min(0.5 * 2**retries, 8.0) * (1 - 0.25 * random.random())


class EndpointClient:
    """A thread-safe chat-completions client on the ``openai`` SDK: one ``OpenAI`` client
    (one connection pool) shared by all workers."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: Optional[str] = None,
        timeout: float = 60.0,
        max_retries: int = 5,
        temperature: float = 0.0,
        max_tokens: int = 1024,
        stream: bool = False,
    ):
        from openai import OpenAI

        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.timeout = timeout
        self.max_retries = max_retries
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.stream = stream
        self._secrets = [api_key] if api_key else []
        self._openai = OpenAI(base_url=base_url, api_key=api_key or _NO_KEY, timeout=timeout, max_retries=max_retries)
        self._stop = threading.Event()  # set by close(): abandon retry waits at once

    def __repr__(self) -> str:
        auth = "***" if self._secrets else None
        return f"EndpointClient(url={self.url!r}, model={self.model!r}, api_key={auth}, stream={self.stream})"

    def close(self) -> None:
        """Stop retrying and close the connection pool."""
        self._stop.set()
        self._openai.close()

    def model_ids(self) -> list[str]:
        """The model ids the server lists at ``GET <base_url>/models``; [] when it lists none
        or does not answer (one try: this only names the model, it is no sample)."""
        import openai

        try:
            return [m.id for m in self._openai.with_options(max_retries=0).models.list().data]
        except (openai.OpenAIError, ValueError, TypeError, AttributeError):
            return []

    def transcribe(self, image: Any, prompt: str, system: Optional[str] = None) -> Completion:
        """Ask the model to transcribe ``image`` (a path or PIL image) with ``prompt``.

        Never raises for server trouble: a failure after ``max_retries`` retries (the SDK's
        and ours together), or a non-retryable HTTP error, is returned in
        ``Completion.error``.
        """
        import openai

        content = [{"type": "image_url", "image_url": {"url": image_data_url(image)}}, {"type": "text", "text": prompt}]
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
        retries = 0
        while True:
            try:
                text, usage, latency_s, taken = self._complete(messages, self.max_retries - retries)
                return Completion(text, usage, latency_s, retries + taken)
            except openai.APIError as e:  # the SDK gave up, or the error is not worth a retry
                retries += _retries_taken(e)
                message, retryable = self._describe(e)
                if retryable and retries >= self.max_retries:
                    message += f" (gave up after {retries} retries)"
                return Completion("", no_usage(), 0.0, retries, error=message)
            except _Malformed as e:
                retries += e.retries_taken
                message = self._scrub(str(e))
                if retries >= self.max_retries:
                    return Completion("", no_usage(), 0.0, retries, error=f"{message} (gave up after {retries} retries)")
                delay = retry_delay(retries)
                log.warning("%s: %s; retry %d/%d in %.2f s", self.url, message, retries + 1, self.max_retries, delay)
                if self._stop.wait(delay):
                    return Completion("", no_usage(), 0.0, retries, error=f"{message} (cancelled)")
                retries += 1

    def _complete(self, messages: list, max_retries: int) -> tuple[str, dict, float, int]:
        """One SDK call (with up to ``max_retries`` retries of its own): text, usage, the
        latency of the answering request (backoff excluded) and the retries it took."""
        from openai.types.chat import ChatCompletion

        request: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": self.temperature,
                                   "max_tokens": self.max_tokens, "stream": self.stream}
        if self.stream:
            request["stream_options"] = {"include_usage": True}
        sdk = self._openai.with_options(max_retries=max_retries)
        raw = sdk.chat.completions.with_raw_response.create(**request)
        taken = raw.retries_taken
        try:
            if not self.stream:
                completion = raw.parse()
            elif raw.headers.get("content-type", "").startswith("application/json"):
                # A server that ignores "stream" and sends one whole completion is fine too.
                completion = _read_whole(raw, taken)
            else:
                text, usage = _read_stream(raw.parse(), taken)
                return text, usage, raw.elapsed.total_seconds(), taken
        finally:
            raw.http_response.close()
        if not isinstance(completion, ChatCompletion) or not completion.choices:
            raise _Malformed(f"malformed response (no choices[0].message): {raw.http_response.text[:200]!r}", taken)
        return _content_text(completion.choices[0].message.content), _usage(completion.usage), raw.elapsed.total_seconds(), taken

    def _describe(self, error: Exception) -> tuple[str, bool]:
        """A scrubbed message for an SDK error, and whether the SDK retries that kind."""
        import openai

        if isinstance(error, openai.APIStatusError):
            status = error.status_code
            message = f"HTTP {status}: {error.response.text[:300]}"
            return self._scrub(message), status in _RETRYABLE_STATUS or status >= 500
        if isinstance(error, openai.APITimeoutError):
            return f"no answer within {self.timeout} s", True
        if isinstance(error, openai.APIConnectionError):
            cause = error.__cause__
            return self._scrub(f"connection error: {type(cause).__name__}: {cause}"), True
        return self._scrub(f"{type(error).__name__}: {error}"), False

    def _scrub(self, text: str) -> str:
        return scrub_text(text, self._secrets)


def _retries_taken(error: Any) -> int:
    # The SDK numbers each attempt in the x-stainless-retry-count request header; an error
    # carries the request of the last attempt.
    request = getattr(error, "request", None)
    try:
        return int(request.headers.get("x-stainless-retry-count", 0)) if request is not None else 0
    except ValueError:
        return 0


def _read_whole(raw: Any, taken: int) -> Any:
    """The one JSON completion a server sent where a stream was asked for."""
    from openai.types.chat import ChatCompletion

    try:
        return ChatCompletion.construct(**json.loads(raw.http_response.read()))
    except Exception as e:  # noqa: BLE001 - the transport's errors (httpx2's) or bad JSON: a broken answer
        raise _Malformed(f"malformed response: {type(e).__name__}: {e}", taken) from None


def _read_stream(stream: Any, taken: int) -> tuple[str, dict]:
    """Text and usage of a chat-completion chunk stream; a stream that breaks, stalls,
    reports an error or ends before a choice's finish_reason raises :class:`_Malformed`."""
    import openai

    parts: list[str] = []
    usage, finished = no_usage(), False
    try:
        for chunk in stream:
            for choice in chunk.choices or []:
                parts.append(_content_text(choice.delta.content if choice.delta else None))
                finished = finished or choice.finish_reason is not None
            if chunk.usage:
                usage = _usage(chunk.usage)
    except openai.APITimeoutError:
        raise _Malformed("stream stalled past the timeout", taken) from None
    except openai.APIError as e:  # a broken connection, or an error event in the stream
        raise _Malformed(f"stream broken: {type(e).__name__}: {e}", taken) from None
    except ValueError as e:  # a chunk that is not JSON
        raise _Malformed(f"malformed stream chunk: {e}", taken) from None
    if not finished:  # the server closed the stream early: the text may be cut short
        raise _Malformed("stream ended before its finish_reason (truncated)", taken)
    return "".join(parts), usage


def no_usage() -> dict:
    return {"prompt_tokens": None, "completion_tokens": None}


def _usage(usage: Any) -> dict:
    # Servers differ: counts may be missing, or not integers; those are unknown (None).
    counts = {k: getattr(usage, k, None) for k in ("prompt_tokens", "completion_tokens")}
    return {k: v if isinstance(v, int) else None for k, v in counts.items()}


def _content_text(content: Any) -> str:
    # Some servers answer with a list of parts instead of a string.
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def build_client(model_cfg: Any) -> EndpointClient:
    """An :class:`EndpointClient` from ``cfg.model`` (model=endpoint): the provider's YAML
    with ``base_url``, ``remote_model`` and ``api_key_env`` overrides, and the key read from
    the environment before any request.

    Raises:
        ConfigError: unknown provider, or a required key missing (naming the variable).
    """
    provider = load_provider(model_cfg.provider or "ocrft")
    env_var = model_cfg.api_key_env or provider.api_key_env
    # Naming a variable explicitly means the server wants a key: a missing one is an error.
    required = provider.api_key_required or model_cfg.api_key_env is not None
    return EndpointClient(
        base_url=model_cfg.base_url or provider.base_url,
        model=model_cfg.remote_model or provider.model,
        api_key=read_api_key(env_var, required, provider.name),
        timeout=model_cfg.timeout,
        max_retries=model_cfg.max_retries,
        temperature=model_cfg.temperature,
        max_tokens=model_cfg.max_tokens,
        stream=model_cfg.stream,
    )
