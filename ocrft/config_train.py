"""The ``train`` group's schemas: SFT (``TrainConfig``, train=default) and GRPO
(``GrpoTrainConfig``, train=grpo). Keys are the transformers/TRL keyword they feed
(TrainingArguments, SFTConfig, GRPOConfig); ``from ocrft.config import TrainConfig`` works as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import II

TRAIN_METHODS = ("sft", "grpo")  # train.method: chosen by the train group (train=default, train=grpo)
# train=grpo: TRL GRPOConfig's loss_type and scale_rewards values that ocrft runs. luspo and vespo
# need importance_sampling_level=sequence, which ocrft does not expose.
GRPO_LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo")
GRPO_SCALE_REWARDS = ("group", "batch", "none")


@dataclass
class TrainConfig:
    method: str = "sft"  # one of TRAIN_METHODS; train=grpo sets grpo
    learning_rate: float = 2e-4
    num_train_epochs: float = 1.0
    max_steps: int = -1
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    lr_scheduler_type: str = "cosine"
    warmup_steps: float = 0.03  # steps, or a ratio of all steps when < 1 (transformers v5)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    optim: str = "adamw_torch"
    max_length: Optional[int] = 2048
    logging_steps: int = 10
    save_steps: int = 100
    save_total_limit: int = 2
    # None = decide from the device: bf16 and gradient checkpointing on CUDA, off on CPU.
    bf16: Optional[bool] = None
    gradient_checkpointing: Optional[bool] = None
    train_sampling_strategy: str = "group_by_length"  # batches of similar length: less padding
    dataloader_num_workers: int = 0
    resume: bool = True  # continue from the last checkpoint found in run_dir
    # stop after this many seconds of training (then validate, keep the best, save and score as
    # at max_steps); None = no limit. Counted per invocation: a resumed run gets it anew.
    max_seconds: Optional[float] = None


@dataclass
class RewardWeights:
    """train.rewards: each reward of ocrft.training.rewards.REWARDS and its weight (TRL's
    ``reward_weights``); 0 turns a reward off. One typed key per reward, so that
    ``train.rewards.eos=0.2`` works and a misspelt name fails when the config is composed."""

    cer: float = 1.0  # 1 - the sample's CER, clipped to [0, 1]
    exact: float = 0.0  # 1 when the normalized read equals the target
    char_f1: float = 0.0  # character F1
    eos: float = 0.0  # 1 when the read ended with the end token, 0 when max_completion_length cut it
    loop: float = 0.0  # -1 when the loop guard (eval.loop_guard) would have stopped the read
    json_fields: float = 0.0  # field F1 of JSON targets


@dataclass
class GrpoTrainConfig(TrainConfig):
    """train=grpo: GRPO with TRL's GRPOTrainer; each key but ``rewards`` and
    ``completions_table_steps`` (ocrft's) is the GRPOConfig keyword of the same name.
    ``per_device_train_batch_size`` counts completions: it holds
    ``per_device_train_batch_size / num_generations`` prompts."""

    method: str = "grpo"
    num_generations: int = 4  # completions sampled per prompt; their rewards are compared with each other
    max_completion_length: int = II("eval.max_new_tokens")  # the cap validation and eval generate under
    temperature: float = 1.0
    top_p: float = 1.0
    beta: float = 0.0  # KL to the starting weights; 0 = no reference forward (olmOCR 2 used 0.01)
    loss_type: str = "dapo"  # one of GRPO_LOSS_TYPES
    scale_rewards: str = "group"  # one of GRPO_SCALE_REWARDS
    num_iterations: int = 1
    epsilon: float = 0.2
    mask_truncated_completions: bool = False
    # every N steps that step's sampled reads (line id, target, read, each reward) go to MLflow
    # as the table grpo_reads/step_<N>.json; 0 = never
    completions_table_steps: int = 0
    rewards: RewardWeights = field(default_factory=RewardWeights)
