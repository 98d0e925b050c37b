"""Per-sample token counts (prompt + image + target) and the check that they fit train.max_length.

Counted with the run's real processor, laid out exactly as the collator lays out a training
row (ocrft.models.collate), so a sample that passes here is never cut there. A sample too
long is refused before training starts, naming it, or left out with ``data.on_error=skip``:
image tokens are never cut (that breaks the forward: "number of images does not match") and
targets are never truncated (that teaches the model to stop mid-line).

The prompt and image part depends only on the prompt text and the image's size (Qwen resizes
by size alone; Gemma 3 and PaliGemma to one square), so it is computed once per distinct
(prompt, width, height) in batched processor calls; the targets are tokenized in batches.
"""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import dataclass
from typing import Optional, Sequence

from ocrft.config import OnError
from ocrft.data.record import DataError, Record
from ocrft.models.collate import Collator, Sample

log = logging.getLogger(__name__)

BATCH = 32  # images per processor call (opened for the call and closed after it)
SHOWN = 5  # sample ids named in the error


@dataclass(frozen=True)
class TokenCount:
    """One sample's length as the model sees it."""

    id: str
    total: int  # prompt + image + target (with the family's end-of-answer suffix)
    image: int  # image placeholder tokens


def count_tokens(records: Sequence[Record], processor, family, prompt: str, *, system: Optional[str] = None,
                 batch_size: int = BATCH) -> list[TokenCount]:  # fmt: skip
    """Each record's token count, in record order.

    Args:
        records: the samples (``r.prompt`` overrides ``prompt``).
        processor: the run's processor (with its pixel budget / image size).
        family: the model family (prompt format, target suffix, image token).
        prompt: the run's instruction; system: its system text.
        batch_size: images per processor call.
    """
    from ocrft.data.images import open_image

    collator = Collator(processor, family, system)
    image_id = processor.tokenizer.convert_tokens_to_ids(family.image_token)
    keys = [(r.prompt or prompt, *_size(r.image)) for r in records]
    firsts = {key: r for key, r in zip(keys, records)}  # one image per distinct (prompt, size)
    prompts: dict[tuple, tuple[int, int]] = {}
    todo = list(firsts.items())
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        images = [open_image(r.image) for _, r in chunk]
        try:
            rows, _ = collator.encode_prompts([Sample(im, key[0]) for (key, _), im in zip(chunk, images)])
        finally:
            for im in images:
                im.close()
        for (key, _), row in zip(chunk, rows):
            ids = row["input_ids"][0]
            prompts[key] = (int(ids.shape[0]), int((ids == image_id).sum()))
    targets = [r.text + collator.suffix for r in records]
    n_target = [len(ids) for ids in processor.tokenizer(targets, add_special_tokens=False)["input_ids"]] if targets else []
    return [TokenCount(r.id, prompts[k][0] + n, prompts[k][1]) for r, k, n in zip(records, keys, n_target)]


def _size(image: str) -> tuple[int, int]:
    """(width, height) from the header only. EXIF rotation (open_image turns images upright)
    swaps them, which changes no token count: the resize rules treat both sides alike."""
    from PIL import Image

    with Image.open(image) as im:
        return im.size


def fit_max_length(records: list[Record], counts: Sequence[TokenCount], max_length: Optional[int], on_error,
                   *, split: str, source: Optional[str] = None) -> list[Record]:  # fmt: skip
    """The records that fit ``max_length`` tokens (all of them when it is None).

    Raises:
        DataError: with ``on_error=raise`` (or when no sample fits), naming the first samples
            too long, their lengths, image tokens, the limit and the fixes.
    """
    if not max_length:
        return records
    long = [(r, c) for r, c in zip(records, counts) if c.total > max_length]
    if not long:
        return records
    if OnError(on_error) != OnError.skip or len(long) == len(records):  # skipping all would leave nothing to train on
        shown = ", ".join(f"{c.id!r} ({c.total} tokens, {c.image} of them image tokens)" for _, c in long[:SHOWN])
        more = f" and {len(long) - SHOWN} more" if len(long) > SHOWN else ""
        raise DataError(
            f"{len(long)} of {len(records)} {split} samples are longer than train.max_length={max_length} tokens "
            f"(prompt + image + target): {shown}{more}. Raise train.max_length, lower model.max_pixels (fewer "
            "image tokens), or set data.on_error=skip to leave them out; image tokens and targets are never cut",
            source,
        )
    log.warning("%s: skipped %d of %d samples longer than train.max_length=%d tokens (first: %s)", split, len(long),
                len(records), max_length, ", ".join(c.id for _, c in long[:SHOWN]))  # fmt: skip
    return [r for r, c in zip(records, counts) if c.total <= max_length]


