"""The studio's web app: FastAPI with the jobs API at /api/jobs, the run files at /files/...
(only under studio.roots), and one Gradio Blocks at / with six tabs: Runs, Results,
Compare, Ranking, Playground, Launch.

Offline by construction: gradio's analytics are off (the task sets GRADIO_ANALYTICS_ENABLED
before importing gradio) and the theme uses system fonts, so the page fetches nothing
but this server.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import urllib.parse
from importlib import resources
from typing import Any, Optional

from ocrft.serving.origin_guard import OriginGuard, allowed_hosts

log = logging.getLogger(__name__)

SYSTEM_FONTS = ("ui-sans-serif", "system-ui", "sans-serif")
MONO_FONTS = ("ui-monospace", "SFMono-Regular", "monospace")
# Routes of our own that need the login too (gradio guards its own when given auth).
GUARDED = ("/api/", "/files/")
# The report's rules for diffs, thumbnails and tables, scoped to our HTML blocks.
_SHARED_SELECTORS = (".t", "ins", ".sub-r", ".thumb", ".noimg", ".err", ".better", ".legend", ".num", ".metrics")
STUDIO_CSS = """
.ocrft table{border-collapse:collapse}.ocrft td,.ocrft th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}
.ocrft th{background:#f2f2f2;text-align:left}.ocrft .k{color:#888;font-size:12px}
.ocrft .bar{height:12px;background:#4a7fd6}.ocrft tr.worse td.delta{color:#b00}.ocrft tr.better td.delta{color:#070}
"""


def parse_auth(value: Optional[str]) -> Optional[tuple[str, str]]:
    """("user", "password") from "user:password"; None for an unset or empty value.

    Raises:
        ValueError: no colon, or an empty user or password (the value itself is not echoed).
    """
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not (sep and user and password):
        raise ValueError("the studio login must be 'user:password' (user and password both non-empty)")
    return user, password


def studio_css() -> str:
    """The report's diff and thumbnail rules (one implementation) plus the studio's own."""
    text = resources.files("ocrft.evaluation").joinpath("templates/_style.css").read_text(encoding="utf-8")
    shared = [line for line in text.splitlines() if line.startswith(_SHARED_SELECTORS)]
    return "\n".join(shared) + STUDIO_CSS


def _basic_ok(header: Optional[str], auth: tuple[str, str]) -> bool:
    if not header or not header.lower().startswith("basic "):
        return False
    try:
        user, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    # compare both, always, in constant time: no early exit that times the user name
    return hmac.compare_digest(user, auth[0]) & hmac.compare_digest(password, auth[1])


def _files_route(app: Any, roots: list[str]) -> None:
    from fastapi import HTTPException
    from fastapi.responses import FileResponse

    from ocrft.studio.results_view import under_roots

    @app.get("/files/{path:path}")
    def files(path: str) -> FileResponse:
        # the path is absolute (runs.file_link); resolve() undoes .. and symlinks before the check
        resolved = under_roots("/" + urllib.parse.unquote(path).lstrip("/"), roots)
        if resolved is None or not resolved.is_file():
            raise HTTPException(status_code=404, detail="no such file under the studio roots")
        return FileResponse(resolved)


def build_app(studio_cfg: Any, auth: Optional[tuple[str, str]] = None, manager: Any = None) -> Any:
    """The studio as a FastAPI app (serve it with uvicorn); ``auth`` = (user, password) or None;
    ``manager``, the JobManager (default: one on ``studio_cfg``). Every route is behind the
    Host and Origin checks (ocrft.serving.origin_guard)."""
    import gradio as gr
    from fastapi import FastAPI, Request
    from fastapi.responses import Response

    from ocrft.studio.compare_view import compare_tab
    from ocrft.studio.jobs import JobManager
    from ocrft.studio.jobs_api import jobs_router
    from ocrft.studio.launch_form import launch_tab
    from ocrft.studio.playground import playground_tab
    from ocrft.studio.ranking_view import ranking_choices, ranking_tab
    from ocrft.studio.results_view import results_tab
    from ocrft.studio.runs import results_choices, runs_tab, scan

    roots = [str(r) for r in studio_cfg.roots]
    app = FastAPI(title="ocrft studio", docs_url=None, redoc_url=None, openapi_url=None)
    if auth:

        @app.middleware("http")
        async def login(request: Request, call_next: Any) -> Any:
            if request.url.path.startswith(GUARDED) and not _basic_ok(request.headers.get("authorization"), auth):
                return Response("login required", status_code=401, headers={"WWW-Authenticate": 'Basic realm="ocrft studio"'})
            return await call_next(request)

    manager = manager or JobManager.from_config(studio_cfg)
    app.include_router(jobs_router(manager), prefix="/api/jobs")
    _files_route(app, roots)

    def choices() -> list[tuple[str, str]]:
        return results_choices(scan(roots))

    with gr.Blocks(title="ocrft studio") as blocks:
        gr.Markdown("## ocrft studio")
        with gr.Tab("Runs", id="runs"):
            runs_load = runs_tab(studio_cfg)
        with gr.Tab("Results", id="results"):
            results_load = results_tab(studio_cfg, choices)
        with gr.Tab("Compare", id="compare"):
            compare_load = compare_tab(studio_cfg, choices)
        with gr.Tab("Ranking", id="ranking"):
            ranking_load = ranking_tab(studio_cfg, lambda: ranking_choices(scan(roots)))
        with gr.Tab("Playground", id="playground"):
            playground_tab(studio_cfg)
        with gr.Tab("Launch", id="launch"):
            launch_tab(manager)
        for fn, inputs, outputs in (runs_load, results_load, compare_load, ranking_load):
            blocks.load(fn, inputs, outputs)

    theme = gr.themes.Default(font=SYSTEM_FONTS, font_mono=MONO_FONTS)
    app = gr.mount_gradio_app(
        app, blocks, path="/", auth=auth, theme=theme, css=studio_css(), ssr_mode=False, footer_links=[],
        show_error=True,
    )  # fmt: skip
    return OriginGuard(app, allowed_hosts(studio_cfg.allowed_hosts, studio_cfg.host), check_origin=True, setting="studio")
