"""Typed config -> library objects (LoraConfig, BitsAndBytesConfig, SFTConfig, GRPOConfig). Nothing else
turns configs into library calls, so model and data code receive plain arguments."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from ocrft.distributed import on_cuda

log = logging.getLogger(__name__)


def build_bnb_config(quant, dtype: str = "auto"):
    """BitsAndBytesConfig for quant=4bit/8bit, or None for quant=none."""
    if not (quant.load_in_4bit or quant.load_in_8bit):
        return None
    from transformers import BitsAndBytesConfig

    from ocrft.models.loading import torch_dtype

    compute = torch_dtype(dtype if quant.bnb_4bit_compute_dtype == "auto" else quant.bnb_4bit_compute_dtype)
    return BitsAndBytesConfig(
        load_in_4bit=quant.load_in_4bit,
        load_in_8bit=quant.load_in_8bit,
        bnb_4bit_quant_type=quant.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=quant.bnb_4bit_use_double_quant,
        bnb_4bit_compute_dtype=compute,
    )


def lora_targets(peft_cfg, family) -> str | list[str]:
    """PEFT target_modules: the family's language-model layers unless the config names some.

    With ``freeze_vision`` the names are confined to the language model (SigLIP towers use
    the same q_proj/k_proj names); without it, every linear layer gets an adapter.
    """
    if peft_cfg.target_modules:
        names = list(peft_cfg.target_modules)
        if not peft_cfg.freeze_vision:
            return names
        return rf".*language_model.*\.({'|'.join(names)})"
    return family.default_lora_targets if peft_cfg.freeze_vision else "all-linear"


def build_peft_config(peft_cfg, family):
    """LoraConfig for peft=lora/dora, None for peft=none."""
    if peft_cfg.method == "none":
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=peft_cfg.r,
        lora_alpha=peft_cfg.lora_alpha,
        lora_dropout=peft_cfg.lora_dropout,
        target_modules=lora_targets(peft_cfg, family),
        use_dora=peft_cfg.method == "dora",
        task_type="CAUSAL_LM",
    )


def _trainer_args(train, seed: int, output_dir: Path) -> dict:
    """The TrainingArguments keys SFT and GRPO share. bf16 and gradient checkpointing follow
    the device unless set: TRL turns both on by default, which fails or crawls on CPU."""
    cuda = on_cuda()
    return dict(
        output_dir=str(output_dir),
        learning_rate=train.learning_rate,
        num_train_epochs=train.num_train_epochs,
        max_steps=train.max_steps,
        per_device_train_batch_size=train.per_device_train_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        lr_scheduler_type=train.lr_scheduler_type,
        warmup_steps=train.warmup_steps,
        weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm,
        optim=train.optim,
        logging_steps=train.logging_steps,
        save_strategy="steps",
        save_steps=train.save_steps,
        save_total_limit=train.save_total_limit,
        seed=seed,
        bf16=cuda if train.bf16 is None else train.bf16,
        # transformers 5's name; gradient_checkpointing warns
        activation_checkpointing=cuda if train.gradient_checkpointing is None else train.gradient_checkpointing,
        use_cpu=not cuda,
        dataloader_num_workers=train.dataloader_num_workers,
        report_to="none",  # ocrft's own tracker logs; no double logging
        remove_unused_columns=False,  # the collator (SFT) and the rewards (GRPO) need every column
    )


def build_sft_config(train, seed: int, output_dir: Path, max_length: Optional[int], world_size: int = 1):
    """SFTConfig from TrainConfig."""
    from trl import SFTConfig

    return SFTConfig(
        **_trainer_args(train, seed, output_dir),
        train_sampling_strategy=train.train_sampling_strategy,
        max_length=max_length,
        dataset_kwargs={"skip_prepare_dataset": True},
        ddp_find_unused_parameters=False if world_size > 1 else None,
    )


def build_grpo_config(train, seed: int, output_dir: Path, *, reward_weights: list[float], suppress_tokens: list[int]):
    """GRPOConfig from GrpoTrainConfig (train=grpo); ``reward_weights`` in the order of the
    reward functions (ocrft.training.rewards.build_rewards), ``suppress_tokens`` never sampled."""
    from trl import GRPOConfig

    return GRPOConfig(
        **_trainer_args(train, seed, output_dir),
        num_generations=train.num_generations,
        max_completion_length=train.max_completion_length,
        temperature=train.temperature,
        top_p=train.top_p,
        beta=train.beta,
        loss_type=train.loss_type,
        scale_rewards=train.scale_rewards,
        num_iterations=train.num_iterations,
        epsilon=train.epsilon,
        mask_truncated_completions=train.mask_truncated_completions,
        reward_weights=reward_weights,
        generation_kwargs={"suppress_tokens": suppress_tokens},
    )
