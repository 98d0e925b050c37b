"""A local model as a Predictor: batched generation with progress, resumable for task=eval.

A local task=eval is resumable: each finished batch is appended to
``<run_dir>/eval_checkpoint.jsonl`` (``ocrft.evaluation.checkpoint``), and the same command run
again in the same run folder generates only the samples not in it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Optional, Sequence

from ocrft.data.record import Record
from ocrft.evaluation.generation import Generation
from ocrft.evaluation.predictor import OnBatch, Report, predict_in_batches

log = logging.getLogger(__name__)


CHECKPOINT = "eval_checkpoint.jsonl"


class LocalPredictor:
    """A local model (``ocrft.evaluation.generation.Generator``), loaded when first needed:
    a finished, checkpointed evaluation never loads it.

    Args:
        cfg: the run config (model, prompt, eval).
        generator: an already built Generator (training validates with the model it trains).
        processor: a loaded processor the Generator reuses.
        checkpoint: a JSONL file that makes :meth:`predict` resumable.
        desc: the progress bar's label.
        progress: show the progress bar.
        model: the description results name (default: ``describe_model(cfg.model)``).
    """

    reads_images = True

    def __init__(self, cfg: Any, *, generator: Any = None, processor: Any = None,
                 checkpoint: Optional[Path] = None, desc: str = "predict", progress: bool = True,
                 model: Optional[dict] = None):  # fmt: skip
        self.cfg = cfg
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.desc = desc
        self.progress = progress
        self.model = model
        self._processor = processor
        self._loaded = {"generator": generator}  # shared with copies (:meth:`with_checkpoint`)

    @classmethod
    def from_config(cls, cfg: Any, *, task: str, run_dir: Optional[Path] = None, tracker: Any = None) -> "LocalPredictor":
        """task=eval checkpoints into ``<run_dir>/eval_checkpoint.jsonl``; a tracking
        ``tracker`` gets the pixel budget / image size the processor resolves to as params."""
        processor = None
        if tracker is not None and tracker.run_id is not None:
            from ocrft.models.bundle import load_bundle
            from ocrft.models.loading import image_params

            bundle = load_bundle(cfg.model, weights=False)
            processor = bundle.processor  # loaded once: the generator reuses it
            tracker.log_params(image_params(bundle.resolved.family, processor))
        evaluating = task == "eval" and run_dir is not None
        return cls(cfg, processor=processor, checkpoint=Path(run_dir) / CHECKPOINT if evaluating else None,
                   desc=f"eval {cfg.eval.split}" if evaluating else task)  # fmt: skip

    def with_checkpoint(self, path: Path, desc: str) -> "LocalPredictor":
        """The same model (loaded at most once between them) checkpointing into ``path``."""
        other = copy.copy(self)
        other.checkpoint, other.desc = Path(path), desc
        return other

    @property
    def generator(self) -> Any:
        if self._loaded["generator"] is None:
            from ocrft.evaluation.generation import build_generator

            self._loaded["generator"] = build_generator(self.cfg, processor=self._processor)
        return self._loaded["generator"]

    def read(self, images: Sequence[Any], prompts: Sequence[str], max_new_tokens: Optional[int] = None) -> list[Generation]:
        return self.generator.generate_detailed(images, prompts, max_new_tokens)

    def predict(self, records: Sequence[Record], on_batch: Optional[OnBatch] = None) -> list[Generation]:
        if self.checkpoint is not None:
            return self._resume(records, on_batch)
        return predict_in_batches(self.read, records, prompt=self.cfg.prompt.text, batch_size=self.cfg.eval.batch_size,
                                  desc=self.desc, on_batch=on_batch, progress=self.progress)  # fmt: skip

    def sample(self, records: Sequence[Record], *, seed: int, temperature: float) -> list[Generation]:
        """One sampled read of each record (``predict.samples``), never checkpointed."""

        def read(images: list, prompts: list[str]) -> list[Generation]:
            return self.generator.sample(images, prompts, seed=seed, temperature=temperature)

        return predict_in_batches(read, records, prompt=self.cfg.prompt.text, batch_size=self.cfg.eval.batch_size,
                                  desc=f"{self.desc} sample {seed}", progress=self.progress)  # fmt: skip

    def count_tokens(self, text: str) -> int:
        return self.generator.count_tokens(text)

    def describe(self) -> dict:
        from ocrft.provenance import describe_model

        return self.model or describe_model(self.cfg.model)

    def report(self, outputs: Sequence[Generation]) -> Report:
        return Report(paths={"eval_checkpoint": str(self.checkpoint)} if self.checkpoint else {})

    def close(self) -> None:
        pass

    def _resume(self, records: Sequence[Record], on_batch: Optional[OnBatch]) -> list[Generation]:
        """Generate ``records``, resumable through the JSONL checkpoint.

        Each finished batch is appended (and fsync'd) before the next starts, so a kill loses at
        most one batch; a re-run generates only the samples not in it. A checkpointed row counts
        only if its image, label and generation fingerprint (:func:`generation_fingerprint`)
        match the record and the current config. The model loads only if samples are left.
        """
        from ocrft.data.record import DataError
        from ocrft.evaluation.checkpoint import Checkpoint

        path, desc = self.checkpoint, self.desc
        if len({r.id for r in records}) != len(records):
            raise DataError(f"{desc}: record ids must be unique: the checkpoint {path} is keyed by id")
        fingerprint = generation_fingerprint(self.cfg)
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

                def save(indices: list[int], outputs: list[Generation]) -> None:
                    rows = [checkpoint_row(todo[i], g, fingerprint) for i, g in zip(indices, outputs)]
                    ckpt.extend(rows)
                    done.update((row["id"], row) for row in rows)
                    if on_batch is not None:
                        on_batch([positions[todo[i].id] for i in indices], outputs)

                positions = {r.id: i for i, r in enumerate(records)}
                predict_in_batches(self.read, todo, prompt=self.cfg.prompt.text, batch_size=self.cfg.eval.batch_size,
                                   desc=desc, on_batch=save, progress=self.progress)  # fmt: skip
        return [from_checkpoint_row(done[r.id]) for r in records]


def evaluate_records(
    predictor: LocalPredictor, records: Sequence[Record], *, out_dir: Path, name: str
) -> tuple[dict, dict]:
    """Generate and score one split with a local model (task=train, before and after training).

    With sharded weights every rank generates along (see ocrft.models.sharding); rank 0
    alone scores and writes, the others return empty results.
    """
    from ocrft.distributed import world
    from ocrft.evaluation.scoring import score_outputs

    outputs = predictor.predict(records)
    if not world().is_main:
        return {}, {}
    return score_outputs(records, outputs, predictor.cfg.eval, model=predictor.describe(), out_dir=out_dir, name=name)


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


def checkpoint_row(record: Record, output: Generation, fingerprint: str) -> dict:
    """One generated sample as the eval checkpoint stores it."""
    return {"id": record.id, "image_path": record.image, "label": record.text, "prediction": output.text,
            "looped": output.looped, "mean_logprob": output.mean_logprob, "min_logprob": output.min_logprob,
            "num_tokens": output.num_tokens, "ended": output.ended, "attempts": output.attempts,
            "fingerprint": fingerprint}  # fmt: skip


def from_checkpoint_row(row: dict) -> Generation:
    return Generation(row["prediction"], looped=bool(row.get("looped")), mean_logprob=row.get("mean_logprob", 0.0),
                      min_logprob=row.get("min_logprob", 0.0), num_tokens=row.get("num_tokens", 0),
                      ended=row.get("ended", True), attempts=row.get("attempts", 1))  # fmt: skip
