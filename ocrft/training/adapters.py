"""LoRA/DoRA adapters on a loaded model, or a frozen vision tower for full fine-tuning."""

from __future__ import annotations

import logging

from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training

from ocrft.distributed import on_cuda
from ocrft.training.builders import build_peft_config

log = logging.getLogger(__name__)


def freeze_vision(model, family) -> int:
    """Freeze the vision tower and projector; returns how many parameters were frozen."""
    frozen = 0
    for name, param in model.named_parameters():
        if any(part in name for part in family.vision_modules):
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen


def apply_peft(model, peft_cfg, family, quantized: bool):
    """Wrap ``model`` with LoRA/DoRA (or prepare it for full fine-tuning)."""
    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=on_cuda())
    if isinstance(model, PeftModel):
        log.info("continuing training of the loaded adapter")
    elif peft_cfg.method == "none":
        if peft_cfg.freeze_vision:
            log.info("froze %d vision parameters", freeze_vision(model, family))
    else:
        model = get_peft_model(model, build_peft_config(peft_cfg, family))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.info("trainable parameters: %d of %d (%.2f%%)", trainable, total, 100 * trainable / max(total, 1))
    return model
