"""task=report: re-score a results file and render it as one self-contained HTML page.

    python -m ocrft task=report report.results=outputs/eval/.../results.json tracking=none
    python -m ocrft task=report report.results=base.json report.compare=finetuned.json

The pages are rendered by ocrft.evaluation.html (jinja2 templates, autoescaped).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ocrft import atomic
from ocrft.config import ConfigError
from ocrft.evaluation.comparison import compare_counts
from ocrft.evaluation.html import render_comparison_html, render_report_html, summary_metrics
from ocrft.evaluation.metrics import MetricSettings, metric_tags
from ocrft.evaluation.results import load_results, rescore_results, write_results
from ocrft.runner import RunContext, TaskResult

log = logging.getLogger(__name__)


def _numeric(metrics: dict, prefix: str) -> dict[str, float]:
    return {
        f"{prefix}{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def run_report(cfg, ctx: RunContext) -> TaskResult:
    """task=report: load report.results (re-score it under eval.normalization unless
    report.rescore=false), write the HTML report, or a comparison with report.compare."""
    rc = cfg.report
    if not rc.results:
        raise ConfigError("report.results is not set: pass report.results=path/to/results.json")
    settings = MetricSettings.from_eval(cfg.eval)  # CER unit and sacrebleu options of the re-score
    paths: dict[str, str] = {}
    loaded = []
    for name, path in (("results", rc.results), ("compare_results", rc.compare)):
        if not path:
            continue
        results = load_results(path)
        if rc.rescore:
            log.info("re-scoring %s with normalization %s", path, dict(cfg.eval.normalization))
            results = rescore_results(results, cfg.eval.normalization, settings, cfg.eval.json_target)
            paths[name] = str(write_results(ctx.run_dir / f"{name}.json", results))
        else:
            paths[name] = str(path)
        loaded.append((results, Path(path).resolve().parent))

    output = Path(rc.output) if rc.output else ctx.run_dir / "report.html"
    (a, dir_a), *rest = loaded
    if rest:
        (b, dir_b), = rest
        page = render_comparison_html(a, b, base_dirs=(dir_a, dir_b))
        metrics = {**_numeric(summary_metrics(a), "report/a/"), **_numeric(summary_metrics(b), "report/b/")}
        metrics.update(_numeric(compare_counts(a, b), "report/"))
    else:
        page = render_report_html(a, base_dirs=(dir_a,))
        metrics = _numeric(summary_metrics(a), "report/")
    paths["report"] = str(atomic.write_text(output, page))
    log.info("report: %s (%.1f MB)", output, len(page) / 1e6)
    ctx.tracker.log_metrics(metrics)
    if rc.rescore:  # the re-scored numbers' CER unit and BLEU/TER signatures
        ctx.tracker.set_tags(metric_tags(settings, "report/"))
    for p in paths.values():
        ctx.tracker.log_artifact(p)
    return TaskResult(metrics=metrics, paths=paths)
