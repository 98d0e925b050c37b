"""task=serve: a local model (or a cascade) behind the OpenAI chat-completions API.

    python -m ocrft task=serve model.path=outputs/train/<run> serve.port=8000
    python -m ocrft task=serve model=cascade model.path=outputs/train/<run> cascade.threshold=-0.2 \
        cascade.fallback.provider=openai cascade.fallback.remote_model=gpt-4o-mini
    python -m ocrft task=eval model=endpoint model.provider=ocrft data=json_ocr data.path=test.json

The HTTP side (protocol, admission control, batching, the app) is ocrft.serving; this task
loads the generator, builds the app and runs uvicorn until SIGINT/SIGTERM. On either
signal the server stops accepting (new connections are refused, new requests on open ones
get 503), finishes the requests in flight for up to ``serve.shutdown_grace_s``, and the
run ends cleanly (exit 0).

Hardening, because a served model is reachable by whoever can reach the port: loopback
by default, optional bearer key, bodies capped, image size checked from the header before
decoding (decompression bombs), a short list of image decoders, no fetching of remote
image URLs (no SSRF), and at most ``serve.max_concurrent_requests`` requests inside the
server (429 with Retry-After beyond).
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from ocrft.serving.app import create_app
from ocrft.serving.auth import read_server_key
from ocrft.serving.origin_guard import is_loopback

log = logging.getLogger(__name__)


def run_serve(cfg: Any, ctx: Any) -> Any:
    """task=serve: load the model's predictor (ocrft.evaluation.predictor: a local model; a
    cascade answers low-confidence requests through its fallback; an endpoint is proxied) and
    serve it until Ctrl-C/SIGTERM."""
    import uvicorn

    from ocrft.evaluation.predictor import build_predictor
    from ocrft.provenance import serve_model_name
    from ocrft.runner import TaskResult

    read_server_key(cfg.serve)  # refuse a keyless "protected" server before loading weights
    host, port = cfg.serve.host, cfg.serve.port
    if not is_loopback(host) and not cfg.serve.api_key_env:
        log.warning("serving on %s without a key: anyone who can reach port %d can use the model", host, port)
    predictor = build_predictor(cfg, task="serve")
    model_name = serve_model_name(cfg)  # short: the run folder's name or the base's id, never a path
    app = create_app(predictor, cfg.serve, model_name)
    url = f"http://{host}:{port}/v1"
    log.info("serving %s at %s (POST /chat/completions, GET /models, GET /health); Ctrl-C stops", model_name, url)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            # uvicorn closes its listening sockets on the next tick; requests arriving on
            # open keep-alive connections meanwhile get 503 instead of joining the queue.
            app.draining = True
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, host=host, port=port, log_level="info",
                            timeout_graceful_shutdown=cfg.serve.shutdown_grace_s)  # fmt: skip
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal. Make a
    # re-raised SIGTERM (docker stop) a KeyboardInterrupt too, so both end the run cleanly.
    in_main = threading.current_thread() is threading.main_thread()  # signal.signal's own rule
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler) if in_main else None
    try:
        Server(config).run()
    except KeyboardInterrupt:
        pass
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
        predictor.close()  # a cascade's or an endpoint's HTTP client
    log.info("server stopped")
    return TaskResult(paths={}, extra={"url": url, "model_name": model_name})
