"""The Runs tab: every run under the studio's roots, read from its run.json (the run record
ocrft.runner writes), as a table; a sweep (a multirun folder whose run.json says
``task: sweep``) as its study and its trials.

Plain functions over files and DataFrames: the Gradio wiring lives in :func:`runs_tab`.
"""

from __future__ import annotations

import logging
import urllib.parse
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import pandas as pd
import yaml

from ocrft.run_record import RunRecord

log = logging.getLogger(__name__)

# Headline metrics shown as columns, in this order, when a run has them.
KEY_METRICS = ("eval/cer", "eval_before/cer", "eval/char_f1", "val/cer", "train/loss", "report/cer")
COLUMNS = ["run", "task", "status", "start", "duration_s", "model", "data", *KEY_METRICS, "mlflow", "report"]
SKIP_DIRS = {".hydra", "checkpoints", "__pycache__", "model", "best"}


def find_run_files(roots: Iterable[str | Path], max_depth: int = 6) -> list[Path]:
    """Every run.json under ``roots`` (not below a run's own checkpoints), sorted by path."""
    found: list[Path] = []

    def walk(folder: Path, depth: int) -> None:
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            return
        for entry in entries:
            if entry.name == "run.json" and entry.is_file():
                found.append(entry)
            elif entry.is_dir() and depth < max_depth and entry.name not in SKIP_DIRS and not entry.name.startswith("checkpoint-"):
                walk(entry, depth + 1)

    for root in roots:
        if Path(root).is_dir():
            walk(Path(root), 0)
    return found


def _config(run_dir: Path) -> dict:
    """The run's resolved config.yaml (model and data), {} when absent."""
    path = run_dir / "config.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _model_and_data(config: dict) -> tuple[str, str]:
    model, data = config.get("model") or {}, config.get("data") or {}
    model_s = str(model.get("name") or model.get("path") or "") if isinstance(model, dict) else ""
    if isinstance(data, dict):
        data_s = str(data.get("path") or data.get("name") or data.get("format") or "")
    else:
        data_s = ""
    return model_s, data_s


def read_run(run_json: Path) -> Optional[dict]:
    """One run's row (record fields, model, data, metrics, its files); None when unreadable."""
    record = RunRecord.read(run_json.parent)  # None for a run being written or a broken file (logged)
    if record is None:
        return None
    run_dir = run_json.parent
    model, data = _model_and_data(_config(run_dir))
    paths = record.paths if isinstance(record.paths, dict) else {}
    return {
        "run_dir": str(run_dir),
        "task": record.task,
        "status": record.status,
        "start": record.start_time,
        "duration_s": record.duration_s,
        "model": model,
        "data": data,
        "metrics": record.metrics if isinstance(record.metrics, dict) else {},
        "mlflow_run_id": record.mlflow_run_id,
        "results": {k: v for k, v in paths.items() if isinstance(v, str) and k.startswith(("results", "compare_results")) and v.endswith(".json")},
        "reports": {k: v for k, v in paths.items() if isinstance(v, str) and v.endswith(".html")},
        "study": record.extra.get("study"),
        "ranking": paths.get("ranking_jsonl") if isinstance(paths.get("ranking_jsonl"), str) else None,
    }


def scan(roots: Iterable[str | Path]) -> list[dict]:
    """The rows of every readable run under ``roots``."""
    return [row for row in map(read_run, find_run_files(roots)) if row is not None]


def mlflow_link(base_url: Optional[str], run_id: Optional[str]) -> str:
    """MLflow's page of a run (its direct /runs/ route redirects to the experiment's run page)."""
    return f"{base_url.rstrip('/')}/#/runs/{run_id}" if base_url and run_id else ""


def file_link(path: Optional[str]) -> str:
    """The studio's /files URL of a file (the app only serves files under its roots)."""
    return "/files/" + urllib.parse.quote(str(Path(path).resolve()).lstrip("/")) if path else ""


def runs_frame(
    runs: Sequence[dict], mlflow_url: Optional[str] = None, query: str = "", sort_by: str = "start", *, descending: bool = True
) -> pd.DataFrame:
    """The runs as a table (COLUMNS), rows containing ``query`` (any column, case-insensitive),
    sorted by ``sort_by``; links are markdown so the table renders them clickable."""
    rows = []
    for r in runs:
        report = next(iter(r["reports"].values()), None)
        mlflow = mlflow_link(mlflow_url, r["mlflow_run_id"])
        rows.append({
            "run": r["run_dir"], "task": r["task"], "status": r["status"], "start": r["start"],
            "duration_s": r["duration_s"], "model": r["model"], "data": r["data"],
            **{k: r["metrics"].get(k) for k in KEY_METRICS},
            "mlflow": f"[{r['mlflow_run_id'][:8]}]({mlflow})" if mlflow else "",
            "report": f"[report]({file_link(report)})" if report else "",
        })  # fmt: skip
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if query.strip():
        text = frame.apply(lambda row: " ".join(map(str, row)), axis=1).str.lower()
        frame = frame[text.str.contains(query.strip().lower(), regex=False)]
    if sort_by in frame.columns:
        frame = frame.sort_values(sort_by, ascending=not descending, na_position="last", kind="stable")
    # columns no run has (a metric nobody logged) would only be noise
    keep = [c for c in frame.columns if c not in KEY_METRICS or frame[c].notna().any()]
    return frame[keep].reset_index(drop=True)


