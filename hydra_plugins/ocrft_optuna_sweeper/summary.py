"""What a sweep leaves behind: best.yaml, plots, <sweep dir>/run.json, MLflow tags and artifacts.

``best.yaml`` is the best trial's job config (the command's overrides plus the trial's
params, composed by Hydra as the job was) written as a primary config, so that

    python -m ocrft --config-path <abs sweep dir> --config-name best

re-runs the winner without the sweep: ``trial.*`` is emptied (nothing reports to the
finished trial) and interpolations such as ``run_dir`` are kept, so it writes a new run dir.
"""

from __future__ import annotations

import logging
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from omegaconf import DictConfig, OmegaConf

from ocrft.redact import scrub_text
from ocrft.run_record import RunRecord

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)



def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def finish(sweeper: Any, study: "optuna.Study", sweep_dir: Path, *, started: str, stop_reason: Optional[str]) -> dict:
    """Log the best trial and write best.yaml, plots and the sweep's run.json; returns that record."""
    from optuna.trial import TrialState

    from ocrft.search import overrides_from_params

    trials = study.get_trials(deepcopy=False)
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    record: dict[str, Any] = {
        "task": "sweep",
        "status": "failed" if stop_reason else "finished",
        "start_time": started,
        "end_time": None,
        "study": {
            "name": sweeper.study_name,
            "storage": scrub_text(sweeper.job_storage),
            "direction": sweeper.direction,
            "metric": sweeper.metric,
            "n_trials": sweeper.n_trials,
            "trials": counts,
        },
        "metrics": {},
        "paths": {"sweep_dir": str(sweep_dir)},
        "mlflow_run_id": None,
    }
    if stop_reason:
        record["error"] = stop_reason
        log.error("sweep stopped: %s", stop_reason)
    if counts["complete"]:
        best = study.best_trial
        overrides = overrides_from_params(sweeper.params, best.params)
        log.info(
            "Best trial %d of %s: %s = %.6g\n  %s\n  run dir: %s",
            best.number, sweeper.study_name, sweeper.metric, best.value, "\n  ".join(overrides),
            best.user_attrs.get("run_dir"),
        )
        job_cfg = sweeper.hydra_context.config_loader.load_sweep_config(sweeper.config, [*sweeper.fixed, *overrides])
        header = (
            f"Best trial {best.number} of Optuna study {sweeper.study_name!r} ({sweeper.metric} = {best.value:.6g}).\n"
            f"Re-run it: python -m ocrft --config-path {sweep_dir.resolve()} --config-name best\n"
            f"Trial overrides: {' '.join(overrides)}"
        )
        best_path = write_best_config(job_cfg, sweep_dir / "best.yaml", header)
        record["metrics"][sweeper.metric] = best.value
        record["best_trial"] = {"number": best.number, "params": best.params, "run_dir": best.user_attrs.get("run_dir")}
        record["paths"]["best_config"] = str(best_path)
        log.info("best config: %s", best_path)
    else:
        log.warning("no trial of study %s completed: no best.yaml", sweeper.study_name)
    for name, path in save_plots(study, sweep_dir).items():
        record["paths"][name] = str(path)
    record["mlflow_run_id"] = log_to_parent_run(sweeper.config, sweep_dir, record)
    record["end_time"] = now()
    RunRecord.from_json(record).write(sweep_dir)
    return record


def write_best_config(job_cfg: DictConfig, path: Path, header: str) -> Path:
    """Write ``job_cfg`` (a composed job config, hydra node included) as a runnable primary config."""
    from hydra.core.config_store import ConfigStore

    from ocrft import atomic
    from ocrft.redact import redact

    # Redacted: a key typed on the sweep's command line stays out (keys go in environment
    # variables, which best.yaml's run reads again).
    body = redact(OmegaConf.to_container(job_cfg, resolve=False, enum_to_str=True))
    assert isinstance(body, dict)
    hydra = body.pop("hydra", None) or {}
    if isinstance(body.get("trial"), dict):
        body["trial"] = {k: None for k in body["trial"]}
    out: dict[str, Any] = {}
    # Keep the typed schema when the app has one (ocrft stores it as `base_config`), so a
    # typo in an override of best.yaml fails at compose time like any other run.
    schema = ConfigStore.instance().repo.get("base_config.yaml")
    if schema is not None and OmegaConf.get_type(schema.node) is OmegaConf.get_type(job_cfg):
        out["defaults"] = ["base_config", "_self_"]
    out.update(body)
    out["hydra"] = {"run": {"dir": hydra.get("run", {}).get("dir")}, "job": {"chdir": hydra.get("job", {}).get("chdir")}}
    text = "".join(f"# {line}\n" for line in header.splitlines()) + OmegaConf.to_yaml(OmegaConf.create(out))
    return atomic.write_text(path, text)


def save_plots(study: "optuna.Study", out_dir: Path) -> dict[str, Path]:
    """Optimization history, intermediate values and parameter importances as PNGs.

    Importance needs two complete trials; a plot that cannot be drawn is skipped with a
    warning rather than failing a finished sweep.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only; the sweep may run where there is no display
    import matplotlib.pyplot as plt
    import optuna
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as plots

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    wanted = {}
    if complete:
        wanted["optimization_history"] = plots.plot_optimization_history
    if any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
        wanted["intermediate_values"] = plots.plot_intermediate_values
    if len(complete) >= 2:
        wanted["param_importances"] = plots.plot_param_importances
    written = {}
    for name, plot in wanted.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                axes = plot(study)
            figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
            path = out_dir / f"{name}.png"
            figure.savefig(path, dpi=110, bbox_inches="tight")
            plt.close(figure)
            written[f"plot_{name}"] = path
        except Exception as err:  # e.g. importance of a single-valued parameter
            log.warning("plot %s skipped: %s", name, err)
    return written


def tag_child_run(result: Any, run_dir: Optional[str], number: int, state: str) -> None:
    """Tag the trial's MLflow run (from <run_dir>/run.json) with its trial number and state."""
    record = RunRecord.read(run_dir) if run_dir else None
    run_id = record.mlflow_run_id if record else None
    if not run_id:
        return
    uri = OmegaConf.select(result.cfg, "tracking.uri") if result.cfg is not None else None
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        client.set_tag(run_id, "optuna.trial_number", str(number))
        client.set_tag(run_id, "optuna.state", state)
    except Exception as err:  # tracking trouble must not end the sweep
        log.warning("could not tag MLflow run %s of trial %d: %s", run_id, number, err)


def log_to_parent_run(config: DictConfig, sweep_dir: Path, record: dict) -> Optional[str]:
    """Log best.yaml and the plots to the sweep's MLflow parent run, when there is one."""
    from ocrft.tracking.parent_run import sweep_parent_run  # written by the MLflow sweep callback

    run_id = sweep_parent_run(sweep_dir)
    if run_id is None:
        return None
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=OmegaConf.select(config, "tracking.uri"))
        for key, path in record["paths"].items():
            if key == "best_config" or key.startswith("plot_"):
                client.log_artifact(run_id, path, artifact_path="sweep")
        client.set_tag(run_id, "optuna.study_name", record["study"]["name"])
        if "best_trial" in record:
            client.set_tag(run_id, "optuna.best_trial", str(record["best_trial"]["number"]))
    except Exception as err:
        log.warning("could not log the sweep to MLflow run %s: %s", run_id, err)
    return run_id
