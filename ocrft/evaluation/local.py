"""Evaluating a local model: batched generation with progress, scoring, resumable task=eval.

A local task=eval is resumable: each finished batch is appended to
``<run_dir>/eval_checkpoint.jsonl`` (``ocrft.evaluation.checkpoint``), and the same command run
again in the same run folder generates only the samples not in it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ocrft.data.record import Record
from ocrft.evaluation.scoring import score_and_write

log = logging.getLogger(__name__)


CHECKPOINT = "eval_checkpoint.jsonl"


def generate_with_progress(
    generator,
    records: Sequence[Record],
    prompt: str,
    batch_size: int,
    desc: str,
    on_batch: Optional[Callable[[list[int], list], None]] = None,
    detailed: bool = False,
) -> list:
    """Batched generation over ``records`` with a progress bar showing the running CER;
    ``on_batch(indices, outputs)`` also sees each finished batch (checkpoints). Outputs are
    texts, or ocrft.evaluation.generation.Generation objects when ``detailed``."""
    from rapidfuzz.distance import Levenshtein
    from tqdm.auto import tqdm

    from ocrft.evaluation.generation import image_loaders, prompts_for
    from ocrft.evaluation.generation import generate_all

    edits = chars = 0
    bar = tqdm(total=len(records), desc=desc, unit="sample", dynamic_ncols=True)

    def progress(indices: list[int], outputs: list) -> None:
        nonlocal edits, chars
        if on_batch is not None:
            on_batch(indices, outputs)
        for i, output in zip(indices, outputs):
            text = output.text if detailed else output
            edits += Levenshtein.distance(text, records[i].text)
            chars += len(records[i].text)
        bar.update(len(indices))
        bar.set_postfix(cer=f"{edits / max(chars, 1):.4f}")

    try:
        return generate_all(generator, image_loaders(records), prompts_for(records, prompt), batch_size, progress, detailed)
    finally:
        bar.close()


def evaluate_records(
    generator, records: Sequence[Record], cfg, out_dir: Path, name: str, desc: str, model: Optional[dict] = None
) -> tuple[dict, dict]:
    """Generate and score one split with a local model.

    ``model`` describes what is evaluated (``ocrft.provenance.describe_model``; default:
    ``cfg.model``); the results file names it. With sharded weights every rank generates
    along (see ocrft.models.sharding); rank 0 alone scores and writes, the others return empty results.
    """
    from ocrft.distributed import world
    from ocrft.provenance import describe_model

    outputs = generate_with_progress(generator, records, cfg.prompt.text, cfg.eval.batch_size, desc, detailed=True)
    if not world().is_main:
        return {}, {}
    model = model or describe_model(cfg.model)
    return score_and_write(records, [g.text for g in outputs], cfg.eval, model["name"], out_dir, name,
                           extra={"model": model}, looped=[g.looped for g in outputs])  # fmt: skip


def generation_fingerprint(cfg) -> str:
    """A digest of everything that decides a local model's predictions: the model (and its
    weight files' sizes and times, so a retrained adapter at the same path counts as new),
    the prompt and the generation settings. Checkpointed rows under another one are redone."""
    from ocrft.models.loading import resolve_model

    resolved = resolve_model(cfg.model.family, cfg.model.path)
    weights = sorted(
        (str(f), f.stat().st_size, f.stat().st_mtime_ns)
        for folder in (resolved.base_path, resolved.adapter_path)
        if folder and Path(folder).is_dir()
        for f in Path(folder).glob("*.safetensors")
    )
    model = {k: cfg.model[k] for k in ("family", "path", "dtype", "min_pixels", "max_pixels", "attn_implementation")}
    gen = {k: cfg.eval[k] for k in ("max_new_tokens", "repetition_penalty", "num_beams", "no_repeat_ngram_size")}
    gen["loop_guard"] = dict(cfg.eval.loop_guard)
    settings = {"model": model, "weights": weights, "prompt": [cfg.prompt.text, cfg.prompt.system], "generation": gen}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def checkpoint_row(record: Record, output, fingerprint: str) -> dict:
    """One generated sample as the eval checkpoint stores it (output: a Generation)."""
    return {"id": record.id, "image_path": record.image, "label": record.text, "prediction": output.text,
            "looped": output.looped, "mean_logprob": output.mean_logprob, "min_logprob": output.min_logprob,
            "num_tokens": output.num_tokens, "fingerprint": fingerprint}  # fmt: skip


def generate_resumable(
    cfg, records: Sequence[Record], path: Path, desc: str, generator: Callable[[], object]
) -> list[dict]:
    """Generate ``records`` with a local model, resumable through the JSONL checkpoint ``path``.

    Each finished batch is appended (and fsync'd) before the next starts, so a kill loses at
    most one batch; a re-run generates only the samples not in it. A checkpointed row counts
    only if its image, label and generation fingerprint (:func:`generation_fingerprint`)
    match the record and the current config. ``generator()`` is called only if samples are
    left (so a finished run never loads the model).

    Returns:
        One :func:`checkpoint_row` per record, in order.
    """
    from ocrft.data.record import DataError
    from ocrft.evaluation.checkpoint import Checkpoint

    if len({r.id for r in records}) != len(records):
        raise DataError(f"{desc}: record ids must be unique: the checkpoint {path} is keyed by id")
    fingerprint = generation_fingerprint(cfg)
    with Checkpoint(path) as ckpt:
        done = {
            r.id: row
            for r in records
            if (row := ckpt.rows.get(r.id)) is not None
            and (row.get("fingerprint"), row.get("image_path"), row.get("label")) == (fingerprint, r.image, r.text)
        }
        todo = [r for r in records if r.id not in done]
        log.info("%s: %d samples, %d already done (%s), %d to generate", desc, len(records), len(done), path, len(todo))
        if todo:

            def save(indices: list[int], outputs: list) -> None:
                rows = [checkpoint_row(todo[i], g, fingerprint) for i, g in zip(indices, outputs)]
                ckpt.extend(rows)
                done.update((row["id"], row) for row in rows)

            generate_with_progress(generator(), todo, cfg.prompt.text, cfg.eval.batch_size, desc, on_batch=save,
                                   detailed=True)  # fmt: skip
    return [done[r.id] for r in records]


def run_local_eval(cfg, records: Sequence[Record], run_dir: Path, *, tracker: Any = None) -> tuple[dict, dict[str, str]]:
    """task=eval with a local model, resumable through ``<run_dir>/eval_checkpoint.jsonl``
    (:func:`generate_resumable`): a re-run generates only what is left, then scores every sample.
    A tracking ``tracker`` gets the pixel budget / image size the processor resolves to as params."""
    from ocrft.evaluation.generation import build_generator
    from ocrft.provenance import describe_model

    processor = None
    if tracker is not None and tracker.run_id is not None:
        from ocrft.models.bundle import load_bundle
        from ocrft.models.loading import image_params

        bundle = load_bundle(cfg.model, weights=False)
        processor = bundle.processor  # loaded once: the generator reuses it
        tracker.log_params(image_params(bundle.resolved.family, processor))

    path = Path(run_dir) / CHECKPOINT
    rows = generate_resumable(cfg, records, path, f"eval {cfg.eval.split}", lambda: build_generator(cfg, processor=processor))
    model = describe_model(cfg.model)
    metrics, paths = score_and_write(records, [row["prediction"] for row in rows], cfg.eval, model["name"],
                                     Path(run_dir), "results", extra={"model": model},
                                     looped=[bool(row.get("looped")) for row in rows])  # fmt: skip
    return metrics, {**paths, "eval_checkpoint": str(path)}
