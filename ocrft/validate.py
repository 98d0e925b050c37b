"""Checks a composed config before anything heavy runs; errors name the key at fault."""

from __future__ import annotations

from omegaconf import DictConfig

from ocrft.config import CER_UNITS, LEVELS, PREDICTION_MATCHES, ConfigError, Task


def validate_config(cfg: DictConfig) -> None:
    from ocrft.models.registry import FAMILIES

    tasks = [t.value for t in Task]
    if cfg.task not in tasks:
        raise ConfigError(f"task={cfg.task!r} is not a task; choose one of {tasks}")
    family = cfg.model.family
    if family not in ("endpoint", "predictions") and family not in FAMILIES:
        raise ConfigError(
            f"model.family={family!r} is unknown; known families: {sorted(FAMILIES)}, 'endpoint' or 'predictions'"
        )
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
    _choice("data.level", cfg.data.level, LEVELS)
    _choice("eval.cer_unit", cfg.eval.cer_unit, CER_UNITS)
    _choice("model.predictions_match", cfg.model.predictions_match, PREDICTION_MATCHES)
    if cfg.data.max_pixels < 1:
        raise ConfigError(f"data.max_pixels={cfg.data.max_pixels} must be >= 1")
    fraction = cfg.data.val_from_train
    if fraction is not None and not 0 < fraction < 1:
        raise ConfigError(f"data.val_from_train={fraction} must be a fraction between 0 and 1 (exclusive)")


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r}; choose one of {list(choices)}")
