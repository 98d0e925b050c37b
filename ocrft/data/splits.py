"""Seeded train/val/test splits that never put one group (page, image) in two splits."""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from dataclasses import replace
from typing import Callable, Sequence

from ocrft.config import ConfigError
from ocrft.data.record import Record

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
ALL = "all"  # eval.split=all: every record of the source, whichever split it is in


def _group(r: Record) -> str:
    return r.group or r.id


def _by_record(r: Record) -> str:
    return r.id


def check_ratios(train_ratio: float, val_ratio: float) -> None:
    """Refuse ratios that cannot split: each in [0, 1] and their sum at most 1. A train
    ratio of 0 makes everything val and test (a source to score, not to train on)."""
    if not 0 <= train_ratio <= 1:
        raise ConfigError(f"data.train_ratio={train_ratio} must be between 0 and 1")
    if not 0 <= val_ratio < 1:
        raise ConfigError(f"data.val_ratio={val_ratio} must be at least 0 and below 1")
    if train_ratio + val_ratio > 1:
        raise ConfigError(f"data.train_ratio={train_ratio} + data.val_ratio={val_ratio} must be at most 1 "
                          "(test takes the rest)")


def join_splits(splits: dict[str, list[Record]]) -> list[Record]:
    """Every record of ``splits`` (train, then val, then test): what ``eval.split=all`` scores.

    A record read into two splits (one file named as two of them) is kept once. Two different
    records with one id (say line 3 of train.jsonl and of test.jsonl, both without ids) get
    ``<split>/<id>`` instead, so that ids stay unique in results; the rest keep their ids.
    """
    seen: dict[Record, str] = {}
    for name in SPLITS:
        for r in splits.get(name, []):
            seen.setdefault(r, name)
    splits_of_id: dict[str, set[str]] = defaultdict(set)
    for r, name in seen.items():
        splits_of_id[r.id].add(name)
    shared = {rid for rid, names in splits_of_id.items() if len(names) > 1}
    if shared:
        log.warning("%d ids occur in more than one split (e.g. %r): those records are named <split>/<id>",
                    len(shared), sorted(shared)[0])
    return [replace(r, id=f"{name}/{r.id}") if r.id in shared else r for r, name in seen.items()]


def split_records(
    records: Sequence[Record], train_ratio: float, val_ratio: float, seed: int, by_record: bool = False
) -> dict[str, list[Record]]:
    """Split by group (``record.group or record.id``): shuffle groups with ``seed``, then
    fill train, val and test by the ratios (test takes the rest). Order inside a split
    follows the input order, so results are stable across runs.

    The ratios apply to records, not groups: a page of 40 lines weighs 40 times what a
    page of one line does. With one record per group this is the same as splitting groups.
    ``by_record=True`` ignores the groups (``data.split_by_line``): lines of one page may
    then land in two splits.
    """
    group_of = _by_record if by_record else _group
    check_ratios(train_ratio, val_ratio)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        groups[group_of(r)].append(i)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    # A group goes to the split its middle record falls in, so the record counts land as
    # close to the ratios as whole groups allow.
    cut_train, cut_val = train_ratio * len(records), (train_ratio + val_ratio) * len(records)
    parts: dict[str, list[str]] = {s: [] for s in SPLITS}
    done = 0
    for key in keys:
        middle = done + len(groups[key]) / 2
        done += len(groups[key])
        parts["train" if middle < cut_train else "val" if middle < cut_val else "test"].append(key)
    # A tiny dataset still gets a validation and a test group: the smallest group of the
    # split with the most groups moves, so one big page never becomes the whole test set.
    if len(keys) >= 3:
        for name, wanted in (("val", val_ratio > 0), ("test", train_ratio + val_ratio < 1)):
            if wanted and not parts[name]:
                donor = parts[max(SPLITS, key=lambda s: len(parts[s]))]
                moved = min(reversed(donor), key=lambda k: len(groups[k]))
                donor.remove(moved)
                parts[name].append(moved)
    assignment = {key: name for name, part in parts.items() for key in part}
    out: dict[str, list[Record]] = {s: [] for s in SPLITS}
    for i, r in enumerate(records):
        out[assignment[group_of(r)]].append(r)
    return out


def carve_val(train: Sequence[Record], fraction: float, seed: int) -> tuple[list[Record], list[Record]]:
    """Move about ``fraction`` of ``train`` (by records) into a new val split, whole groups at a time.

    Groups are shuffled with ``seed``; val takes at least one group and train keeps at least
    one. Order inside each part follows the input order.

    Returns:
        ``(train, val)``.
    """
    groups: dict[str, list[Record]] = defaultdict(list)
    for r in train:
        groups[_group(r)].append(r)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    target, taken, n = fraction * len(train), set(), 0
    for key in keys[:-1]:
        # a group joins val while its middle record is still short of the target
        if taken and n + len(groups[key]) / 2 > target:
            break
        taken.add(key)
        n += len(groups[key])
    return [r for r in train if _group(r) not in taken], [r for r in train if _group(r) in taken]


def drop_leaks(
    splits: dict[str, list[Record]], key: Callable[[Record], str]
) -> tuple[dict[str, list[Record]], list[dict]]:
    """Remove records whose ``key`` (e.g. an image's SHA-256) also occurs in an earlier split.

    Groups keep a page or image in one split; this catches what grouping cannot see, such
    as one scan under two file names. A key in train is removed from val and test, a key
    in val from test, so the split that is scored never holds a training image.

    Returns:
        The cleaned splits and one ``{"id", "split", "also_in"}`` entry per removed record.
    """
    first_split: dict[str, str] = {}
    out: dict[str, list[Record]] = {}
    removed: list[dict] = []
    for name in SPLITS:
        kept = []
        for r in splits.get(name, []):
            k = key(r)
            earlier = first_split.setdefault(k, name)
            if earlier == name:
                kept.append(r)
            else:
                removed.append({"id": r.id, "split": name, "also_in": earlier})
        out[name] = kept
    return out, removed
