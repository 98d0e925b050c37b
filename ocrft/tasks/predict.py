"""task=predict: transcribe one image or PDF, or a folder of them, with a local model, an
endpoint or a cascade (model=cascade with a numeric cascade.threshold: each output records
its route and confidence). A PDF gives one prediction per page, ``<file>#p<N>``, its pages
rendered at data.pdf_dpi within data.max_pixels (ocrft.data.pdf). A folder holding PAGE-XML
or ALTO files is an export: its lines are read and a filled copy written
(ocrft.evaluation.archive, docs/archive.md)."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from ocrft.config import ConfigError
from ocrft.runner import RunContext, TaskResult

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif"}


def list_images(source: Path) -> list[Path]:
    """``source`` itself if it is a file, else the images and PDFs under it (recursively, sorted)."""
    from ocrft.data.pdf import PDF_SUFFIX

    if source.is_file():
        return [source]
    if not source.is_dir():
        raise FileNotFoundError(f"predict.input={source} does not exist")
    suffixes = IMAGE_SUFFIXES | {PDF_SUFFIX}
    images = sorted(p for p in source.rglob("*") if p.suffix.lower() in suffixes and p.is_file())
    if not images:
        raise FileNotFoundError(f"predict.input={source} holds no images or PDFs ({', '.join(sorted(suffixes))})")
    return images


def input_records(paths: list[Path], data, run_dir: Path) -> tuple[list, dict[str, str]]:
    """One record per image and per PDF page (rendered into ``run_dir/pdf_pages``), in input
    order; and the PDFs left out with data.on_error=skip (path -> why)."""
    from ocrft.data.pdf import PDF_SUFFIX, RenderSettings, render_pdfs
    from ocrft.data.reading import skip_mode
    from ocrft.data.record import Record

    settings = RenderSettings(dpi=data.pdf_dpi, max_pixels=data.max_pixels, max_pages=data.pdf_max_pages)
    records, skipped = [], {}
    for path in paths:
        if path.suffix.lower() != PDF_SUFFIX:
            records.append(Record(id=str(path), image=str(path), text=""))
            continue
        pages = render_pdfs([path], run_dir / "pdf_pages", settings=settings, skip=skip_mode(data.on_error))
        records.extend(pages.records)
        skipped.update(pages.skipped)
    return records, skipped


def run_predict(cfg, ctx: RunContext) -> TaskResult:
    """Write ``results.txt`` (``path<TAB>text`` per image or ``file#pN<TAB>text`` per PDF page)
    and ``predictions.jsonl`` (with a cascade, each row also says which model read it and how
    sure the local one was)."""
    from ocrft import atomic
    from ocrft.evaluation.predictor import build_predictor

    if not cfg.predict.input:
        raise ConfigError("predict.input is not set: task=predict needs predict.input=<image or folder>")
    source = Path(cfg.predict.input).expanduser()
    if _is_export(source):
        return _predict_export(cfg, ctx, source)
    if cfg.predict.rank:
        raise ConfigError(f"predict.rank=true ranks the lines of a PAGE/ALTO export, and predict.input={source} "
                          "holds no PAGE or ALTO file")  # fmt: skip
    out_dir = Path(cfg.predict.output).expanduser() if cfg.predict.output else ctx.run_dir
    records, skipped = input_records(list_images(source), cfg.data, ctx.run_dir)
    if not records:
        raise ConfigError(f"predict.input={cfg.predict.input}: nothing left to read ({len(skipped)} PDF(s) skipped)")
    predictor = build_predictor(cfg, task="predict", run_dir=ctx.run_dir)
    try:
        log.info("transcribing %d image(s) with %s", len(records), predictor.describe()["name"])
        outputs = predictor.predict(records)
    finally:
        predictor.close()
    texts = [o.text for o in outputs]
    # One line per image: newlines inside a transcription are escaped, so line N is image N.
    lines = [f"{r.id}\t{t.replace(chr(10), chr(92) + 'n')}" for r, t in zip(records, texts)]
    txt = atomic.write_text(out_dir / "results.txt", "\n".join(lines) + "\n")
    rows = [{"image": r.id, **({"page_image": r.image} if "pdf" in r.meta else {}), "prediction": o.text,
             **({"error": o.error} if o.error else {}), **o.meta} for r, o in zip(records, outputs)]  # fmt: skip
    metrics = {"predict/images": len(records), "predict/skipped_pdfs": len(skipped)}
    if any("route" in o.meta for o in outputs):  # a cascade: local model first, an endpoint for the unsure rows
        metrics["predict/routed_fraction"] = sum(o.meta["route"] == "fallback" for o in outputs) / len(outputs)
    jsonl = atomic.write_jsonl(out_dir / "predictions.jsonl", rows)
    for path in (txt, jsonl):
        ctx.tracker.log_artifact(path)
    return TaskResult(metrics=metrics, paths={"results_txt": str(txt), "predictions": str(jsonl)})


def _is_export(source: Path) -> bool:
    from ocrft.evaluation.archive import find_pages

    return bool(find_pages(source))


def _predict_export(cfg, ctx: RunContext, source: Path) -> TaskResult:
    """Fill a copy of a PAGE/ALTO export with the model's reading (and rank its pages)."""
    from ocrft.evaluation.archive import predict_export

    metrics, paths = predict_export(cfg, source=source, run_dir=ctx.run_dir)
    for key in ("ranking_csv", "ranking_jsonl"):
        if key in paths:
            ctx.tracker.log_artifact(Path(paths[key]))
    ctx.tracker.log_metrics(metrics)
    return TaskResult(metrics=metrics, paths=paths)
