"""The name and tags of a run in MLflow: task, model, dataset, overrides, git commit.

Shared by a job's run (ocrft.tracking.runs) and a sweep's parent run (ocrft.tracking.sweep).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from ocrft.redact import redact_overrides


def run_name(cfg: DictConfig, job_num: Optional[int]) -> str:
    if cfg.get("run_name"):
        name = cfg.run_name
    else:
        model = OmegaConf.select(cfg, "model.name") or str(OmegaConf.select(cfg, "model.path") or "model")
        name = f"{cfg.task}-{model.rstrip('/').rsplit('/', 1)[-1]}-{time.strftime('%Y%m%d-%H%M%S')}"
    return name if job_num is None else f"{name}-{job_num}"


def _git_commit() -> Optional[str]:
    # The commit of the ocrft checkout (code and conf/ live together); none outside a repo.
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def base_tags(cfg: DictConfig, overrides: list[str]) -> dict[str, str]:
    from mlflow.tracking.context.registry import resolve_tags

    data_path = OmegaConf.select(cfg, "data.path")
    data = f"{cfg.data.format}:{data_path}" if data_path else OmegaConf.select(cfg, "data.format")
    tags = {
        **resolve_tags(),  # mlflow.user, mlflow.source.name/type: the UI's User and Source columns
        "ocrft.task": cfg.task,
        "ocrft.model_family": OmegaConf.select(cfg, "model.family"),
        "ocrft.model_path": OmegaConf.select(cfg, "model.path"),
        "ocrft.dataset": data,
        "ocrft.overrides": " ".join(redact_overrides(overrides)),
        "ocrft.status": "running",
    }
    commit = _git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return {k: "" if v is None else str(v) for k, v in tags.items()}
