"""model=endpoint: a client for any OpenAI-compatible chat-completions server.

One client speaks to OpenAI, Gemini and Claude (through their OpenAI-compatible
endpoints), vLLM, and this project's own ``task=serve``. Providers are plain YAML files in
``conf/provider/`` (base URL, default model, the environment variable holding the key, an
approximate price table); ``model.base_url``, ``model.remote_model`` and
``model.api_key_env`` override them.

The client retries 429/5xx/timeouts with backoff and jitter (honouring Retry-After) and
returns a failed sample's error instead of raising; ocrft.endpoint_eval runs it over a data
set. Keys come from the environment only and are scrubbed from every error message, so
they reach no log, result or checkpoint.
"""

from __future__ import annotations

import base64
import email.utils
import json
import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ocrft.redact import scrub_text
from ocrft.validate import ConfigError

log = logging.getLogger(__name__)

PROVIDER_DIR = Path(__file__).resolve().parents[1] / "conf" / "provider"
# Formats every hosted API accepts as-is; anything else (TIFF, BMP, ...) is re-encoded as PNG.
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"))
_RETRYABLE_STATUS = {408, 409, 429}  # plus every 5xx


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
        raise ConfigError(f"the value of {env_var} is not a valid API key (non-ASCII or control characters)")
    return value


@dataclass
class Completion:
    """One transcription: the text, what it cost, and how hard it was to get."""

    text: str
    usage: dict[str, Optional[int]]  # prompt_tokens, completion_tokens (None: server did not say)
    latency_s: float  # duration of the request that produced the answer, backoff excluded
    retries: int
    error: Optional[str] = None


class _Retry(Exception):
    """A failure worth another try (429, 5xx, timeout, connection error, garbage)."""

    def __init__(self, message: str, retry_after: Optional[float] = None):
        super().__init__(message)
        self.retry_after = retry_after


class _Fatal(Exception):
    """A failure another try would repeat (400, 401, 403, 404, 422, ...)."""


