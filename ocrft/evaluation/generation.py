"""Batched greedy generation for local models: eval, predict, validation and serving.

Only the generated token ids and one log-probability per token are kept per batch, never
logits, so memory stays flat however large the evaluation set is. Every caller goes through
:class:`Generator`, so the loop guard (ocrft.evaluation.loop_guard) applies to eval,
validation during training, predict, serve and the cascade alike.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from ocrft.data.record import Record
from ocrft.models.collate import Collator, Sample

log = logging.getLogger(__name__)


@dataclass
class Generation:
    """One generated transcription.

    ``looped``: the loop guard stopped it (its text is cut where the repetition started;
    scored as degenerate). ``mean_logprob`` / ``min_logprob``: over its greedy tokens, the end
    token included (natural log, <= 0; 0.0 with beam search, where none is recorded).

    Every :class:`ocrft.evaluation.predictor.Predictor` returns these, whatever its backend:
    ``error``: why the sample has no reading (an endpoint request that failed, an unreadable
    image; scored as empty and counted); ``meta``: per-sample facts the backend adds to the
    sample's results (a cascade's route and confidence); ``stats``: what the run's summary
    adds up (an endpoint's token usage, latency and retries), not written per sample.
    """

    text: str
    looped: bool = False
    mean_logprob: float = 0.0
    min_logprob: float = 0.0
    num_tokens: int = 0
    error: Optional[str] = None
    meta: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)


class Generator:
    """Generates transcriptions for (image, prompt) pairs with one loaded model.

    Args:
        loop_guard: ``(ngram, max_repeats)`` of the loop guard, or None for none.
    """

    def __init__(
        self,
        model,
        processor,
        family,
        *,
        system: Optional[str] = None,
        max_new_tokens: int = 128,
        repetition_penalty: float = 1.0,
        num_beams: int = 1,
        no_repeat_ngram_size: int = 0,
        loop_guard: Optional[tuple[int, int]] = None,
    ):
        self.model = model
        self.processor = processor
        self.family = family
        self.collator = Collator(processor, family, system=system)
        self.max_new_tokens = max_new_tokens
        self.loop_guard = loop_guard
        self.num_beams = num_beams
        self.generate_kwargs = dict(
            do_sample=False,
            num_beams=num_beams,
            repetition_penalty=repetition_penalty,
            no_repeat_ngram_size=no_repeat_ngram_size,
            **family.generation_defaults,
        )
        tokenizer = processor.tokenizer
        eos = model.generation_config.eos_token_id
        eos = list(eos) if isinstance(eos, (list, tuple)) else [eos] if eos is not None else []
        end_of_turn = tokenizer.convert_tokens_to_ids(self.collator.suffix)
        self.eos_ids = sorted({i for i in [*eos, end_of_turn, tokenizer.eos_token_id] if i is not None})
        self.pad_id = tokenizer.pad_token_id

    def generate(self, images: Sequence[Any], prompts: Sequence[str], max_new_tokens: Optional[int] = None) -> list[str]:
        """Transcribe one batch; returns one string per image."""
        return [g.text for g in self.generate_detailed(images, prompts, max_new_tokens)]

    def generate_detailed(
        self, images: Sequence[Any], prompts: Sequence[str], max_new_tokens: Optional[int] = None
    ) -> list[Generation]:
        """Transcribe one batch; one :class:`Generation` (text, loop flag, confidence) per image."""
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        from ocrft.evaluation.confidence import LogprobRecorder, summarize
        from ocrft.evaluation.loop_guard import LoopGuard
        from ocrft.models.sharding import is_sharded, whole_weights

        samples = [Sample(image=img, prompt=p) for img, p in zip(images, prompts)]
        batch = self.collator(samples, padding_side="left")
        device = next(self.model.parameters()).device
        batch = {k: v.to(device) for k, v in batch.items()}
        prompt_length = batch["input_ids"].shape[1]
        guard = LoopGuard(prompt_length, *self.loop_guard, self.eos_ids) if self.loop_guard else None
        recorder = LogprobRecorder() if self.num_beams == 1 else None
        was_training = self.model.training
        self.model.eval()
        try:
            # Sharded weights (FSDP): every rank runs this call, and a rank whose rows ended
            # keeps stepping (synced_gpus) so that each forward's collectives still match.
            # no_grad, not inference_mode: FSDP would leave inference tensors in the shards,
            # which the next optimizer step may not update in place.
            sharded = is_sharded(self.model)
            with whole_weights(self.model), (torch.no_grad() if sharded else torch.inference_mode()):
                out = self.model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens or self.max_new_tokens,
                    eos_token_id=self.eos_ids,
                    pad_token_id=self.pad_id,
                    synced_gpus=sharded,
                    logits_processor=LogitsProcessorList([recorder] if recorder else []),
                    stopping_criteria=StoppingCriteriaList([guard] if guard else []),
                    **self.generate_kwargs,
                )
        finally:
            self.model.train(was_training)
        cuts = guard.cuts if guard else {}
        results = []
        for row, tokens in enumerate(out[:, prompt_length:].tolist()):
            length = cuts.get(row, self._length(tokens))
            text = self.processor.tokenizer.decode(tokens[:length], skip_special_tokens=True).strip()
            mean, low = summarize(recorder.row(row, length)) if recorder else (0.0, 0.0)
            results.append(Generation(text, looped=row in cuts, mean_logprob=mean, min_logprob=low, num_tokens=length))
        if cuts:
            log.info("loop guard: stopped %d of %d samples of this batch", len(cuts), len(results))
        return results

    def _length(self, tokens: list[int]) -> int:
        """Generated tokens up to and including the first end token (all when there is none)."""
        ends = set(self.eos_ids)
        return next((i + 1 for i, t in enumerate(tokens) if t in ends), len(tokens))

    def count_tokens(self, text: str) -> int:
        return len(self.processor.tokenizer(text, add_special_tokens=False)["input_ids"])


def generate_all(
    read: Callable[[list, list[str]], list[Generation]],
    images: Sequence[Callable[[], Any]],
    prompts: Sequence[str],
    batch_size: int,
    *,
    on_batch: Optional[Callable[[list[int], list[Generation]], None]] = None,
) -> list[Generation]:
    """``read(images, prompts)`` (e.g. ``Generator.generate_detailed``) for every sample, in
    batches of similar prompt length (less padding).

    ``images`` are loaders (called per batch, so only one batch of images is in memory);
    ``on_batch(indices, outputs)`` sees each finished batch (progress, checkpoints).
    """
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: list = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        outputs = read([images[i]() for i in idx], [prompts[i] for i in idx])
        for i, output in zip(idx, outputs):
            results[i] = output
        if on_batch:
            on_batch(idx, outputs)
    return results


def build_generator(cfg, *, model=None, processor=None) -> Generator:
    """A Generator for ``cfg.model`` (loading it unless ``model``/``processor`` are given)."""
    from ocrft.models.bundle import load_bundle

    bundle = load_bundle(cfg.model, weights=model is None, processor=processor)
    return Generator(
        model if model is not None else bundle.model,
        bundle.processor,
        bundle.family,
        system=cfg.prompt.system,
        max_new_tokens=cfg.eval.max_new_tokens,
        repetition_penalty=cfg.eval.repetition_penalty,
        num_beams=cfg.eval.num_beams,
        no_repeat_ngram_size=cfg.eval.no_repeat_ngram_size,
        loop_guard=loop_guard_settings(cfg.eval),
    )


def loop_guard_settings(eval_cfg) -> Optional[tuple[int, int]]:
    """``(ngram, max_repeats)`` of ``eval.loop_guard``, or None when it is off."""
    guard = eval_cfg.loop_guard
    return (guard.ngram, guard.max_repeats) if guard.enabled else None


def image_loaders(records: Sequence[Record]):
    """Per-record callables that open the image when its batch comes up."""
    from ocrft.data.images import open_image

    return [lambda path=r.image: open_image(path) for r in records]


def prompts_for(records: Sequence[Record], prompt: str, limit: Optional[int] = None) -> list[str]:
    return [r.prompt or prompt for r in records[:limit]]
