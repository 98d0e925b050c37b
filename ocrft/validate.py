"""Checks a composed config before anything heavy runs; errors name the key at fault."""

from __future__ import annotations

from omegaconf import DictConfig

from ocrft.config import Task


class ConfigError(ValueError):
    """A config value that composes but cannot work; the message names the key."""


def validate_config(cfg: DictConfig) -> None:
    from ocrft.models.registry import FAMILIES

    tasks = [t.value for t in Task]
    if cfg.task not in tasks:
        raise ConfigError(f"task={cfg.task!r} is not a task; choose one of {tasks}")
    family = cfg.model.family
    if family != "endpoint" and family not in FAMILIES:
        raise ConfigError(f"model.family={family!r} is unknown; known families: {sorted(FAMILIES)} or 'endpoint'")
    if cfg.quant.load_in_4bit and cfg.quant.load_in_8bit:
        raise ConfigError("quant.load_in_4bit and quant.load_in_8bit are both true; choose one (quant=4bit or quant=8bit)")
    if cfg.peft.method not in ("lora", "dora", "none"):
        raise ConfigError(f"peft.method={cfg.peft.method!r}; choose lora, dora or none")
    if (cfg.quant.load_in_4bit or cfg.quant.load_in_8bit) and cfg.peft.method == "none":
        raise ConfigError("quantized weights cannot be fully fine-tuned: use peft=lora (QLoRA) with quant=4bit/8bit")
    if cfg.train.max_steps == 0 or cfg.train.num_train_epochs <= 0:
        raise ConfigError("train.max_steps must be -1 (use epochs) or > 0, and train.num_train_epochs > 0")
    if cfg.eval.batch_size < 1 or cfg.eval.workers < 1:
        raise ConfigError("eval.batch_size and eval.workers must be >= 1")
