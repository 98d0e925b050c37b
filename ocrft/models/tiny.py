"""What every family's tiny-checkpoint builder shares: sizes, seeding, saving."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional


def text_sizes(tokenizer, hidden_size: int, layers: int, heads: int) -> dict[str, Any]:
    """The language model's size keys (same names in every family's text config)."""
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=4096,
    )


def siglip_vision(width: int, image_size: int, patch_size: int) -> dict[str, Any]:
    """A two-layer SigLIP tower (Gemma 3 and PaliGemma share this vision architecture)."""
    return dict(
        hidden_size=width,
        intermediate_size=width * 2,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
    )


def instantiate(model_class, config, init: Optional[Callable[[Any], None]] = None):
    """Random weights, the same every time (tiny checkpoints are rebuilt, not downloaded).

    ``init(model)`` re-draws some weights after construction, from the same seeded stream.
    The global RNG is forked, not reseeded: a run that builds its tiny checkpoint on an empty
    cache must draw the same dropout masks and data order as one that finds it built.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = model_class(config)
        if init is not None:
            with torch.no_grad():
                init(model)
    return model


def save(model, processor, out_dir: Path, *, eos_token_id, pad_token_id: int) -> None:
    """Write a checkpoint that loads with ``from_pretrained`` like a real one."""
    model.generation_config.eos_token_id = eos_token_id
    model.generation_config.pad_token_id = pad_token_id
    # Under torchrun, save_pretrained writes config and weights on global rank 0 only, and the
    # processor on every rank: a rank-1 build published a processor-only folder. The cache
    # lock (ocrft/cache_entry.py) lets whichever process holds it build, so this one writes.
    model.should_save_on_this_rank = lambda is_main_process: True
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
