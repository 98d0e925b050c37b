"""Pairing the samples of two results files and counting where the second reads better."""

from __future__ import annotations

SAME_EPS = 1e-9  # CER differences below this count as "same"


def match_samples(a: list[dict], b: list[dict]) -> tuple[str, list[tuple[int, int]], list[int], list[int]]:
    """Pair samples of two results by ``id`` when every sample has a unique one, else by
    ``image_path``. Returns (key used, index pairs, unmatched indices of a, of b)."""
    ids_a, ids_b = [s.get("id") for s in a], [s.get("id") for s in b]
    usable = all(x not in (None, "") for x in ids_a + ids_b) and len(set(ids_a)) == len(a) and len(set(ids_b)) == len(b)
    key = "id" if usable else "image_path"
    index_b: dict = {}
    for j, s in enumerate(b):
        if s.get(key) not in (None, ""):
            index_b.setdefault(s.get(key), j)  # duplicates: the first one wins
    pairs, only_a, used = [], [], set()
    for i, s in enumerate(a):
        j = index_b.get(s.get(key)) if s.get(key) not in (None, "") else None
        if j is None or j in used:
            only_a.append(i)
        else:
            pairs.append((i, j))
            used.add(j)
    return key, pairs, only_a, [j for j in range(len(b)) if j not in used]


def compare_counts(a: dict, b: dict) -> dict[str, int]:
    """How many matched samples B (the second file) reads better, worse or the same as A."""
    _, pairs, only_a, only_b = match_samples(a["samples"], b["samples"])
    counts = {"better": 0, "worse": 0, "same": 0, "unscored": 0, "only_a": len(only_a), "only_b": len(only_b)}
    for i, j in pairs:
        ca, cb = a["samples"][i].get("cer_score"), b["samples"][j].get("cer_score")
        if ca is None or cb is None:
            counts["unscored"] += 1
        else:
            counts["same" if abs(cb - ca) < SAME_EPS else "better" if cb < ca else "worse"] += 1
    return counts
