"""train=grpo's config: GRPOConfig's names, CPU-safe arguments, and every refusal at start naming its key."""

from __future__ import annotations

import pytest

from ocrft.config import ConfigError
from ocrft.validate import validate_config
from tests.helpers import compose

GRPO = ["train=grpo", "model=tiny_qwen2_vl"]


def test_grpo_keys_are_grpo_configs_and_feed_it(tmp_path):
    from ocrft.training.builders import build_grpo_config

    cfg = compose([*GRPO, "eval.max_new_tokens=24", "train.beta=0.01", "train.loss_type=dr_grpo", "train.top_p=0.9"])
    validate_config(cfg)
    assert cfg.train.method == "grpo" and compose([]).train.method == "sft"
    assert cfg.train.max_completion_length == 24  # the cap validation and evaluation generate under
    args = build_grpo_config(cfg.train, cfg.seed, tmp_path, reward_weights=[1.0, 0.2, 1.0], suppress_tokens=[7])
    assert (args.num_generations, args.max_completion_length, args.beta, args.loss_type, args.top_p) == (
        4, 24, 0.01, "dr_grpo", 0.9)
    assert args.reward_weights == [1.0, 0.2, 1.0] and args.generation_kwargs == {"suppress_tokens": [7]}
    # on CPU: no bf16, no gradient checkpointing (TRL's defaults would fail or crawl), nothing reported twice
    assert not args.bf16 and not args.activation_checkpointing and args.report_to == []
    # 8 completions per step = 2 lines x 4 reads
    assert args.generation_batch_size == cfg.train.per_device_train_batch_size == 8


def test_rewards_are_typed_weights():
    cfg = compose([*GRPO, "train.rewards.exact=0.5"])
    assert dict(cfg.train.rewards) == {"cer": 1.0, "exact": 0.5, "char_f1": 0.0, "eos": 0.2, "loop": 1.0,
                                       "json_fields": 0.0}  # fmt: skip
    with pytest.raises(Exception, match="cerr"):
        compose([*GRPO, "train.rewards.cerr=1"])  # a misspelt reward fails when the config is composed


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.num_generations=1"], r"^train\.num_generations=1: GRPO compares at least 2"),
        (["train.per_device_train_batch_size=6"], r"^train\.num_generations=4 does not divide the 6 completions"),
        (["train.loss_type=luspo"], r"^train\.loss_type='luspo'; choose one of"),
        (["train.scale_rewards=std"], r"^train\.scale_rewards='std'; choose one of"),
        (["train.temperature=0"], r"^train\.temperature=0\.0 must be > 0"),
        (["train.top_p=0"], r"^train\.top_p=0\.0 must be in \(0, 1\]"),
        (["train.beta=-0.1"], r"^train\.beta=-0\.1 must be >= 0"),
        (["train.epsilon=0"], r"^train\.epsilon=0\.0 must be > 0"),
        (["train.num_iterations=0"], r"^train\.num_iterations=0 must be >= 1"),
        (["train.max_completion_length=0"], r"^train\.max_completion_length=0 must be >= 1"),
        (["train.completions_table_steps=-1"], r"^train\.completions_table_steps=-1 must be >= 0"),
        (["train.rewards.cer=0", "train.rewards.eos=0", "train.rewards.loop=0"], r"^train\.rewards: every weight is 0"),
        (["train.method=ppo"], r"^train\.method='ppo'; choose one of \['sft', 'grpo'\]"),
    ],
)
def test_unsupported_values_are_refused_at_start_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(compose([*GRPO, *overrides]))


def test_demo_grpo_without_a_run_says_how_to_make_one():
    with pytest.raises(ConfigError, match=r"^model\.path is not set") as err:
        validate_config(compose(["+experiment=demo_grpo"]))
    assert "python -m ocrft +experiment=demo run_dir=outputs/demo" in str(err.value)
    validate_config(compose(["+experiment=demo_grpo", "model.path=outputs/demo"]))


def test_json_fields_reward_needs_json_targets():
    from ocrft.training.grpo import check_json_targets

    check_json_targets(1.0, ["plain", '{"total": "3"}'])
    check_json_targets(0.0, ["plain"])
    with pytest.raises(ConfigError, match=r"^train\.rewards\.json_fields=1\.0: no target of the train split is JSON"):
        check_json_targets(1.0, ["plain", "text"])


def test_grpo_reward_logs_get_ocrft_names():
    from ocrft.training.callbacks import hf_metric_name

    names = {k: hf_metric_name(k) for k in ("reward", "reward_std", "rewards/cer/mean", "rewards/cer/std",
                                            "completions/clipped_ratio", "frac_reward_zero_std", "loss")}  # fmt: skip
    assert names == {"reward": "train/reward", "reward_std": "train/reward_std", "rewards/cer/mean": "train/reward/cer",
                     "rewards/cer/std": "train/reward_std/cer", "loss": "train/loss",
                     "completions/clipped_ratio": "train/completions/clipped_ratio",
                     "frac_reward_zero_std": "train/frac_reward_zero_std"}  # fmt: skip
