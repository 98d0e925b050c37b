"""Batched greedy generation for local models: eval, predict, validation and serving.

Only the generated token ids and one log-probability per token are kept per batch, never
logits, so memory stays flat however large the evaluation set is. Every caller goes through
:class:`Generator`, so the loop guard (ocrft.evaluation.loop_guard) and its retries
(``eval.loop_guard.retries``: a looped or cut read is read again with sampling) apply to
eval, validation during training, predict, serve and the cascade alike.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional, Sequence

from ocrft.data.record import Record
from ocrft.models.collate import Collator, Sample

log = logging.getLogger(__name__)


@dataclass
class Generation:
    """One generated transcription.

    ``looped``: the loop guard stopped it (its text is cut where the repetition started;
    scored as degenerate). ``mean_logprob`` / ``min_logprob``: over its tokens, the end
    token included (natural log, <= 0; 0.0 with beam search, where none is recorded).
    ``ended``: it stopped at an end token (not cut by the loop guard or ``max_new_tokens``).
    ``attempts``: how many times it was generated (more than 1 after loop-guard retries).

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
    ended: bool = True
    attempts: int = 1
    error: Optional[str] = None
    meta: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)

    @property
    def ended_well(self) -> bool:
        """Ended at an end token and did not loop: what a retry tries to reach."""
        return self.ended and not self.looped


def better_attempt(kept: Generation, new: Generation) -> Generation:
    """The better-ended of two reads of one sample: one that ended at an end token without
    looping wins, then one that did not loop (cut by max_new_tokens: text, not a loop);
    between equals, the higher mean log-probability; ``kept`` on a tie."""

    def rank(g: Generation) -> tuple[bool, bool, float]:
        return g.ended_well, not g.looped, g.mean_logprob

    return new if rank(new) > rank(kept) else kept


