"""task=eval: a base model, a checkpoint, an ocrft run folder, an endpoint, a cascade (local
model first, an endpoint for the hard samples) or another engine's output, scored on one split.

    python -m ocrft task=eval model.path=outputs/train/<run> data=... eval.split=test
"""

from __future__ import annotations

from pathlib import Path

from ocrft.data.record import Record
from ocrft.runner import RunContext, TaskResult


def load_eval_split(cfg, run_dir: Path, tracker=None) -> list[Record]:
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


def evaluate_split(cfg, records: list[Record], run_dir: Path, *, tracker=None) -> tuple[dict, dict[str, str]]:
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


def run_eval(cfg, ctx: RunContext) -> TaskResult:
    """task=eval: the split read, scored and logged with the per-sample table."""
    from ocrft.evaluation.metrics import metric_tags
    from ocrft.evaluation.results import load_results, to_frame

    records = load_eval_split(cfg, ctx.run_dir, ctx.tracker)
    metrics, paths = evaluate_split(cfg, records, ctx.run_dir, tracker=ctx.tracker)
    metrics = {f"eval/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}
    ctx.tracker.log_metrics(metrics)
    ctx.tracker.set_tags(metric_tags(cfg.eval))  # how CER was counted, BLEU/TER signatures
    for path in paths.values():
        ctx.tracker.log_artifact(path)
    if "results" in paths:  # the per-sample scores, sortable in MLflow's table view
        ctx.tracker.log_table(to_frame(load_results(paths["results"])), "results_table.json")
    return TaskResult(metrics=metrics, paths=paths)
