"""task=eval and the evaluation step of task=train: generate, score, write results + report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

from ocrft.data.record import Record
from ocrft.runner import RunContext, TaskResult

log = logging.getLogger(__name__)


def generate_with_progress(generator, records: Sequence[Record], prompt: str, batch_size: int, desc: str) -> list[str]:
    """Batched generation over ``records`` with a progress bar showing the running CER."""
    from rapidfuzz.distance import Levenshtein
    from tqdm.auto import tqdm

    from ocrft.datasets_hf import image_loaders, prompts_for
    from ocrft.generation import generate_all

    edits = chars = 0
    bar = tqdm(total=len(records), desc=desc, unit="sample", dynamic_ncols=True)

    def on_batch(indices: list[int], texts: list[str]) -> None:
        nonlocal edits, chars
        for i, text in zip(indices, texts):
            edits += Levenshtein.distance(text, records[i].text)
            chars += len(records[i].text)
        bar.update(len(indices))
        bar.set_postfix(cer=f"{edits / max(chars, 1):.4f}")

    try:
        return generate_all(generator, image_loaders(records), prompts_for(records, prompt), batch_size, on_batch)
    finally:
        bar.close()


def score_and_write(
    records: Sequence[Record],
    predictions: Sequence[str],
    eval_cfg,
    model_name: str,
    out_dir: Path,
    name: str = "results",
    errors: Optional[Sequence[Optional[str]]] = None,
    extra: Optional[dict] = None,
) -> tuple[dict, dict[str, str]]:
    """Score predictions, write ``<name>.json`` and ``<name>.html``; return (metrics, paths)."""
    from ocrft import atomic
    from ocrft.normalize import normalization_dict
    from ocrft.report import render_report_html
    from ocrft.results import build_results, score_samples, write_results

    rows = []
    for i, (r, p) in enumerate(zip(records, predictions)):
        row = {"id": r.id, "image_path": r.image, "label": r.text, "prediction": p, **r.meta}
        if errors and errors[i]:
            row["error"] = errors[i]
        rows.append(row)
    metrics, rows = score_samples(
        rows, eval_cfg.normalization, bleu_tokenize=eval_cfg.bleu_tokenize, json_target=eval_cfg.json_target
    )
    results = build_results(rows, model_name, normalization_dict(eval_cfg.normalization), metrics, extra)
    paths = {
        name: str(write_results(out_dir / f"{name}.json", results)),
        f"{name}_report": str(atomic.write_text(out_dir / f"{name}.html", render_report_html(results))),
    }
    return metrics, paths


def evaluate_records(generator, records: Sequence[Record], cfg, out_dir: Path, name: str, desc: str) -> tuple[dict, dict]:
    """Generate and score one split with a local model."""
    predictions = generate_with_progress(generator, records, cfg.prompt.text, cfg.eval.batch_size, desc)
    model_name = cfg.model.name or cfg.model.path
    return score_and_write(records, predictions, cfg.eval, model_name, out_dir, name)


def load_eval_split(cfg, run_dir: Path) -> list[Record]:
    from ocrft.data.loading import load_data

    data = load_data(cfg.data, run_dir, splits=(cfg.eval.split,))
    records = data.splits[cfg.eval.split]
    if not records:
        raise ValueError(f"the {cfg.eval.split!r} split is empty: nothing to evaluate (eval.split={cfg.eval.split})")
    return records[: cfg.eval.limit] if cfg.eval.limit else records


def run_eval(cfg, ctx: RunContext) -> TaskResult:
    """task=eval: a base model, a checkpoint, an ocrft run folder, or an endpoint on one split."""
    records = load_eval_split(cfg, ctx.run_dir)
    if cfg.model.family == "endpoint":
        from ocrft.endpoint import run_endpoint_eval

        metrics, paths = run_endpoint_eval(cfg, records, ctx.run_dir)
    else:
        from ocrft.generation import build_generator

        generator = build_generator(cfg)
        metrics, paths = evaluate_records(generator, records, cfg, ctx.run_dir, "results", f"eval {cfg.eval.split}")
    metrics = {f"eval/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}
    ctx.tracker.log_metrics(metrics)
    for path in paths.values():
        ctx.tracker.log_artifact(path)
    return TaskResult(metrics=metrics, paths=paths)
