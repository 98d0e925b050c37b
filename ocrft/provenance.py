"""What was evaluated or served: one description of a model, built in one place.

Results files, comparison reports, ``task=serve`` and MLflow all name the model they
describe; :func:`describe_model` builds that name and a structured record of it:

    {"kind": "base" | "adapter" | "run" | "endpoint" | "predictions",
     "id": short id (no spaces, never a machine path: what task=serve lists),
     "name": display string (results' ``model_name``),
     "path": model.path as given, "base": ..., "adapter": ..., "run": ..., "step": N,
     "endpoint": URL without credentials or query, "remote_model": ..., "stage": ...}

Keys that do not apply are left out; nothing secret goes in (URLs lose userinfo and query).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)

# Files that mark a folder: an ocrft model card, a PEFT adapter, a finished ocrft run.
_CARD = "ocrft_model.json"
_ADAPTER = "adapter_config.json"
_RUN = "run.json"
# Subfolders of a run folder that hold its saved model (ocrft.training.checkpoints.save_model).
_RUN_MODEL_DIRS = ("adapter", "model", "best")


def _get(cfg: Any, key: str) -> Any:
    return cfg.get(key) if hasattr(cfg, "get") else getattr(cfg, key, None)


def short_id(path: str) -> str:
    """A hub id or ``scheme:name`` as given; an existing local folder (or any path) by its name."""
    text = str(path).rstrip("/")
    local = Path(text).expanduser()
    if text.startswith((".", "/", "~")) or local.exists() or text.count("/") > 1:
        return local.resolve().name if local.exists() else local.name
    return text


def public_url(url: Optional[str]) -> Optional[str]:
    """``url`` without userinfo, query or fragment (where keys may hide)."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def run_step(run_dir: Path) -> Optional[int]:
    """The step whose weights a finished run folder saved: the best-validated step, else the last."""
    metrics = _read_json(Path(run_dir) / _RUN).get("metrics") or {}
    step = metrics.get("val/best_step", metrics.get("train/global_step"))
    return int(step) if isinstance(step, (int, float)) else None


def _base_of(folder: Path) -> Optional[str]:
    """The base model an adapter folder was trained on, as the user named it."""
    card = _read_json(folder / _CARD)
    if card:
        return card.get("source_model_path") or card.get("base_path")
    return _read_json(folder / _ADAPTER).get("base_model_name_or_path")


def _describe_local(folder: Path) -> dict[str, Any]:
    """Kind, base, adapter, run and step of a local model folder."""
    folder = folder.resolve()
    # An ocrft run folder, or the model folder inside one.
    run = folder if (folder / _RUN).exists() else folder.parent if (folder.parent / _RUN).exists() else None
    # A Trainer checkpoint inside a run: <run>/checkpoints/checkpoint-N
    state = _read_json(folder / "trainer_state.json")
    if run is None and state and (folder.parent.parent / _RUN).exists():
        run = folder.parent.parent
    if run is not None:
        model_dir = next((run / d for d in _RUN_MODEL_DIRS if (run / d / _CARD).exists()), folder)
        model_dir = folder if folder != run else model_dir
        step = state.get("global_step") if state else run_step(run)
        out: dict[str, Any] = {"kind": "run", "run": run.name}
        base = _base_of(model_dir)
        if base:
            out["base"] = short_id(base)
        if model_dir != run:
            out["adapter"] = str(model_dir.relative_to(run))
        if step is not None:
            out["step"] = int(step)
        return out
    card = _read_json(folder / _CARD)
    if (folder / _ADAPTER).exists() or card.get("adapter"):
        base = _base_of(folder)
        out = {"kind": "adapter", "adapter": folder.name, **({"base": short_id(base)} if base else {})}
        if state.get("global_step") is not None:
            out["step"] = int(state["global_step"])
        return out
    return {"kind": "base", "base": folder.name}


def _display(desc: dict[str, Any]) -> str:
    kind = desc["kind"]
    if kind == "run":
        name = desc["run"] + (f" step {desc['step']}" if "step" in desc else "")
        return name
    if kind == "adapter":
        step = f" step {desc['step']}" if "step" in desc else ""
        return f"{desc['adapter']}{step} (adapter on {desc.get('base', '?')})"
    if kind == "endpoint":
        return f"{desc.get('provider') or 'endpoint'}:{desc.get('remote_model') or '?'}"
    if kind == "predictions":
        return f"predictions:{desc['id']}"
    return desc["base"]


def describe_model(
    model_cfg: Any,
    *,
    stage: Optional[str] = None,
    run_dir: Optional[Path] = None,
    step: Optional[int] = None,
    provider: Optional[str] = None,
    endpoint: Optional[str] = None,
    remote_model: Optional[str] = None,
) -> dict[str, Any]:
    """Describe the model of ``model_cfg`` (the ``model`` config) for results, reports and serving.

    Args:
        model_cfg: ``cfg.model`` (family, path, name, provider, base_url, remote_model).
        stage: a note on when it was evaluated, e.g. ``"before training"``: added to the
            display name in parentheses and kept as ``stage``.
        run_dir: the weights are those of this run folder (task=train after training),
            not of ``model.path``: the description names the run, its base and ``step``.
        step: the training step of those weights (with ``run_dir``).
        provider, endpoint, remote_model: what an endpoint client actually used (the
            provider's defaults filled in); default to ``model.provider/base_url/remote_model``.

    Returns:
        A dict with ``kind``, ``id``, ``name`` and the keys of the module docstring that apply.
        ``model.name`` set by the user wins as the display name.
    """
    backend, path = _get(model_cfg, "backend"), str(_get(model_cfg, "path") or "")
    desc: dict[str, Any]
    if run_dir is not None:
        run = Path(run_dir).resolve()
        saved = next((d for d in _RUN_MODEL_DIRS if (run / d / _CARD).exists()), None)
        desc = {"kind": "run", "run": run.name, "base": short_id(path), "adapter": saved}
        if step is not None:
            desc["step"] = int(step)
    elif backend == "endpoint":
        desc = {"kind": "endpoint", "provider": provider or _get(model_cfg, "provider"),
                "endpoint": public_url(endpoint or _get(model_cfg, "base_url")),
                "remote_model": remote_model or _get(model_cfg, "remote_model")}  # fmt: skip
    elif backend == "predictions":
        desc = {"kind": "predictions", "source": path}
    elif path and Path(path).expanduser().is_dir():
        desc = _describe_local(Path(path).expanduser())
    else:
        desc = {"kind": "base", "base": short_id(path) if path else "unknown"}
    ids = {"run": "run", "adapter": "adapter", "base": "base", "endpoint": "remote_model"}
    desc["id"] = str(desc.get(ids.get(desc["kind"], ""), "") or short_id(path) or "model")
    desc = {k: v for k, v in desc.items() if v is not None}
    name = _get(model_cfg, "name") if run_dir is None else None
    desc["name"] = (name or _display(desc)) + (f" ({stage})" if stage else "")
    if stage:
        desc["stage"] = stage
    if path and backend != "endpoint" and run_dir is None:
        desc["path"] = path
    return desc


def serve_model_name(cfg: Any) -> str:
    """The model id ``task=serve`` lists and answers as: ``serve.model_name``, else
    ``model.name``, else the run folder's name or the base's id (never a machine path)."""
    serve = _get(cfg, "serve")
    given = _get(serve, "model_name") if serve is not None else None
    return str(given or _get(cfg.model, "name") or describe_model(cfg.model)["id"])
