"""Length-grouped batches in random order (ocrft.training.sampling)."""

from __future__ import annotations

import random
import statistics

import torch

from ocrft.training.sampling import ShuffledLengthGroupedSampler, shuffled_length_grouped_indices


def _lengths(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(4, 60) for _ in range(n)]


def _batches(indices: list[int], size: int) -> list[list[int]]:
    return [indices[i : i + size] for i in range(0, len(indices), size)]


def test_same_batches_as_transformers_but_not_longest_to_shortest():
    from transformers.trainer_pt_utils import get_length_grouped_indices

    lengths, size = _lengths(4800), 16
    theirs = get_length_grouped_indices(lengths, size, generator=torch.Generator().manual_seed(1))
    ours = shuffled_length_grouped_indices(lengths, size, generator=torch.Generator().manual_seed(1))
    assert sorted(ours) == list(range(len(lengths)))  # every sample once
    # the very same batches (so the same padding), the longest one still first
    assert sorted(map(sorted, _batches(ours, size))) == sorted(map(sorted, _batches(theirs, size)))
    assert ours[:size] == theirs[:size] and max(lengths) in [lengths[i] for i in ours[:size]]

    # transformers': within each mega-batch of 50 batches, mean length falls step after step;
    # ours: no trend (the order of steps says nothing about line length)
    def trend(indices):
        means = [statistics.mean(lengths[i] for i in b) for b in _batches(indices, size)]
        steps = list(range(len(means)))
        return statistics.correlation([s % 50 for s in steps[1:]], means[1:])

    assert trend(theirs) < -0.8
    assert abs(trend(ours)) < 0.2


def test_a_partial_last_batch_stays_last():
    lengths, size = _lengths(100, seed=3), 16  # 6 full batches and 4 left over
    ours = shuffled_length_grouped_indices(lengths, size, generator=torch.Generator().manual_seed(2))
    from transformers.trainer_pt_utils import get_length_grouped_indices

    theirs = get_length_grouped_indices(lengths, size, generator=torch.Generator().manual_seed(2))
    assert sorted(ours[-4:]) == sorted(theirs[-4:])
    assert sorted(map(sorted, _batches(ours[:-4], size))) == sorted(map(sorted, _batches(theirs[:-4], size)))


def test_sampler_follows_the_seeded_global_rng_so_a_resumed_run_replays_its_order():
    sampler = ShuffledLengthGroupedSampler(_lengths(640), 16)
    torch.manual_seed(7)
    first = list(sampler)
    torch.manual_seed(7)
    assert list(sampler) == first and len(sampler) == 640
    assert list(sampler) != first  # a new pass (epoch) draws a new order
