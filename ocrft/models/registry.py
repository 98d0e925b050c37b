"""The model-family registry: one explicit table, greppable, no import-time magic.

A family knows how to load its processor, how to phrase an (image, prompt) as the text the
processor expands image tokens in, what ends a target, which modules LoRA targets by
default and which form the vision tower. Shared code never branches on a family's name.
Family modules import nothing heavy at module level, so this import stays cheap.
"""

from __future__ import annotations

from ocrft.models import gemma3, paligemma, qwen_vl
from ocrft.models.family import ModelFamily

FAMILIES: dict[str, ModelFamily] = {
    "gemma3": gemma3.GEMMA3,
    "qwen2_vl": qwen_vl.QWEN2_VL,
    "qwen2_5_vl": qwen_vl.QWEN2_5_VL,
    "qwen3_vl": qwen_vl.QWEN3_VL,
    "paligemma": paligemma.PALIGEMMA,
}


def get_family(name: str) -> ModelFamily:
    if name not in FAMILIES:
        raise KeyError(f"unknown model family {name!r}; known families: {sorted(FAMILIES)}")
    return FAMILIES[name]