def check_splits(splits: dict[str, list[Record]], names: Sequence[str], processor, family, *, prompt: str,
                 system: Optional[str], max_length: Optional[int], on_error,
                 sources: Optional[dict[str, str]] = None) -> tuple[dict[str, list[TokenCount]], int]:  # fmt: skip
    """Count and check the ``names`` splits of ``splits`` in place (too-long records removed
    with ``on_error=skip``); returns the counts of the kept records per split and how many
    were skipped. ``sources`` (split -> file) names the file in the error."""
    kept_counts: dict[str, list[TokenCount]] = {}
    skipped = 0
    for name in names:
        records = splits.get(name) or []
        counts = count_tokens(records, processor, family, prompt, system=system)
        kept = fit_max_length(records, counts, max_length, on_error, split=name, source=(sources or {}).get(name))
        if len(kept) < len(records):
            skipped += len(records) - len(kept)
            counts = [c for c in counts if c.total <= max_length]
            splits[name] = kept
        kept_counts[name] = counts
    return kept_counts, skipped


def _percentile(sorted_values: list[int], q: float) -> int:
    # nearest rank: a value some sample really has
    return sorted_values[max(0, math.ceil(q / 100 * len(sorted_values)) - 1)]


def length_stats(counts: Sequence[TokenCount]) -> Optional[dict[str, dict[str, float]]]:
    """min, p50, p90, p99, max (and mean) of the total and the image tokens; None when empty."""
    if not counts:
        return None
    out = {}
    for key in ("total", "image"):
        values = sorted(getattr(c, key) for c in counts)
        out[key] = {"min": values[0], **{f"p{q}": _percentile(values, q) for q in (50, 90, 99)}, "max": values[-1],
                    "mean": round(statistics.fmean(values), 1)}  # fmt: skip
    return out


def token_report(model_cfg, splits: dict[str, list[Record]], prompt: str, system: Optional[str],
                 *, max_length: Optional[int]) -> dict:  # fmt: skip
    """The token-length distribution of each split for ``model_cfg``'s processor (what
    task=analyze and prepare_report.json record).

    Returns:
        ``{"model": {family, path, <pixel budget or image size>}, "max_length": N,
        "splits": {name: {"total": stats, "image": stats, "over_max_length": n} or None}}``,
        stats as :func:`length_stats`; ``over_max_length`` counts what task=train would refuse.
    """
    from ocrft.models.bundle import load_bundle
    from ocrft.models.loading import image_params

    bundle = load_bundle(model_cfg, weights=False)
    processor, family, resolved = bundle.processor, bundle.family, bundle.resolved
    model = {"family": resolved.family, "path": model_cfg.path, **image_params(resolved.family, processor)["model"]}
    out: dict = {"model": model, "max_length": max_length, "splits": {}}
    for name, records in splits.items():
        counts = count_tokens(records, processor, family, prompt, system=system)
        stats = length_stats(counts)
        if stats is not None:
            stats["over_max_length"] = sum(c.total > max_length for c in counts) if max_length else 0
        out["splits"][name] = stats
        if stats is not None:
            t = stats["total"]
            log.info("tokens %s (%s): min %d, p50 %d, p90 %d, p99 %d, max %d; image tokens p50 %d; over "
                     "train.max_length=%s: %d", name, model["path"], t["min"], t["p50"], t["p90"], t["p99"], t["max"],
                     stats["image"]["p50"], max_length, stats["over_max_length"])  # fmt: skip
    return out
