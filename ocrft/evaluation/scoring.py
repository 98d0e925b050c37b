"""Score predictions against their records and write the results file and its HTML report.

Every evaluation ends here: a local model (ocrft.evaluation.local), an endpoint
(ocrft.evaluation.endpoint_eval) or another engine's output (ocrft.evaluation.predictions_eval),
so their results files and reports are alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from ocrft.data.record import Record


def score_and_write(
    records: Sequence[Record],
    predictions: Sequence[str],
    eval_cfg,
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
    results = build_results(rows, model_name, normalization_dict(eval_cfg.normalization), metrics, extra, settings)
    paths = {
        name: str(write_results(out_dir / f"{name}.json", results)),
        f"{name}_report": str(atomic.write_text(out_dir / f"{name}.html", render_report_html(results))),
    }
    return metrics, paths