def results_choices(runs: Sequence[dict]) -> list[tuple[str, str]]:
    """(label, path) of every results file the runs recorded, for the Results and Compare pickers."""
    out = []
    for r in sorted(runs, key=lambda r: str(r["start"] or ""), reverse=True):
        for key, path in r["results"].items():
            if Path(path).is_file():
                out.append((f"{Path(r['run_dir']).name} · {key}", path))
    return out


def trials_frame(sweep: dict, runs: Sequence[dict]) -> pd.DataFrame:
    """The trials of a sweep: the runs inside its folder, with state and value (the study's metric)."""
    metric = (sweep.get("study") or {}).get("metric")
    root = Path(sweep["run_dir"])
    rows = []
    for r in runs:
        if r is sweep or root not in Path(r["run_dir"]).parents:
            continue
        value = r["metrics"].get(metric) if metric else None
        rows.append({"trial": Path(r["run_dir"]).name, "state": r["status"], "value": value, "run": r["run_dir"]})
    frame = pd.DataFrame(rows, columns=["trial", "state", "value", "run"])
    order = pd.to_numeric(frame["trial"], errors="coerce")
    return frame.assign(_o=order).sort_values(["_o", "trial"]).drop(columns="_o").reset_index(drop=True)


def sweeps_markdown(runs: Sequence[dict], dashboard_url: Optional[str] = None) -> str:
    """One paragraph per sweep: its study, direction, metric, trial counts and a dashboard link."""
    parts = []
    for s in (r for r in runs if r["task"] == "sweep"):
        study = s.get("study") or {}
        counts = ", ".join(f"{k} {v}" for k, v in (study.get("trials") or {}).items() if v)
        link = f" · [optuna-dashboard]({dashboard_url})" if dashboard_url else ""
        parts.append(
            f"**{study.get('name', '?')}** ({s['run_dir']}): {study.get('direction', '')} "
            f"`{study.get('metric', '')}` · {s['status']} · trials: {counts or 'none'}{link}"
        )
    return "\n\n".join(parts) or "No sweeps under the roots."


def runs_tab(studio_cfg: Any) -> tuple:
    """The Runs tab's components (in the current Blocks); returns its (refresh, inputs, outputs)."""
    import gradio as gr

    roots, mlflow_url = list(studio_cfg.roots), studio_cfg.mlflow_url

    def refresh(query: str, sort_by: str, descending: bool, sweep: Optional[str]):
        runs = [r for r in scan(roots) if r["task"] != "studio"]  # the studio's own run records are noise
        sweeps = [r for r in runs if r["task"] == "sweep"]
        chosen = next((s for s in sweeps if s["run_dir"] == sweep), sweeps[0] if sweeps else None)
        trials = trials_frame(chosen, runs) if chosen else pd.DataFrame(columns=["trial", "state", "value", "run"])
        return (
            runs_frame(runs, mlflow_url, query, sort_by, descending=descending),
            sweeps_markdown(runs, studio_cfg.dashboard_url),
            gr.update(choices=[s["run_dir"] for s in sweeps], value=chosen["run_dir"] if chosen else None),
            trials,
        )

    gr.Markdown(f"Runs under {', '.join(roots)} (from each run.json).")
    with gr.Row():
        query = gr.Textbox(label="filter", placeholder="text in any column", elem_id="runs-filter")
        sort_by = gr.Dropdown(COLUMNS[:7] + list(KEY_METRICS), value="start", label="sort by")
        descending = gr.Checkbox(value=True, label="descending")
        reload = gr.Button("refresh", elem_id="runs-refresh")
    table = gr.Dataframe(
        datatype="markdown", interactive=False, elem_id="runs-table",
        wrap=True,
    )
    gr.Markdown("### Sweeps")
    sweeps_md = gr.Markdown()
    sweep = gr.Dropdown([], label="study (sweep folder)", allow_custom_value=True)
    trials = gr.Dataframe(interactive=False, elem_id="sweep-trials")
    inputs = [query, sort_by, descending, sweep]
    outputs = [table, sweeps_md, sweep, trials]
    for trigger in (query.submit, sort_by.change, descending.change, reload.click, sweep.input):
        trigger(refresh, inputs, outputs)
    return refresh, inputs, outputs  # the app runs it on page load, so a reload shows new runs
