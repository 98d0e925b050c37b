"""The optional bearer key of a served model (``serve.api_key_env``)."""

from __future__ import annotations

import hmac
import os
from typing import Any, Optional

from ocrft.config import ConfigError


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


def authorized(authorization: str, key: Optional[str]) -> bool:
    """Whether an ``Authorization`` header value carries ``key`` (always, when there is no key)."""
    if key is None:
        return True
    # constant time: the comparison must not tell an attacker how much of the key was right
    return hmac.compare_digest(authorization.encode(), f"Bearer {key}".encode())
