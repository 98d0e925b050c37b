"""task=eval: a base model, a checkpoint, an ocrft run folder, an endpoint, a cascade (local
model first, an endpoint for the hard samples) or another engine's output, scored on one split.

    python -m ocrft task=eval model.path=outputs/train/<run> data=... eval.split=test
"""

from __future__ import annotations

from ocrft.runner import RunContext, TaskResult


def run_eval(cfg, ctx: RunContext) -> TaskResult:
    """task=eval: the split read by the backend's predictor, scored, and logged with the
    per-sample table (ocrft.evaluation.evaluate)."""
    from ocrft.evaluation.evaluate import evaluate_split, load_eval_split, log_evaluation

    records = load_eval_split(cfg, ctx.run_dir, ctx.tracker)
    metrics, paths = evaluate_split(cfg, records, ctx.run_dir, tracker=ctx.tracker)
    return TaskResult(metrics=log_evaluation(ctx.tracker, cfg.eval, metrics, paths), paths=paths)
