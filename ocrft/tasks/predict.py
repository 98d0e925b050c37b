"""task=predict: transcribe one image or a folder of images with a local model, an endpoint
or a cascade (model=cascade with a numeric cascade.threshold: each output records its route
and confidence). A folder holding PAGE-XML or ALTO files is an export: its lines are read
and a filled copy written (ocrft.evaluation.archive, docs/archive.md)."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from ocrft.config import ConfigError
from ocrft.runner import RunContext, TaskResult

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif"}


def list_images(source: Path) -> list[Path]:
    """``source`` itself if it is a file, else the images under it (recursively, sorted)."""
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise FileNotFoundError(f"predict.input={source} does not exist")
    images = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise FileNotFoundError(f"predict.input={source} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return images


def run_predict(cfg, ctx: RunContext) -> TaskResult:
    """Write ``results.txt`` (``path<TAB>text`` per image) and ``predictions.jsonl`` (with a
    cascade, each row also says which model read it and how sure the local one was)."""
    from ocrft import atomic
    from ocrft.data.record import Record
    from ocrft.evaluation.predictor import build_predictor

    if not cfg.predict.input:
        raise ConfigError("predict.input is not set: task=predict needs predict.input=<image or folder>")
    source = Path(cfg.predict.input).expanduser()
    if _is_export(source):
        return _predict_export(cfg, ctx, source)
    if cfg.predict.rank:
        raise ConfigError(f"predict.rank=true ranks the lines of a PAGE/ALTO export, and predict.input={source} "
                          "holds no PAGE or ALTO file")  # fmt: skip
    images = list_images(source)
    out_dir = Path(cfg.predict.output).expanduser() if cfg.predict.output else ctx.run_dir
    records = [Record(id=str(p), image=str(p), text="") for p in images]
    predictor = build_predictor(cfg, task="predict", run_dir=ctx.run_dir)
    try:
        log.info("transcribing %d image(s) with %s", len(records), predictor.describe()["name"])
        outputs = predictor.predict(records)
    finally:
        predictor.close()
    texts = [o.text for o in outputs]
    # One line per image: newlines inside a transcription are escaped, so line N is image N.
    lines = [f"{p}\t{t.replace(chr(10), chr(92) + 'n')}" for p, t in zip(images, texts)]
    txt = atomic.write_text(out_dir / "results.txt", "\n".join(lines) + "\n")
    rows = [{"image": str(p), "prediction": o.text, **({"error": o.error} if o.error else {}), **o.meta}
            for p, o in zip(images, outputs)]  # fmt: skip
    metrics = {"predict/images": len(images)}
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
