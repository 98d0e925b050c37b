"""model=cascade's arithmetic: confidences, thresholds, routing, the CER-versus-cost curve.

A cascade reads every sample with a local model and sends those whose confidence (a summary
of the greedy tokens' log-probabilities, ocrft.evaluation.confidence) is *below* the
threshold to an endpoint. Everything here is a pure function of numbers and texts, so the
curve over thresholds is computed from two prediction sets without re-running a model;
ocrft.evaluation.cascade_eval runs the models.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

# cascade.confidence -> the number read off a Generation (or a checkpoint row with those keys)
CONFIDENCES: dict[str, Callable[[Any], float]] = {
    "mean_logprob": lambda g: g["mean_logprob"] if isinstance(g, dict) else g.mean_logprob,
    "min_logprob": lambda g: g["min_logprob"] if isinstance(g, dict) else g.min_logprob,
}


def confidence_of(generation: Any, kind: str) -> float:
    """The ``kind`` confidence (``cascade.confidence``) of a Generation or a row holding its fields."""
    return float(CONFIDENCES[kind](generation))


def pick_threshold(confidences: Sequence[float], max_fraction: float) -> float:
    """The threshold that sends at most ``max_fraction`` of ``confidences`` to the fallback.

    A sample falls back when its confidence is strictly below the threshold. The threshold is
    the (k+1)-th smallest confidence, k = floor(max_fraction * n): at most k samples lie
    strictly below it (fewer when it is tied with those below: a tie is never split, since
    equal confidences must be routed alike). With max_fraction = 1 every sample falls back.

    Raises:
        ValueError: no confidences, or max_fraction outside [0, 1].
    """
    if not confidences:
        raise ValueError("pick_threshold needs at least one confidence (the calibration split is empty)")
    if not 0 <= max_fraction <= 1:
        raise ValueError(f"max_fraction={max_fraction} must be between 0 and 1")
    ordered = sorted(confidences)
    k = math.floor(max_fraction * len(ordered) + 1e-9)  # 0.3 * 10 is 2.9999...: count 3
    if k >= len(ordered):
        return math.nextafter(ordered[-1], math.inf)
    return ordered[k]


def route(confidences: Sequence[float], threshold: float) -> list[bool]:
    """Per sample: True where it goes to the fallback (confidence strictly below ``threshold``)."""
    return [c < threshold for c in confidences]


def sample_cost(usage: Optional[dict], pricing: dict, model: str) -> Optional[float]:
    """USD of one request's ``usage`` at ``pricing[model]`` (ocrft.evaluation.endpoint_eval's
    price arithmetic); None where the model is unpriced or the server reported no usage."""
    from ocrft.evaluation.endpoint_eval import estimate_cost

    usage = usage or {}
    if usage.get("prompt_tokens") is None or usage.get("completion_tokens") is None:
        return None
    return estimate_cost(usage, pricing, model)


def cost_summary(costs: Sequence[Optional[float]], num_samples: int) -> dict[str, float]:
    """``cost_total`` and ``cost_per_1k_samples`` of the routed samples' ``costs`` (USD);
    empty when none of them is priced (self-hosted fallback), ``cost_unpriced_samples`` counts gaps."""
    priced = [c for c in costs if c is not None]
    if not priced:
        return {}
    total = sum(priced)
    return {"cost_total": total, "cost_per_1k_samples": 1000 * total / max(num_samples, 1),
            "cost_unpriced_samples": float(len(costs) - len(priced))}  # fmt: skip


def char_counts(
    predictions: Sequence[str], labels: Sequence[str], normalization: Any, cer_unit: str
) -> list[tuple[int, int]]:
    """Per sample (character edits, reference characters) after ``normalization``, counted in
    ``cer_unit`` as ocrft.evaluation.metrics counts them, so sums give its corpus CER."""
    from rapidfuzz.distance import Levenshtein

    from ocrft.evaluation.metrics import cer_units
    from ocrft.evaluation.normalize import normalizer

    norm = normalizer(normalization)
    out = []
    for p, r in zip(predictions, labels):
        h, ref = cer_units(norm(p), cer_unit), cer_units(norm(r), cer_unit)
        out.append((Levenshtein.distance(h, ref), len(ref)))
    return out


def cascade_curve(
    confidences: Sequence[float],
    local_counts: Sequence[tuple[int, int]],
    fallback_counts: Sequence[tuple[int, int]],
    costs: Sequence[Optional[float]],
) -> list[dict]:
    """CER and cost of the cascade at every threshold that routes a different set of samples.

    Args:
        confidences: the local model's confidence per sample.
        local_counts, fallback_counts: per sample (edits, reference chars) of the local and
            the fallback prediction (:func:`char_counts`).
        costs: per sample USD of its fallback request (None: unpriced).

    Returns:
        One point per distinct threshold, lowest first: ``threshold`` (each distinct
        confidence, and one above the largest: everything falls back), ``routed_fraction``,
        ``cer`` (corpus: total edits / total reference chars), ``cost_total`` (None when a
        routed sample is unpriced).
    """
    n = len(confidences)
    if not n:
        return []
    ref_chars = sum(c[1] for c in local_counts)
    thresholds = sorted(set(confidences)) + [math.nextafter(max(confidences), math.inf)]
    order = sorted(range(n), key=lambda i: confidences[i])
    edits = sum(c[0] for c in local_counts)  # nothing routed yet
    cost: Optional[float] = 0.0
    routed = 0
    points = []
    for t in thresholds:
        while routed < n and confidences[order[routed]] < t:  # route the samples now below t
            i = order[routed]
            edits += fallback_counts[i][0] - local_counts[i][0]
            cost = None if cost is None or costs[i] is None else cost + costs[i]
            routed += 1
        cer = edits / ref_chars if ref_chars else (0.0 if edits == 0 else 1.0)
        points.append({"threshold": t, "routed_fraction": routed / n, "cer": cer, "cost_total": cost})
    return points


def cheapest_meeting(curve: Sequence[dict], target_cer: float) -> Optional[dict]:
    """The cheapest point of ``curve`` whose CER is at most ``target_cer`` (by cost, or by
    routed fraction where costs are unknown; ties go to the lower CER); None if none meets it."""
    meeting = [p for p in curve if p["cer"] <= target_cer]
    if not meeting:
        return None
    return min(meeting, key=lambda p: (p["cost_total"] if p["cost_total"] is not None else math.inf,
                                       p["routed_fraction"], p["cer"]))  # fmt: skip


def auroc(scores: Sequence[float], positives: Sequence[bool]) -> Optional[float]:
    """Area under the ROC curve of ``scores`` ranking ``positives`` first (higher score = more
    likely positive): the Mann-Whitney U statistic / (n_pos * n_neg), ties counted half
    (average ranks). None when either class is empty."""
    n = len(scores)
    order = sorted(range(n), key=lambda i: scores[i])
    ranks = [0.0] * n
    i = 0
    while i < n:  # average rank (1-based) over each run of tied scores
        j = i
        while j + 1 < n and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    n_pos = sum(bool(p) for p in positives)
    n_neg = n - n_pos
    if not n_pos or not n_neg:
        return None
    rank_sum = sum(r for r, p in zip(ranks, positives) if p)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
