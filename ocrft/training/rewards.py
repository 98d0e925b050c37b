"""GRPO rewards (train=grpo) from ocrft's own scoring: one definition of CER for evaluation,
validation and training (ocrft.evaluation.metrics.score_sample under ``eval.normalization``
and ``eval.cer_unit``), and the loop guard's own detector (ocrft.evaluation.loop_guard).

Each reward is a plain function that TRL's GRPOTrainer calls once per batch of completions,
with the dataset's columns as keyword arguments (``text`` is the target) and the run's
:class:`RewardSettings` bound by :func:`build_rewards`. TRL names a reward after its function
(``rewards/cer/mean`` in its logs), so the function names are the ``train.rewards`` keys.

    rewards = build_rewards(weights={"cer": 1.0, "eos": 0.2}, settings=settings)
    GRPOTrainer(..., reward_funcs=rewards.funcs, args=GRPOConfig(reward_weights=rewards.weights))
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Mapping, Sequence

from ocrft.evaluation.loop_guard import loop_start
from ocrft.evaluation.metrics import MetricSettings, score_sample
from ocrft.evaluation.normalize import normalization_dict


@dataclass(frozen=True)
class RewardSettings:
    """What the rewards need besides the completions: how text is scored, which tokens end a
    read, and the loop guard's ``(ngram, max_repeats)``."""

    normalization: Mapping[str, bool]  # eval.normalization, as ocrft.evaluation.normalize.normalization_dict
    metrics: MetricSettings  # eval.cer_unit and the rest, as evaluation scores
    end_ids: frozenset[int]  # the generator's end tokens (ocrft.evaluation.generation.Generator.eos_ids)
    loop_guard: tuple[int, int] = (32, 12)  # eval.loop_guard.ngram, eval.loop_guard.max_repeats

    @classmethod
    def from_eval(cls, eval_cfg: Any, end_ids: Sequence[int]) -> "RewardSettings":
        """The settings of an ``eval`` config section (dataclass or DictConfig)."""
        guard = eval_cfg.loop_guard
        return cls(normalization=normalization_dict(eval_cfg.normalization), metrics=MetricSettings.from_eval(eval_cfg),
                   end_ids=frozenset(end_ids), loop_guard=(guard.ngram, guard.max_repeats))  # fmt: skip


def completion_text(completion: Any) -> str:
    """The text of one TRL completion: a string, or (conversational prompts, which images
    need) a list holding one assistant message. Stripped, as ocrft's generator strips a read."""
    text = completion if isinstance(completion, str) else completion[-1]["content"]
    return text.strip()


def _scores(completions: Sequence[Any], text: Sequence[str], settings: RewardSettings, json_target: bool = False):
    for completion, target in zip(completions, text, strict=True):
        yield score_sample(completion_text(completion), target, normalization=settings.normalization,
                           json_target=json_target, settings=settings.metrics)  # fmt: skip


def cer(completions: Sequence[Any], text: Sequence[str], settings: RewardSettings, **_: Any) -> list[float]:
    """1 - the sample's CER, clipped to [0, 1] (a read with more insertions than the target
    has characters scores 0, not below)."""
    return [min(1.0, max(0.0, 1.0 - s["cer"])) for s in _scores(completions, text, settings)]


def exact(completions: Sequence[Any], text: Sequence[str], settings: RewardSettings, **_: Any) -> list[float]:
    """1 when the normalized read equals the normalized target, else 0."""
    return [float(s["exact_match"]) for s in _scores(completions, text, settings)]


def char_f1(completions: Sequence[Any], text: Sequence[str], settings: RewardSettings, **_: Any) -> list[float]:
    """Character F1 of the read against the target (multiset overlap, as the char_f1 metric)."""
    return [s["f1"] for s in _scores(completions, text, settings)]


def json_fields(completions: Sequence[Any], text: Sequence[str], settings: RewardSettings, **_: Any) -> list[float]:
    """Field F1 over flattened JSON key paths, as the json_field_f1 metric (0 when the read is
    not JSON)."""
    return [s["json_field_f1"] for s in _scores(completions, text, settings, json_target=True)]


def eos(completion_ids: Sequence[Sequence[int]], settings: RewardSettings, **_: Any) -> list[float]:
    """1 when the read ended with an end token, 0 when max_completion_length cut it (TRL
    keeps a completion's tokens up to and including its first end token)."""
    return [float(bool(ids) and ids[-1] in settings.end_ids) for ids in completion_ids]


def loop(completion_ids: Sequence[Sequence[int]], settings: RewardSettings, **_: Any) -> list[float]:
    """-1 when the loop guard would have stopped the read, else 0."""
    ngram, max_repeats = settings.loop_guard
    return [-1.0 if guard_stops(ids, ngram=ngram, max_repeats=max_repeats, end_ids=settings.end_ids) else 0.0
            for ids in completion_ids]  # fmt: skip


def guard_stops(tokens: Sequence[int], *, ngram: int, max_repeats: int, end_ids: frozenset[int]) -> bool:
    """Whether :class:`ocrft.evaluation.loop_guard.LoopGuard` stops ``tokens`` as it is generated:
    it looks at each new token's tail of ``ngram * max_repeats`` tokens until an end token."""
    window = ngram * max_repeats
    for n in range(1, len(tokens) + 1):
        if tokens[n - 1] in end_ids:
            return False
        if loop_start(tokens[max(0, n - window) : n], ngram, max_repeats) is not None:
            return True
    return False


# train.rewards keys -> reward functions (ocrft.config_train.RewardWeights has one field per key)
REWARDS: dict[str, Callable[..., list[float]]] = {
    "cer": cer,
    "exact": exact,
    "char_f1": char_f1,
    "eos": eos,
    "loop": loop,
    "json_fields": json_fields,
}


@dataclass
class Rewards:
    """The reward functions for GRPOTrainer's ``reward_funcs`` and their ``reward_weights``."""

    funcs: list[Callable[..., list[float]]]
    weights: list[float]

    @property
    def names(self) -> list[str]:
        return [f.func.__name__ for f in self.funcs]


def build_rewards(weights: Mapping[str, float], settings: RewardSettings) -> Rewards:
    """The rewards of nonzero weight in ``weights`` (train.rewards), settings bound.

    Raises:
        KeyError: a name that is not in REWARDS (the config schema makes this unreachable).
    """
    chosen = [(name, float(w)) for name, w in weights.items() if w]
    unknown = [name for name, _ in chosen if name not in REWARDS]
    if unknown:
        raise KeyError(f"unknown rewards {unknown}; known: {sorted(REWARDS)}")
    # partial keeps the function's __name__ reachable: TRL logs the reward under it
    return Rewards(funcs=[partial(REWARDS[name], settings=settings) for name, _ in chosen],
                   weights=[w for _, w in chosen])  # fmt: skip