def parse_retry_after(headers: Any, cap: float) -> Optional[float]:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP date),
    clamped to ``[0, cap]``; None when absent or unreadable."""
    ms = headers.get("retry-after-ms")
    value = headers.get("retry-after")
    seconds: Optional[float] = None
    try:
        if ms is not None:
            seconds = float(ms) / 1000
        elif value is not None:
            seconds = float(value)
    except ValueError:
        seconds = None
    if seconds is None and value is not None:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    if seconds is None or seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), cap)


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


class EndpointClient:
    """A thread-safe OpenAI chat-completions client with retry, backoff and streaming."""

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
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
    ):
        import httpx

        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.timeout = timeout
        self.max_retries = max_retries
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.stream = stream
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._secrets = [api_key] if api_key else []
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(timeout=timeout, headers=headers)
        self._stop = threading.Event()  # set by close(): abandon backoff sleeps at once

    def __repr__(self) -> str:
        auth = "***" if self._secrets else None
        return f"EndpointClient(url={self.url!r}, model={self.model!r}, api_key={auth}, stream={self.stream})"

    def close(self) -> None:
        """Stop retrying and close the connection pool."""
        self._stop.set()
        self._http.close()

    def backoff(self, attempt: int, retry_after: Optional[float] = None) -> float:
        """Seconds to wait before retry number ``attempt + 1``: the server's Retry-After if
        it sent one, else full jitter (uniform in [0, min(max, base * 2**attempt)]), which
        spreads concurrent workers apart instead of retrying in lockstep."""
        if retry_after is not None:
            return retry_after
        return random.uniform(0.0, min(self.backoff_max, self.backoff_base * 2**attempt))

    def transcribe(self, image: Any, prompt: str, system: Optional[str] = None) -> Completion:
        """Ask the model to transcribe ``image`` (a path or PIL image) with ``prompt``.

        Never raises for server trouble: a failure after ``max_retries`` retries, or a
        non-retryable HTTP error, is returned in ``Completion.error``.
        """
        content = [{"type": "image_url", "image_url": {"url": image_data_url(image)}}, {"type": "text", "text": prompt}]
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "stream": self.stream,
        }
        if self.stream:
            payload["stream_options"] = {"include_usage": True}
        attempt = 0
        while True:
            t0 = time.monotonic()
            try:
                text, usage = self._post_stream(payload) if self.stream else self._post(payload)
                return Completion(text, usage, time.monotonic() - t0, attempt)
            except _Fatal as e:
                return Completion("", no_usage(), time.monotonic() - t0, attempt, self._scrub(str(e)))
            except _Retry as e:
                message = self._scrub(str(e))
                if attempt >= self.max_retries:
                    return Completion("", no_usage(), time.monotonic() - t0, attempt, f"{message} (gave up after {attempt} retries)")
                delay = self.backoff(attempt, e.retry_after)
                log.warning("%s: %s; retry %d/%d in %.2f s", self.url, message, attempt + 1, self.max_retries, delay)
                if self._stop.wait(delay):
                    return Completion("", no_usage(), time.monotonic() - t0, attempt, f"{message} (cancelled)")
                attempt += 1

    def _scrub(self, text: str) -> str:
        return scrub_text(text, self._secrets)

    def _post(self, payload: dict) -> tuple[str, dict]:
        import httpx

        try:
            r = self._http.post(self.url, json=payload)
        except httpx.TimeoutException:
            raise _Retry(f"no answer within {self.timeout} s") from None
        except httpx.TransportError as e:
            raise _Retry(f"connection error: {type(e).__name__}: {e}") from None
        self._check_status(r)
        return _parse_completion(r)

    def _post_stream(self, payload: dict) -> tuple[str, dict]:
        import httpx

        parts: list[str] = []
        usage: dict = no_usage()
        try:
            with self._http.stream("POST", self.url, json=payload) as r:
                if r.status_code != 200:
                    r.read()
                    self._check_status(r)
                if r.headers.get("content-type", "").startswith("application/json"):
                    r.read()  # a server that ignores "stream": a whole completion is fine too
                    return _parse_completion(r)
                for line in r.iter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators, ": keep-alive" comments, event:/id: fields
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return "".join(parts), usage
                    try:
                        chunk = json.loads(data)
                    except ValueError:
                        raise _Retry(f"malformed stream chunk: {data[:200]!r}") from None
                    if not isinstance(chunk, dict) or "error" in chunk:
                        raise _Retry(f"error in stream: {data[:200]!r}")
                    for choice in chunk.get("choices") or []:
                        parts.append(_content_text((choice.get("delta") or {}).get("content")))
                    if chunk.get("usage"):
                        usage = _usage(chunk["usage"])
        except httpx.TimeoutException:
            raise _Retry(f"stream stalled for {self.timeout} s") from None
        except httpx.TransportError as e:
            raise _Retry(f"stream broken: {type(e).__name__}: {e}") from None
        # The server closed the stream without its [DONE]: the text may be cut short.
        raise _Retry("stream ended before [DONE] (truncated)")

    def _check_status(self, r: Any) -> None:
        if r.status_code < 400:
            return
        message = f"HTTP {r.status_code}: {r.text[:300]}"
        if r.status_code in _RETRYABLE_STATUS or r.status_code >= 500:
            raise _Retry(message, parse_retry_after(r.headers, self.backoff_max))
        raise _Fatal(message)


def _parse_completion(r: Any) -> tuple[str, dict]:
    try:
        data = r.json()
        content = data["choices"][0]["message"].get("content")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise _Retry(f"malformed response (no choices[0].message): {r.text[:200]!r}") from None
    return _content_text(content), _usage(data.get("usage"))


def no_usage() -> dict:
    return {"prompt_tokens": None, "completion_tokens": None}


def _usage(raw: Any) -> dict:
    raw = raw if isinstance(raw, dict) else {}
    return {k: raw.get(k) if isinstance(raw.get(k), int) else None for k in ("prompt_tokens", "completion_tokens")}


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
        backoff_base=model_cfg.backoff_base,
        backoff_max=model_cfg.backoff_max,
    )
