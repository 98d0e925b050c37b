"""Seeded train/val/test splits that never put one group (page, image) in two splits."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Sequence

from ocrft.data.record import Record

SPLITS = ("train", "val", "test")


def split_records(
    records: Sequence[Record], train_ratio: float, val_ratio: float, seed: int
) -> dict[str, list[Record]]:
    """Split by group (``record.group or record.id``): shuffle groups with ``seed``, then
    fill train, val and test by the ratios (test takes the rest). Order inside a split
    follows the input order, so results are stable across runs."""
    if not (0 < train_ratio <= 1 and 0 <= val_ratio < 1 and train_ratio + val_ratio <= 1):
        raise ValueError(
            f"data.train_ratio={train_ratio} and data.val_ratio={val_ratio} must be in (0, 1] and sum to at most 1"
        )
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        groups[r.group or r.id].append(i)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    n = len(keys)
    n_train = round(n * train_ratio)
    n_val = round(n * val_ratio)
    if n >= 3 and val_ratio > 0 and n_val == 0:
        n_val = 1  # a tiny dataset still gets a validation group
    if n >= 3 and train_ratio + val_ratio < 1 and n_train + n_val >= n:
        n_train = n - n_val - 1  # ... and a test group
    assignment = {}
    for pos, key in enumerate(keys):
        assignment[key] = "train" if pos < n_train else "val" if pos < n_train + n_val else "test"
    out: dict[str, list[Record]] = {s: [] for s in SPLITS}
    for i, r in enumerate(records):
        out[assignment[r.group or r.id]].append(r)
    return out
