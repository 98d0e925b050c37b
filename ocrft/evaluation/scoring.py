"""Score predictions against their records and write the results file and its HTML report.

Every evaluation ends here, whatever predictor read the images (ocrft.evaluation.predictor:
a local model, an endpoint, a cascade, another engine's output), so their results files and
reports are alike.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Sequence

from ocrft.data.record import Record


def score_and_write(
    records: Sequence[Record],
    predictions: Sequence[str],
    eval_cfg,
    *,
    model_name: str,
    out_dir: Path,
    name: str = "results",
    errors: Optional[Sequence[Optional[str]]] = None,
    extra: Optional[dict] = None,
    looped: Optional[Sequence[bool]] = None,
    attempts: Optional[Sequence[int]] = None,
) -> tuple[dict, dict[str, str]]:
    """Score predictions, write ``<name>.json`` and ``<name>.html``; return (metrics, paths).

    ``looped`` marks the samples the loop guard stopped: they count as degenerate.
    ``attempts``: how many times each sample was generated (``eval.loop_guard.retries``;
    ocrft.evaluation.generation.Generation.attempts): kept per sample, and the share read
    more than once is ``retried_rate``.
    """
    from ocrft import atomic
    from ocrft.evaluation.html import render_report_html
    from ocrft.evaluation.metrics import MetricSettings
    from ocrft.evaluation.normalize import normalization_dict
    from ocrft.evaluation.results import build_results, score_samples, write_results

    rows = []
    for i, (r, p) in enumerate(zip(records, predictions)):
        row = {"id": r.id, "image_path": r.image, "label": r.text, "prediction": p, **r.meta}
        if errors and errors[i]:
            row["error"] = errors[i]
        if looped and looped[i]:
            row["looped"] = True
        if attempts:
            row["attempts"] = attempts[i]
        rows.append(row)
    settings = MetricSettings.from_eval(eval_cfg)
    metrics, rows = score_samples(rows, eval_cfg.normalization, settings, eval_cfg.json_target)
    if attempts:
        metrics["retried_rate"] = sum(n > 1 for n in attempts) / len(attempts)
    normalization = normalization_dict(eval_cfg.normalization)
    results = build_results(rows, model_name, normalization, metrics, extra=extra, settings=settings)
    paths = {
        name: str(write_results(out_dir / f"{name}.json", results)),
        f"{name}_report": str(atomic.write_text(out_dir / f"{name}.html", render_report_html(results))),
    }
    return metrics, paths


def score_outputs(
    records: Sequence[Record],
    outputs: Sequence[Any],
    eval_cfg,
    *,
    model: dict,
    out_dir: Path,
    name: str = "results",
    extra: Optional[dict] = None,
) -> tuple[dict, dict[str, str]]:
    """:func:`score_and_write` for a predictor's Generations: their errors and loop flags are
    scored, their ``meta`` joins each sample's results, their attempts are kept where
    ``eval.loop_guard.retries`` may have read a sample again, and the results name ``model``."""
    samples = [replace(r, meta={**r.meta, **g.meta}) if g.meta else r for r, g in zip(records, outputs)]
    errors = [g.error for g in outputs]
    retried = eval_cfg.loop_guard.retries or any(g.attempts > 1 for g in outputs)
    return score_and_write(samples, [g.text for g in outputs], eval_cfg, model_name=model["name"], out_dir=Path(out_dir),
                           name=name, errors=errors if any(errors) else None, extra={**(extra or {}), "model": model},
                           looped=[g.looped for g in outputs],
                           attempts=[g.attempts for g in outputs] if retried else None)  # fmt: skip
