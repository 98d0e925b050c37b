"""Turn (image, prompt, target) samples into model inputs, the same way for every family.

The processor lays out the prompt with its image tokens; the target's tokens are appended
after it. Labels are -100 on the prompt, so the loss falls on the target tokens only, and
no image is processed twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

# Per-token keys a processor may return; everything else (pixel values, grids) is per image.
SEQUENCE_KEYS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids")


class SequenceTooLongError(ValueError):
    """The prompt with its image tokens does not fit in train.max_length."""


@dataclass
class Sample:
    image: Any  # PIL image
    prompt: str  # the instruction (already chosen: per-sample or the run's prompt)
    target: Optional[str] = None  # None at generation time


class Collator:
    """Builds padded batches for training (right padding, labels) or generation (left padding)."""

    def __init__(self, processor, family, system: Optional[str] = None, max_length: Optional[int] = None):
        self.processor = processor
        self.family = family
        self.system = system
        self.max_length = max_length
        self.pad_id = processor.tokenizer.pad_token_id
        self.suffix = family.target_suffix(processor)

    def encode_prompt(self, sample: Sample) -> dict:
        text = self.family.format_prompt(self.processor, sample.prompt, self.system)
        enc = self.processor(text=[text], images=[sample.image], return_tensors="pt", add_special_tokens=False)
        enc.pop("labels", None)
        return dict(enc)

    def encode(self, sample: Sample) -> dict:
        """One sample's tensors: the prompt, then the target tokens if there is a target."""
        import torch

        enc = self.encode_prompt(sample)
        n_prompt = enc["input_ids"].shape[1]
        if self.max_length and n_prompt >= self.max_length:
            raise SequenceTooLongError(
                f"the prompt with its image tokens is {n_prompt} tokens, but train.max_length={self.max_length}: "
                f"raise train.max_length or lower model.max_pixels"
            )
        if sample.target is None:
            return enc
        ids = self.processor.tokenizer(sample.target + self.suffix, add_special_tokens=False)["input_ids"]
        if self.max_length:
            ids = ids[: self.max_length - n_prompt]  # truncate the target, never the image tokens
        target = torch.tensor([ids], dtype=enc["input_ids"].dtype)
        fill = {
            "input_ids": target,
            "attention_mask": torch.ones_like(target),
            "token_type_ids": torch.full_like(target, self.family.suffix_token_type),
            "mm_token_type_ids": torch.zeros_like(target),
        }
        for key in SEQUENCE_KEYS:
            if key in enc:
                enc[key] = torch.cat([enc[key], fill[key]], dim=1)
        enc["labels"] = torch.cat([torch.full((1, n_prompt), -100, dtype=target.dtype), target], dim=1)
        return enc

    def __call__(self, samples: Sequence[Sample], padding_side: Optional[str] = None) -> dict:
        side = padding_side or ("right" if samples and samples[0].target is not None else "left")
        return pad_batch([self.encode(s) for s in samples], self.pad_id, side)


def pad_batch(encodings: list[dict], pad_id: int, side: str) -> dict:
    """Pad per-token tensors to the longest sample; concatenate per-image tensors."""
    import torch

    width = max(e["input_ids"].shape[1] for e in encodings)
    pad_values = {"input_ids": pad_id, "labels": -100}
    batch: dict[str, Any] = {}
    for key in encodings[0]:
        tensors = [e[key] for e in encodings]
        if key in SEQUENCE_KEYS or key == "labels":
            rows = []
            for t in tensors:
                pad = torch.full((1, width - t.shape[1]), pad_values.get(key, 0), dtype=t.dtype)
                rows.append(torch.cat([t, pad] if side == "right" else [pad, t], dim=1))
            batch[key] = torch.cat(rows, dim=0)
        else:
            batch[key] = torch.cat(tensors, dim=0)
    return batch
