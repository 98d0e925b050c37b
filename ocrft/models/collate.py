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
    """A sample does not fit in train.max_length. Training checks every sample before it starts
    (ocrft.training.token_lengths); this is the collator's backstop, never a silent cut."""


@dataclass
class Sample:
    image: Any  # PIL image
    prompt: str  # the instruction (already chosen: per-sample or the run's prompt)
    target: Optional[str] = None  # None at generation time
    id: Optional[str] = None  # the record's id, named when the sample does not fit


class Collator:
    """Builds padded batches for training (right padding, labels) or generation (left padding)."""

    def __init__(self, processor, family, system: Optional[str] = None, max_length: Optional[int] = None):
        self.processor = processor
        self.family = family
        self.system = system
        self.max_length = max_length
        self.pad_id = processor.tokenizer.pad_token_id
        self.suffix = family.target_suffix(processor)

    def encode_prompts(self, samples: Sequence[Sample]) -> tuple[list[dict], dict]:
        """The prompts of a batch in one processor call (a call per sample costs as much as
        the padding that length grouping saves on short lines: experiments/train_throughput).

        Returns each sample's unpadded per-token tensors, shape (1, n), and the per-image
        tensors (pixel values, grids) of the whole batch in sample order.
        """
        texts = [self.family.format_prompt(self.processor, s.prompt, self.system) for s in samples]
        enc = self.processor(
            text=texts, images=[[s.image] for s in samples], return_tensors="pt", padding=True, add_special_tokens=False
        )
        enc.pop("labels", None)
        real = enc["attention_mask"].bool()  # the prompt's own tokens, whichever side the processor padded
        rows = [{k: enc[k][i][real[i]].unsqueeze(0) for k in SEQUENCE_KEYS if k in enc} for i in range(len(texts))]
        return rows, {k: v for k, v in enc.items() if k not in SEQUENCE_KEYS}

    def check_length(self, row: dict) -> int:
        """The prompt's length in tokens; an error naming the key when it leaves no room."""
        n_prompt = row["input_ids"].shape[1]
        if self.max_length and n_prompt >= self.max_length:
            raise SequenceTooLongError(
                f"the prompt with its image tokens is {n_prompt} tokens, but train.max_length={self.max_length}: "
                f"raise train.max_length or lower model.max_pixels"
            )
        return n_prompt

    def add_target(self, row: dict, target: str, sample_id: Optional[str] = None) -> dict:
        """Append the target's tokens to one prompt's tensors, with labels on them only."""
        import torch

        n_prompt = self.check_length(row)
        ids = self.processor.tokenizer(target + self.suffix, add_special_tokens=False)["input_ids"]
        if self.max_length and n_prompt + len(ids) > self.max_length:
            # Cutting the target would teach the model to stop mid-line; cutting image tokens
            # breaks the forward ("number of images does not match"). Neither happens silently.
            raise SequenceTooLongError(
                f"sample {sample_id!r} is {n_prompt + len(ids)} tokens ({n_prompt} prompt and image, {len(ids)} "
                f"target), but train.max_length={self.max_length}: raise train.max_length, lower model.max_pixels, "
                "or set data.on_error=skip (samples are checked before training starts)"
            )
        tokens = torch.tensor([ids], dtype=row["input_ids"].dtype)
        fill = {
            "input_ids": tokens,
            "attention_mask": torch.ones_like(tokens),
            "token_type_ids": torch.full_like(tokens, self.family.suffix_token_type),
            "mm_token_type_ids": torch.zeros_like(tokens),
        }
        out = {key: torch.cat([row[key], fill[key]], dim=1) for key in row}
        out["labels"] = torch.cat([torch.full((1, n_prompt), -100, dtype=tokens.dtype), tokens], dim=1)
        return out

    def __call__(self, samples: Sequence[Sample], padding_side: Optional[str] = None) -> dict:
        """A padded batch: right-padded with labels when the samples have targets (training),
        left-padded without (generation continues from every row's last token)."""
        training = bool(samples) and samples[0].target is not None
        side = padding_side or ("right" if training else "left")
        rows, images = self.encode_prompts(samples)
        if training:
            rows = [self.add_target(row, s.target, s.id) for row, s in zip(rows, samples)]
        else:
            for row in rows:
                self.check_length(row)
        return {**pad_rows(rows, self.pad_id, side), **images}


def pad_rows(rows: list[dict], pad_id: int, side: str) -> dict:
    """Pad each per-token tensor to the longest row and stack the rows."""
    import torch

    width = max(r["input_ids"].shape[1] for r in rows)
    pad_values = {"input_ids": pad_id, "labels": -100}
    batch: dict[str, Any] = {}
    for key in rows[0]:
        padded = []
        for r in rows:
            t = r[key]
            pad = torch.full((1, width - t.shape[1]), pad_values.get(key, 0), dtype=t.dtype)
            padded.append(torch.cat([t, pad] if side == "right" else [pad, t], dim=1))
        batch[key] = torch.cat(padded, dim=0)
    return batch
