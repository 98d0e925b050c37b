"""Secret redaction for everything that is logged or written (configs, params, results)."""

from __future__ import annotations

import re
from typing import Any

from omegaconf import DictConfig, OmegaConf

REDACTED = "***REDACTED***"
# Keys whose values are secrets. `api_key_env` names a variable, not a secret, so it stays.
_SECRET_KEY = re.compile(r"(key|token|secret|password|passwd|credential|auth)", re.IGNORECASE)
_NOT_SECRET = re.compile(r"(_env|_path|_file|tokens|tokenize|tokenizer)$", re.IGNORECASE)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key)) and not _NOT_SECRET.search(key)


def redact(obj: Any) -> Any:
    """A copy of ``obj`` (dicts/lists/scalars) with secret-named keys' values replaced."""
    if isinstance(obj, dict):
        return {k: (REDACTED if is_secret_key(str(k)) and v not in (None, "") else redact(v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    return obj


def redacted_container(cfg: DictConfig) -> dict:
    return redact(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False))


def redacted_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.create(redacted_container(cfg)))
