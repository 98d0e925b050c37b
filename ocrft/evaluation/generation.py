"""Batched greedy generation for local models: eval, predict, validation and serving.

Only the generated token ids are kept per batch, never logits, so memory stays flat
however large the evaluation set is.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Sequence

from ocrft.data.record import Record
from ocrft.models.collate import Collator, Sample

log = logging.getLogger(__name__)


class Generator:
    """Generates transcriptions for (image, prompt) pairs with one loaded model."""

    def __init__(
        self,
        model,
        processor,
        family,
        system: Optional[str] = None,
        max_new_tokens: int = 128,
        repetition_penalty: float = 1.0,
        num_beams: int = 1,
    ):
        self.model = model
        self.processor = processor
        self.family = family
        self.collator = Collator(processor, family, system=system)
        self.max_new_tokens = max_new_tokens
        self.generate_kwargs = dict(
            do_sample=False,
            num_beams=num_beams,
            repetition_penalty=repetition_penalty,
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
        import torch

        from ocrft.models.sharding import is_sharded, whole_weights

        samples = [Sample(image=img, prompt=p) for img, p in zip(images, prompts)]
        batch = self.collator(samples, padding_side="left")
        device = next(self.model.parameters()).device
        batch = {k: v.to(device) for k, v in batch.items()}
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
                    **self.generate_kwargs,
                )
        finally:
            self.model.train(was_training)
        new_tokens = out[:, batch["input_ids"].shape[1] :].cpu()
        texts = self.processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [t.strip() for t in texts]

    def count_tokens(self, text: str) -> int:
        return len(self.processor.tokenizer(text, add_special_tokens=False)["input_ids"])


def generate_all(
    generator: Generator,
    images: Sequence[Callable[[], Any]],
    prompts: Sequence[str],
    batch_size: int,
    on_batch: Optional[Callable[[list[int], list[str]], None]] = None,
) -> list[str]:
    """Generate for every sample in batches of similar size (less padding).

    ``images`` are loaders (called per batch, so only one batch of images is in memory);
    ``on_batch(indices, texts)`` sees each finished batch (progress, checkpoints).
    """
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: list[Optional[str]] = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        texts = generator.generate([images[i]() for i in idx], [prompts[i] for i in idx])
        for i, text in zip(idx, texts):
            results[i] = text
        if on_batch:
            on_batch(idx, texts)
    return [r or "" for r in results]


def build_generator(cfg, model=None, processor=None) -> Generator:
    """A Generator for ``cfg.model`` (loading it unless ``model``/``processor`` are given)."""
    from ocrft.models.loading import check_family, load_model, load_processor, resolve_model
    from ocrft.models.registry import get_family

    resolved = resolve_model(cfg.model.family, cfg.model.path)
    check_family(resolved, resolved.family)
    if processor is None:
        processor = load_processor(resolved, cfg.model.min_pixels, cfg.model.max_pixels)
    if model is None:
        model = load_model(
            resolved,
            dtype=cfg.model.dtype,
            attn_implementation=cfg.model.attn_implementation,
            trust_remote_code=cfg.model.trust_remote_code,
        )
    return Generator(
        model,
        processor,
        get_family(resolved.family),
        system=cfg.prompt.system,
        max_new_tokens=cfg.eval.max_new_tokens,
        repetition_penalty=cfg.eval.repetition_penalty,
        num_beams=cfg.eval.num_beams,
    )


def image_loaders(records: Sequence[Record]):
    """Per-record callables that open the image when its batch comes up."""
    from ocrft.data.images import open_image

    return [lambda path=r.image: open_image(path) for r in records]


def prompts_for(records: Sequence[Record], prompt: str, limit: Optional[int] = None) -> list[str]:
    return [r.prompt or prompt for r in records[:limit]]
