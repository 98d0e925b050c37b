"""task=studio: the local web UI (runs, results, compare, playground, launch).

    python -m ocrft task=studio studio.port=7860 tracking=none
    OCRFT_STUDIO_LOGIN=me:secret python -m ocrft task=studio studio.auth_env=OCRFT_STUDIO_LOGIN

Binds studio.host (127.0.0.1 by default) and serves until Ctrl-C or SIGTERM. With
studio.auth_env the UI, the jobs API and the files need that login (never logged).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from ocrft.config import ConfigError
from ocrft.runner import RunContext, TaskResult
from ocrft.serving.origin_guard import is_loopback

log = logging.getLogger(__name__)


def run_studio(cfg: Any, ctx: RunContext) -> TaskResult:
    """Build the studio app (ocrft.studio.app) and serve it with uvicorn until stopped."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: it phones home otherwise
    import uvicorn

    from ocrft.studio.app import build_app, parse_auth

    sc = cfg.studio
    env = sc.auth_env
    if not env and not is_loopback(sc.host):
        # As Jupyter refuses to listen beyond loopback without a token: the studio starts runs.
        raise ConfigError(f"studio.host={sc.host} reaches beyond this machine: set studio.auth_env to an "
                          "environment variable holding 'user:password' (the studio launches runs as you)")  # fmt: skip
    if env and not os.environ.get(env):
        raise ConfigError(f"studio.auth_env={env}: that environment variable is not set (expected 'user:password')")
    try:
        auth = parse_auth(os.environ.get(env)) if env else None
    except ValueError as err:
        raise ConfigError(f"studio.auth_env={env}: {err}") from err
    app = build_app(sc, auth=auth)
    url = f"http://{sc.host}:{sc.port}/"
    log.info("ocrft studio on %s (roots: %s; login: %s)", url, ", ".join(sc.roots), "on" if auth else "off")
    server = uvicorn.Server(uvicorn.Config(app, host=sc.host, port=sc.port, log_level="warning", timeout_graceful_shutdown=5))
    # as task=serve: uvicorn shuts down on SIGINT/SIGTERM then re-raises; both end the run cleanly
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler) if in_main else None
    try:
        server.run()
    except KeyboardInterrupt:
        log.info("studio interrupted")
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    log.info("studio stopped")
    return TaskResult(extra={"url": url})
