"""The description of one model family (see registry.FAMILIES for the table)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

# LoRA on the language model's linear layers only; the vision tower keeps its weights
# unless peft.freeze_vision=false.
LANGUAGE_LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@dataclass(frozen=True)
class ModelFamily:
    """How one architecture is loaded, prompted and trained.

    Attributes:
        name: registry key, also ``model.family`` in configs.
        model_class: transformers class name (imported lazily).
        load_processor: ``(path, min_pixels, max_pixels, image_size) -> processor``; the
            family uses the pixel budget (Qwen) or the fixed image size (Gemma 3, PaliGemma)
            and warns about the other.
        image_settings: ``(processor) -> {key: value}``: the pixel budget or image size the
            loaded processor actually uses (logged to MLflow as ``model.<key>``).
        image_token: the placeholder token the processor repeats once per image token.
        format_prompt: ``(processor, prompt, system) -> str``: the text given to the
            processor with one image; generation continues right after it.
        target_suffix: text appended after a target so the model learns to stop.
        suffix_token_type: ``token_type_ids`` value for target tokens (PaliGemma's prefix-LM
            marks the suffix with 1; the others use 0).
        vision_modules: name fragments of the vision tower and projector (frozen by
            ``peft.freeze_vision``; excluded from LoRA targets).
        default_lora_targets: PEFT ``target_modules`` (a regex over module names).
        generation_defaults: extra ``generate`` kwargs.
        chat_template: a chat template for a processor that ships none (PaliGemma), rendering
            what ``format_prompt`` writes; TRL's GRPOTrainer lays prompts out with it (train=grpo).
        build_tiny: ``(out_dir) -> None``: writes a tiny random checkpoint of this
            architecture, loadable with ``from_pretrained``.
    """

    name: str
    model_class: str
    load_processor: Callable[[str, int | None, int | None, int | None], Any]
    image_settings: Callable[[Any], dict[str, int]]
    image_token: str
    format_prompt: Callable[[Any, str, str | None], str]
    target_suffix: Callable[[Any], str]
    build_tiny: Callable[[Path], None]
    suffix_token_type: int = 0
    vision_modules: tuple[str, ...] = ("visual", "vision_tower", "multi_modal_projector")
    default_lora_targets: str = LANGUAGE_LORA_TARGETS
    generation_defaults: dict = field(default_factory=dict)
    chat_template: Optional[str] = None

