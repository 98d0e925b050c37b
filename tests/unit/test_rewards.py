"""The GRPO rewards (ocrft.training.rewards) against values computed by hand."""

from __future__ import annotations

import dataclasses

import pytest

from ocrft.config import EvalConfig, NormalizationConfig
from ocrft.config_train import RewardWeights
from ocrft.evaluation.metrics import MetricSettings
from ocrft.training.rewards import REWARDS, RewardSettings, build_rewards, char_f1, cer, eos, exact, json_fields, loop

END = 99  # the end token of these tests


def settings(cer_unit: str = "codepoint", loop_guard: tuple[int, int] = (2, 3), **normalization) -> RewardSettings:
    eval_cfg = EvalConfig(cer_unit=cer_unit, normalization=NormalizationConfig(**normalization))
    eval_cfg.loop_guard.ngram, eval_cfg.loop_guard.max_repeats = loop_guard
    return RewardSettings.from_eval(eval_cfg, end_ids=[END])


def chat(text: str) -> list[dict]:
    """A completion as TRL hands it over for conversational (image) prompts."""
    return [{"role": "assistant", "content": text}]


def test_cer_is_one_minus_the_sample_cer_clipped_to_0_1():
    s = settings()
    # hallo/hello: 1 edit in 5 characters -> 0.8; exact -> 1; 6 insertions on 2 characters (CER 3) -> 0, not -2
    assert cer(completions=["hallo", "hello", "xyzxyz"], text=["hello", "hello", "ab"], settings=s) == pytest.approx(
        [0.8, 1.0, 0.0])
    assert cer(completions=[""], text=["abcd"], settings=s) == [0.0]  # nothing read: 4 deletions in 4


def test_cer_follows_eval_normalization_and_cer_unit():
    # default normalization: NFC and whitespace collapse only; the read is stripped as the generator strips it
    assert cer(completions=[chat("  hello   world ")], text=["hello world"], settings=settings()) == [1.0]
    assert cer(completions=["Hello"], text=["hello"], settings=settings()) == pytest.approx([0.8])
    assert cer(completions=["Hello"], text=["hello"], settings=settings(lowercase=True)) == [1.0]
    # "aͤb" is 3 code points but 2 grapheme clusters; "ab" misses the combining e:
    # 1 edit / 3 code points -> 2/3; 1 substitution (aͤ -> a) / 2 clusters -> 1/2
    target = "a\u0364b"
    assert cer(completions=["ab"], text=[target], settings=settings()) == pytest.approx([2 / 3])
    assert cer(completions=["ab"], text=[target], settings=settings(cer_unit="grapheme")) == pytest.approx([0.5])


def test_exact_and_char_f1():
    s = settings()
    assert exact(completions=["abc", chat("abd"), " abc "], text=["abc", "abc", "abc"], settings=s) == [1.0, 0.0, 1.0]
    # abcd/abce: overlap 3 of 4 and 4 -> P = R = F1 = 0.75; ab/abcd: P = 1, R = 0.5 -> F1 = 2/3
    assert char_f1(completions=["abcd", "ab", ""], text=["abce", "abcd", ""], settings=s) == pytest.approx(
        [0.75, 2 / 3, 1.0])


def test_json_fields_is_the_field_f1_of_json_targets():
    s = settings()
    target = '{"a": "1", "b": "x"}'
    reads = ['{"a": "1", "b": "y"}', '```json\n{"b": "x", "a": "1"}\n```', "not json", '{"a": "1"}']
    # 1 of 2 fields right -> 0.5; fenced and reordered -> 1; not JSON -> 0; P = 1, R = 0.5 -> 2/3
    assert json_fields(completions=reads, text=[target] * 4, settings=s) == pytest.approx([0.5, 1.0, 0.0, 2 / 3])


def test_eos_is_one_when_the_read_ended_with_the_end_token():
    assert eos(completion_ids=[[5, 6, END], [5, 6, 7], []], settings=settings()) == [1.0, 0.0, 0.0]


def test_loop_is_minus_one_when_the_loop_guard_would_stop_the_read():
    s = settings(loop_guard=(2, 3))  # a unit of 1..2 tokens repeated 3 times
    reads = [
        [1, 2, 1, 2, 1, 2],  # (1 2) x 3
        [1, 2, 1, 2, 9],  # two copies only
        [7, 7, 7, 8, 9],  # the guard stops at the third 7, whatever comes after
        [5, END, 7, 7, 7],  # ended first: what follows the end token is not read
        [3, 4, 5, 3, 4, 5, 3, 4, 5],  # a 3-token unit is longer than ngram=2
    ]
    assert loop(completion_ids=reads, settings=s) == [-1.0, 0.0, -1.0, 0.0, 0.0]


def test_build_rewards_keeps_nonzero_weights_under_their_trl_names():
    from trl.trainer.utils import get_callable_name

    rewards = build_rewards({"cer": 1.0, "eos": 0.0, "loop": 0.5}, settings())
    assert rewards.names == ["cer", "loop"] and rewards.weights == [1.0, 0.5]
    assert [get_callable_name(f) for f in rewards.funcs] == ["cer", "loop"]  # TRL logs rewards/<name>/mean
    # TRL's call: prompts, completions, completion_ids and every dataset column as keywords
    out = [f(prompts=[None], completions=[chat("hallo")], completion_ids=[[1, 1, 1]], text=["hello"], image=[None])
           for f in rewards.funcs]
    assert out == [pytest.approx([0.8]), [-1.0]]
    with pytest.raises(KeyError, match="cerr"):
        build_rewards({"cerr": 1.0}, settings())


def test_every_reward_has_a_weight_key_and_settings_match_eval():
    assert list(REWARDS) == [f.name for f in dataclasses.fields(RewardWeights)]
    s = settings(cer_unit="grapheme")
    assert s.metrics == MetricSettings(cer_unit="grapheme") and s.end_ids == frozenset({END})


def test_loop_agrees_with_the_loop_guard_run_token_by_token():
    import random

    import torch

    from ocrft.evaluation.loop_guard import LoopGuard

    rng, s = random.Random(0), settings(loop_guard=(2, 3))
    for _ in range(300):
        tokens = rng.choices([1, 3, 4, END], weights=[5, 5, 2, 1], k=12)
        guard, stopped = LoopGuard(prompt_length=1, ngram=2, max_repeats=3, eos_ids=[END]), False
        for n in range(1, len(tokens) + 1):  # as generate calls it: once per new token
            if guard(torch.tensor([[0, *tokens[:n]]]))[0]:
                stopped = True
                break
        assert loop(completion_ids=[tokens], settings=s) == [-1.0 if stopped else 0.0], tokens
