"""The MLflow experiment a run logs to: its name, and finding or creating it.

Every experiment ocrft logs to is marked as model training (``mlflow.experimentKind``), so
MLflow 3's UI opens it on the runs table rather than the GenAI traces overview.
"""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

# The experiment kind MLflow 3's UI reads (mlflow/server/js: "mlflow.experimentKind"): without
# it an experiment may open on the GenAI traces overview; this one opens on the runs table.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def experiment_name(cfg: DictConfig) -> str:
    """tracking.experiment, else the +experiment's experiment_name, else the task name."""
    return cfg.tracking.experiment or OmegaConf.select(cfg, "experiment_name") or str(cfg.task)


def experiment_id(client, name: str, uri: str) -> str:
    """Find or create the experiment, marked as model training (EXPERIMENT_KIND). With a
    SQLite store, artifacts go beside the database file (``<db dir>/mlruns/<experiment>``)
    rather than under whatever the cwd is."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if EXPERIMENT_KIND_TAG not in exp.tags:  # made before ocrft set it, or by hand
            client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :].split("?", 1)[0]).resolve()
        location = str(db.parent / "mlruns" / re.sub(r"[^\w.-]+", "_", name))
    try:
        return client.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    except MlflowException:  # another job of the sweep created it first
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id