class Generator:
    """Generates transcriptions for (image, prompt) pairs with one loaded model.

    Args:
        loop_guard: ``(ngram, max_repeats)`` of the loop guard, or None for none.
        retries: a sample the loop guard stopped, or that ``max_new_tokens`` cut before an
            end token, is generated again up to this many times, sampling at
            ``retry_temperature``; the better-ended attempt is kept (:func:`better_attempt`).
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
        retries: int = 0,
        retry_temperature: float = 0.8,
    ):
        self.model = model
        self.processor = processor
        self.family = family
        self.collator = Collator(processor, family, system=system)
        self.max_new_tokens = max_new_tokens
        self.loop_guard = loop_guard
        self.retries = retries
        self.retry_temperature = retry_temperature
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
        """Transcribe one batch; one :class:`Generation` (text, loop flag, confidence) per image.

        With ``retries``, the rows that did not end well are generated again, those rows
        only, with sampling (greedy decoding would repeat the same read), until each ended
        well or its retries are spent.
        """
        from ocrft.models.sharding import is_sharded

        results = self._generate_once(images, prompts, max_new_tokens)
        # Sharded weights (FSDP) need every rank in every generate call; ranks' rows differ
        # in what they would retry, so retries are left to unsharded models.
        retries = 0 if is_sharded(self.model) else self.retries
        for attempt in range(2, retries + 2):
            redo = [i for i, g in enumerate(results) if not g.ended_well]
            if not redo:
                break
            again = self._generate_once([images[i] for i in redo], [prompts[i] for i in redo], max_new_tokens,
                                        seed=attempt)  # fmt: skip
            for i, new in zip(redo, again):
                results[i] = replace(better_attempt(results[i], new), attempts=attempt)
            log.info("loop guard: retry %d read %d of %d samples again, %d now ended well", attempt - 1, len(redo),
                     len(results), sum(results[i].ended_well for i in redo))  # fmt: skip
        return results

    def sample(self, images: Sequence[Any], prompts: Sequence[str], *, seed: int, temperature: float) -> list[Generation]:
        """One sampled read of each image, from the seeded stream ``seed`` (task=predict's
        ``predict.samples``: how much repeated readings of a line disagree)."""
        return self._generate_once(images, prompts, None, seed=seed, temperature=temperature)

    def _generate_once(
        self, images: Sequence[Any], prompts: Sequence[str], max_new_tokens: Optional[int], seed: Optional[int] = None,
        temperature: Optional[float] = None,
    ) -> list[Generation]:
        """One generate call over the batch: greedy, or with ``seed`` sampled at ``temperature``
        (default ``retry_temperature``)."""
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList, TemperatureLogitsWarper

        from ocrft.evaluation.confidence import LogprobRecorder, SampledLogprobRecorder, summarize
        from ocrft.evaluation.loop_guard import LoopGuard
        from ocrft.models.sharding import is_sharded, whole_weights

        samples = [Sample(image=img, prompt=p) for img, p in zip(images, prompts)]
        batch = self.collator(samples, padding_side="left")
        device = next(self.model.parameters()).device
        batch = {k: v.to(device) for k, v in batch.items()}
        prompt_length = batch["input_ids"].shape[1]
        guard = LoopGuard(prompt_length, *self.loop_guard, self.eos_ids) if self.loop_guard else None
        recorder = LogprobRecorder() if self.num_beams == 1 else None
        processors, options = [recorder] if recorder else [], self.generate_kwargs
        if seed is not None:
            # The recorder comes before the temperature, so a sampled read's log-probabilities
            # are under the model's own distribution, comparable with the greedy read's. top_k
            # and top_p are cleared: a checkpoint's generation_config may set them (Qwen2-VL's
            # top_k=1 would make sampling greedy again).
            recorder = SampledLogprobRecorder()
            processors = [recorder, TemperatureLogitsWarper(temperature or self.retry_temperature)]
            options = {**options, "do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0}
        was_training = self.model.training
        self.model.eval()
        try:
            # Sharded weights (FSDP): every rank runs this call, and a rank whose rows ended
            # keeps stepping (synced_gpus) so that each forward's collectives still match.
            # no_grad, not inference_mode: FSDP would leave inference tensors in the shards,
            # which the next optimizer step may not update in place.
            sharded = is_sharded(self.model)
            # a sampled retry draws from its own seeded stream: the caller's random state (a
            # training run's, validated mid-way) is left as it was, and a re-run reads alike
            rng = torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], enabled=seed is not None)
            with rng, whole_weights(self.model), (torch.no_grad() if sharded else torch.inference_mode()):
                if seed is not None:
                    torch.manual_seed(seed)
                out = self.model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens or self.max_new_tokens,
                    eos_token_id=self.eos_ids,
                    pad_token_id=self.pad_id,
                    synced_gpus=sharded,
                    logits_processor=LogitsProcessorList(processors),
                    stopping_criteria=StoppingCriteriaList([guard] if guard else []),
                    **options,
                )
        finally:
            self.model.train(was_training)
        if isinstance(recorder, SampledLogprobRecorder):
            recorder.finish(out[:, -1])
        cuts = guard.cuts if guard else {}
        results = []
        for row, tokens in enumerate(out[:, prompt_length:].tolist()):
            end = self._end(tokens)
            length = cuts.get(row, end or len(tokens))
            text = self.processor.tokenizer.decode(tokens[:length], skip_special_tokens=True).strip()
            mean, low = summarize(recorder.row(row, length)) if recorder else (0.0, 0.0)
            ended = row not in cuts and end is not None
            results.append(Generation(text, looped=row in cuts, mean_logprob=mean, min_logprob=low, num_tokens=length,
                                      ended=ended))  # fmt: skip
        if cuts:
            log.info("loop guard: stopped %d of %d samples of this batch", len(cuts), len(results))
        return results

    def _end(self, tokens: list[int]) -> Optional[int]:
        """Generated tokens up to and including the first end token; None when there is none."""
        ends = set(self.eos_ids)
        return next((i + 1 for i, t in enumerate(tokens) if t in ends), None)

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
        retries=cfg.eval.loop_guard.retries,
        retry_temperature=cfg.eval.loop_guard.retry_temperature,
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
