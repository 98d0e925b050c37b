"""Secret redaction for everything that is logged or written (configs, params, results).

Two complementary guards:

- by key name: a config key that names a secret (``api_key``, ``hf_token``, ...) has its
  value replaced, whatever the value is (``redact``, ``redact_overrides``);
- by value: the values of secret-named environment variables (``OPENAI_API_KEY``,
  ``HF_TOKEN``, ``*_SECRET``, ...), passwords inside URLs and well-known token shapes are
  replaced wherever they occur in free text (``scrub_text``), so a key pasted into an
  override, a run name or an error message does not leak either.
"""

from __future__ import annotations

import os
import re
from typing import Any, Iterable, Optional

from omegaconf import DictConfig, OmegaConf

REDACTED = "***REDACTED***"
# Keys whose values are secrets. `api_key_env` names a variable, not a secret, so it stays.
_SECRET_KEY = re.compile(r"(key|token|secret|password|passwd|credential|auth)", re.IGNORECASE)
_NOT_SECRET = re.compile(r"(_env|_path|_file|tokens|tokenize|tokenizer)$", re.IGNORECASE)
# Shorter environment values are too likely to be ordinary words ("true", "1", "none")
# that replacing them everywhere would garble text without protecting anything.
_MIN_SECRET_LEN = 8
# `scheme://user:password@host`: keep the user and host, drop the password.
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/:@]+:)[^\s/@]+(?P<tail>@)")
# Token formats of the providers ocrft talks to; they are recognisable with no context.
_TOKEN_SHAPES = re.compile(
    r"\bsk-[A-Za-z0-9_-]{20,}"  # OpenAI, Anthropic (sk-ant-...)
    r"|\bhf_[A-Za-z0-9]{30,}"  # Hugging Face
    r"|\bgh[pousr]_[A-Za-z0-9]{30,}|\bgithub_pat_[A-Za-z0-9_]{20,}"  # GitHub
    r"|\bAIza[0-9A-Za-z_-]{35}"  # Google API keys (Gemini)
    r"|\bAKIA[0-9A-Z]{16}"  # AWS access key ids
    r"|(?<=Bearer )[A-Za-z0-9._~+/-]{16,}=*"  # Authorization headers
)


def is_secret_key(key: str) -> bool:
    """True when ``key`` (a config key or an environment variable name) names a secret."""
    return bool(_SECRET_KEY.search(key)) and not _NOT_SECRET.search(key)


def secret_values(environ: Optional[dict[str, str]] = None) -> list[str]:
    """Values of secret-named environment variables, longest first (so scrubbing a value
    never leaves the tail of a longer one that contains it)."""
    env = os.environ if environ is None else environ
    values = {v.strip() for k, v in env.items() if is_secret_key(k) and len(v.strip()) >= _MIN_SECRET_LEN}
    return sorted(values, key=len, reverse=True)


def scrub_text(text: str, values: Optional[Iterable[str]] = None) -> str:
    """``text`` with secret values, URL passwords and token-shaped strings replaced.

    Args:
        text: any free text (a param value, a tag, an error message, a file's content).
        values: the secret values to remove; default ``secret_values()`` (pass it in when
            scrubbing many strings in a row, to read the environment once).
    """
    if not text:
        return text
    for value in secret_values() if values is None else values:
        if value in text:
            text = text.replace(value, REDACTED)
    text = _URL_PASSWORD.sub(rf"\g<head>{REDACTED}\g<tail>", text)
    return _TOKEN_SHAPES.sub(REDACTED, text)


def _redact(obj: Any, values: list[str]) -> Any:
    if isinstance(obj, dict):
        return {
            k: (REDACTED if is_secret_key(str(k)) and v not in (None, "") else _redact(v, values))
            for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [_redact(v, values) for v in obj]
    if isinstance(obj, str):
        return scrub_text(obj, values)
    return obj


def redact(obj: Any) -> Any:
    """A copy of ``obj`` (dicts/lists/scalars) with secret-named keys' values replaced and
    secret values scrubbed from every string in it."""
    return _redact(obj, secret_values())


def redact_overrides(overrides: Iterable[str]) -> list[str]:
    """Hydra override strings (``[+|++|~]key=value``) with secret-named keys' values
    replaced and secret values scrubbed, e.g. ``model.api_key=sk-...`` -> ``model.api_key=***REDACTED***``."""
    values = secret_values()
    out = []
    for override in overrides:
        key, sep, value = override.partition("=")
        leaf = key.lstrip("+~").rsplit(".", 1)[-1]
        if sep and value and is_secret_key(leaf):
            override = f"{key}={REDACTED}"
        out.append(scrub_text(override, values))
    return out


def redacted_container(cfg: DictConfig) -> dict:
    """The resolved config as plain containers, redacted (see ``redact``)."""
    return redact(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False))


def redacted_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML, redacted (see ``redact``)."""
    return OmegaConf.to_yaml(OmegaConf.create(redacted_container(cfg)))


def redacted_sweep_yaml(cfg: DictConfig) -> str:
    """A multirun's whole config (Hydra's part included, interpolations kept) as YAML, redacted:
    what Hydra saves as ``<sweep dir>/multirun.yaml``, without the secrets typed on the command line."""
    data = redact(OmegaConf.to_container(cfg, resolve=False))
    overrides = (data.get("hydra") or {}).get("overrides") or {}
    for key in ("task", "hydra"):
        if isinstance(overrides.get(key), list):
            overrides[key] = redact_overrides(overrides[key])
    return OmegaConf.to_yaml(OmegaConf.create(data))


def redact_saved_config(path) -> bool:
    """Rewrite a YAML config Hydra saved (``multirun.yaml``) redacted, if it holds a secret.

    Hydra's basic sweeper writes the file before any ocrft code runs, so the sweep callback
    redacts it when the first job starts. Returns whether the file changed.
    """
    from pathlib import Path

    from ocrft import atomic

    path = Path(path)
    if not path.is_file():
        return False
    saved = OmegaConf.load(path)
    redacted = redacted_sweep_yaml(saved)
    if OmegaConf.to_container(OmegaConf.create(redacted), resolve=False) == OmegaConf.to_container(saved, resolve=False):
        return False
    atomic.write_text(path, redacted)
    return True
