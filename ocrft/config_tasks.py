"""The config sections that one task reads: ``predict.*``, ``report.*``, ``merge.*``,
``soup.*``, ``serve.*`` and ``studio.*``. Typed keys of the root schema (ocrft.config.RunConfig), not
config groups; ``from ocrft.config import ServeConfig`` works as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class PredictConfig:
    """task=predict. An image or a folder of images gives results.txt and predictions.jsonl;
    a PAGE-XML or ALTO export folder gives a filled copy of it (docs/archive.md)."""

    input: Optional[str] = None  # an image, a folder of images, or a PAGE/ALTO export folder
    output: Optional[str] = None  # results.txt, predictions.jsonl, ranking.*; default: run_dir
    # an export: where its filled copy goes (default: run_dir/export)
    output_dir: Optional[str] = None
    level: str = "line"  # an export: read each line, or each region whole and split it by line
    overwrite: bool = False  # an export: replace text a line (or region) already has
    rank: bool = False  # an export: write ranking.csv / ranking.jsonl, least confident first
    # an export with rank=true: sampled readings per line; their disagreement joins the ranking
    samples: int = 0
    temperature: float = 0.8  # of those sampled readings


@dataclass
class ReportConfig:
    results: Optional[str] = None  # results file to render (and re-score)
    compare: Optional[str] = None  # a second results file: comparison report
    output: Optional[str] = None  # default: run_dir/report.html
    rescore: bool = True  # re-score with the current eval.normalization


@dataclass
class MergeConfig:
    output_dir: Optional[str] = None  # default: run_dir/merged
    check_samples: int = 4


@dataclass
class SoupConfig:
    """task=soup: the exact mean of several LoRA adapters' weight deltas (docs/training.md)."""

    runs: list[str] = field(default_factory=list)  # run folders (or adapter folders) to average
    sweep: Optional[str] = None  # or a multirun folder: its top_k finished trials by the sweep's objective
    top_k: int = 3


@dataclass
class ServeConfig:
    # the model id clients send and /v1/models lists; None = the run folder's name or the
    # base's hub id, never a path on this machine
    model_name: Optional[str] = None
    host: str = "127.0.0.1"
    port: int = 8000
    api_key_env: Optional[str] = None  # env var holding the bearer key; None = no auth
    # Host header names answered when bound to loopback (DNS rebinding guard); None = localhost,
    # 127.0.0.1, ::1 and host. Bound beyond loopback, any Host is answered unless this is set.
    allowed_hosts: Optional[list[str]] = None
    max_body_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    max_batch_size: int = 8
    batch_wait_ms: int = 10
    # Default when a request names no max_tokens, and the most a request may ask for.
    max_new_tokens: int = 1024
    # Backpressure: requests beyond this many in the server at once get 429 with
    # Retry-After at once, before their body is read or their image decoded.
    max_concurrent_requests: int = 64
    retry_after_s: int = 1
    request_timeout_s: float = 300.0  # a request still unanswered after this gets 504
    shutdown_grace_s: float = 30.0  # on SIGTERM: finish requests in flight for this long


@dataclass
class StudioConfig:
    """task=studio, the local web UI (docs/studio.md)."""

    host: str = "127.0.0.1"
    port: int = 7860
    roots: list[str] = field(default_factory=lambda: ["outputs", "multirun"])  # where runs are listed from
    # env var holding "user:password" for the UI and the jobs API; None = no login.
    # Required when host is not a loopback address.
    auth_env: Optional[str] = None
    # Host header names answered (DNS rebinding guard); None = localhost, 127.0.0.1, ::1 and host
    allowed_hosts: Optional[list[str]] = None
    max_jobs: int = 1  # launched runs at once; the rest wait in a queue
    mlflow_url: Optional[str] = None  # e.g. http://127.0.0.1:5000, for links to each run
    dashboard_url: Optional[str] = None  # optuna-dashboard, for links to studies
    page_size: int = 50  # samples per page in the results viewer
