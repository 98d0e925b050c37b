"""Check once, before loading, that a hub id can be fetched, and fail in one clear line if not.

Without this, an uncached hub id and no network cost huggingface_hub's retries (5 per file,
1+2+4+8+8 s of backoff, several files per model: about a minute) and end in an ``OSError``
about whichever file came first (``preprocessor_config.json``), which names neither the
cache nor a fix. Here one metadata request, with ``HF_HUB_ETAG_TIMEOUT`` as its timeout
(default 10 s) and no retry, decides: reachable, or a message that ``models/loading.py``
raises as its ``ModelPathError`` (the CLI's one ``ocrft: error:`` line).

A model already in the local cache needs no network: if the hub does not answer, this
process switches huggingface_hub to offline mode (as ``HF_HUB_OFFLINE=1`` would), so the
files the cache lacks (optional ones such as ``chat_template.jinja``) are not retried either.
"""

from __future__ import annotations

import functools
import logging
from typing import Optional

log = logging.getLogger(__name__)

PROBE_FILE = "config.json"  # every transformers checkpoint has one; snapshot downloads cache it


def in_local_cache(repo_id: str) -> bool:
    """Whether the hub cache holds ``repo_id``'s config (a ``from_pretrained`` or ``hf download`` was done)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, PROBE_FILE), str)
    except ValueError:  # not a valid repo id: let from_pretrained say so
        return False


def unfetchable_reason(repo_id: str) -> Optional[str]:
    """None if ``repo_id`` can be loaded (from the local cache or a hub that answers), else why not.

    Checked once per process and id (several loaders ask for the same model).

    Returns:
        None, or the one-paragraph error for a hub id that is not cached while the hub cannot
        be reached (or ``HF_HUB_OFFLINE`` is set): it names the id, the cache and the fixes.
    """
    from huggingface_hub import constants

    return _check(repo_id, constants.ENDPOINT, constants.HF_HUB_CACHE, constants.is_offline_mode())


@functools.lru_cache(maxsize=None)
def _check(repo_id: str, endpoint: str, cache: str, offline: bool) -> Optional[str]:
    from huggingface_hub import constants

    cached = in_local_cache(repo_id)
    if offline:
        return None if cached else _message(repo_id, "HF_HUB_OFFLINE is set", cache, endpoint)
    error = _probe(repo_id, constants.HF_HUB_ETAG_TIMEOUT)
    if error is None:
        return None
    if cached:
        log.warning(
            "the hub at %s did not answer (%s); loading %s from the local cache %s in offline mode",
            endpoint, error, repo_id, cache,
        )  # fmt: skip
        constants.HF_HUB_OFFLINE = True  # read by huggingface_hub and transformers at each call
        return None
    return _message(repo_id, error, cache, endpoint)


def _probe(repo_id: str, timeout: float) -> Optional[str]:
    """None if the hub serves ``repo_id``'s config, else why not (a short string); one request, no retry."""
    import httpx2
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    try:
        get_hf_file_metadata(hf_hub_url(repo_id, PROBE_FILE), timeout=timeout, retry_on_errors=False)
    except GatedRepoError:
        return None  # reachable; from_pretrained's own message says to accept the license and log in
    except RepositoryNotFoundError:
        return None  # reachable; from_pretrained says the id does not exist
    except (httpx2.TimeoutException, httpx2.NetworkError, httpx2.RemoteProtocolError) as err:
        return f"{type(err).__name__}: {err}; tried once with a {timeout:g} s timeout (HF_HUB_ETAG_TIMEOUT)"
    except HfHubHTTPError as err:
        if err.response is not None and err.response.status_code >= 500:
            return f"HTTP {err.response.status_code}; tried once with a {timeout:g} s timeout (HF_HUB_ETAG_TIMEOUT)"
        return None  # 4xx: the hub answered; from_pretrained reports it
    return None


def _message(repo_id: str, why: str, cache: str, endpoint: str) -> str:
    return (
        f"model.path={repo_id!r}: cannot fetch it from the hub {endpoint} ({why}), and it is not in "
        f"the local Hugging Face cache {cache}. Fixes: set model.path to a local checkpoint folder; "
        f"or fill the cache on a machine with network (hf download {repo_id}, with HF_HOME pointing at "
        f"the same cache) and run with HF_HUB_OFFLINE=1; or run with network access to {endpoint}"
    )
