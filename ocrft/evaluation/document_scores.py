"""Scores that only some samples have: tables (TEDS) where the label holds a table, page
text (order-robust) where it spans several lines. One table, ``DOCUMENT_SCORES``: each entry
gives a sample's scores or None (the sample has no such thing), and the corpus value of each
score is its mean over the samples that have it, with how many they were.

    entry        sample scores                          when
    tables       teds, teds_struct                      the label holds an HTML or markdown table
    page_text    bow_f1, line_cer, reading_order        the label has two lines or more
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from ocrft.evaluation.normalize import normalizer
from ocrft.evaluation.page_text import page_scores
from ocrft.evaluation.tables import table_scores

Norm = Callable[[str], str]
# every key a DOCUMENT_SCORES entry may set on a sample (re-scoring clears them first)
SAMPLE_KEYS = ("teds", "teds_struct", "bow_f1", "line_cer", "reading_order")


def _tables(prediction: str, label: str, norm: Norm) -> Optional[dict[str, float]]:
    return table_scores(prediction, label)  # raw cells, as PubTabNet's reference compares them


DOCUMENT_SCORES: dict[str, Callable[[str, str, Norm], Optional[dict[str, float]]]] = {
    "tables": _tables,
    "page_text": page_scores,
}


def score_documents(
    predictions: Sequence[str], labels: Sequence[str], normalization: Any
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """(corpus means plus ``<entry>_samples`` counts, each sample's scores ({} when none))."""
    norm = normalizer(normalization)
    samples: list[dict[str, float]] = [{} for _ in predictions]
    metrics: dict[str, float] = {}
    for name, scorer in DOCUMENT_SCORES.items():
        scored = []
        for i, (prediction, label) in enumerate(zip(predictions, labels)):
            scores = scorer(prediction, label, norm)
            if scores is not None:
                samples[i].update(scores)
                scored.append(scores)
        if scored:
            metrics[f"{name}_samples"] = len(scored)
            metrics.update({key: sum(s[key] for s in scored) / len(scored) for key in scored[0]})
    return metrics, samples
