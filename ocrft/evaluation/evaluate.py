"""One split read and scored by the backend's predictor: what task=eval does, and task=soup
after writing its adapter (a task imports no other task, so both call this)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ocrft.data.record import Record


def load_eval_split(cfg: Any, run_dir: Path, tracker: Any = None) -> list[Record]:
    """The ``eval.split`` records (the first ``eval.limit``); ``tracker`` logs them as the run's input."""
    from ocrft.data.loading import load_data
    from ocrft.data.record import DataError

    data = load_data(cfg.data, run_dir, splits=(cfg.eval.split,))
    records = data.splits[cfg.eval.split]
    if not records:
        raise DataError(f"the {cfg.eval.split!r} split is empty: nothing to evaluate (eval.split={cfg.eval.split})",
                        data.sources.get(cfg.eval.split))  # fmt: skip
    records = records[: cfg.eval.limit] if cfg.eval.limit else records
    if tracker is not None:
        tracker.log_datasets(cfg.data, {cfg.eval.split: records}, data.sources, generated=data.generated)
    return records


def evaluate_split(cfg: Any, records: list[Record], run_dir: Path, *, tracker: Any = None) -> tuple[dict, dict[str, str]]:
    """Read ``records`` with the backend's predictor (ocrft.evaluation.predictor; resumable from
    its checkpoint in ``run_dir``), score them and write the results; returns (metrics, paths):
    the scores and the backend's own figures (tokens and cost, routing, unmatched predictions)."""
    from ocrft.evaluation.predictor import build_predictor
    from ocrft.evaluation.scoring import score_outputs

    predictor = build_predictor(cfg, task="eval", run_dir=run_dir, tracker=tracker)
    try:
        outputs = predictor.predict(records)
        report = predictor.report(outputs)
        scores, paths = score_outputs(records, outputs, cfg.eval, model=predictor.describe(), out_dir=run_dir,
                                      extra=report.extra)  # fmt: skip
    finally:
        predictor.close()
    return {**scores, **report.metrics}, {**paths, **report.paths}


def log_evaluation(tracker: Any, eval_cfg: Any, metrics: dict, paths: dict[str, str]) -> dict[str, float]:
    """Log an evaluation's metrics (as ``eval/<name>``, returned), how they were counted, its
    files and the per-sample table (sortable in MLflow's table view)."""
    from ocrft.evaluation.metrics import metric_tags
    from ocrft.evaluation.results import load_results, to_frame

    metrics = {f"eval/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}
    tracker.log_metrics(metrics)
    tracker.set_tags(metric_tags(eval_cfg))  # how CER was counted, BLEU/TER signatures
    for path in paths.values():
        tracker.log_artifact(path)
    if "results" in paths:
        tracker.log_table(to_frame(load_results(paths["results"])), "results_table.json")
    return metrics
