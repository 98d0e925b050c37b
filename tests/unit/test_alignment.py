"""Character alignment from jiwer: the segments a diff shows and the confusion counts."""

from __future__ import annotations

import pytest
from rapidfuzz.distance import Levenshtein

from ocrft.config import NormalizationConfig
from ocrft.evaluation.alignment import Segment, align, align_pairs, count_confusions
from ocrft.evaluation.normalize import normalizer
from ocrft.evaluation.results import score_samples

PAIRS = [
    ("hello world", "helo wurld!"),
    ("  ſtraße ", "strasse"),  # leading/trailing whitespace is aligned, not stripped
    ("Київ, 1923 р.", "Kиїв, 1923 p."),
    ("", "ghost"),
    ("lost", ""),
    ("", ""),
    ("abcdef", "abXYef"),
]


def test_align_segments_cover_both_strings():
    assert align("abc", "abd") == [Segment("equal", "ab", "ab"), Segment("substitute", "c", "d")]
    assert align(" a", "a") == [Segment("delete", " ", ""), Segment("equal", "a", "a")]
    assert align("", "x") == [Segment("insert", "", "x")]
    for ref, hyp in PAIRS:
        segments = align(ref, hyp)
        assert "".join(s.ref for s in segments) == ref and "".join(s.hyp for s in segments) == hyp


def test_confusions_add_up_to_the_levenshtein_distance():
    alignments = align_pairs([r for r, _ in PAIRS], [h for _, h in PAIRS])
    assert len(alignments) == len(PAIRS)
    for (ref, hyp), segments in zip(PAIRS, alignments):
        assert count_confusions([segments]).total() == Levenshtein.distance(ref, hyp)
    assert count_confusions(alignments).total() == sum(Levenshtein.distance(r, h) for r, h in PAIRS)
    assert align_pairs([], []) == []


def test_confusions_total_is_the_corpus_cer_numerator():
    rows = [{"id": str(i), "image_path": None, "label": r, "prediction": h} for i, (r, h) in enumerate(PAIRS) if r]
    norm_cfg = NormalizationConfig()
    metrics, _ = score_samples(rows, norm_cfg)
    norm = normalizer(norm_cfg)
    refs, hyps = [norm(r["label"]) for r in rows], [norm(r["prediction"]) for r in rows]
    total = count_confusions(align_pairs(refs, hyps)).total()
    assert total / sum(len(r) for r in refs) == pytest.approx(metrics["cer"])


def test_confusions_count_per_character_most_frequent_first():
    counts = count_confusions(align_pairs(["abcdef", "xcdx", "ab"], ["abXYef", "xXYx", "a"]))
    # A substituted run "cd" -> "XY" counts c->X and d->Y, once per sample.
    assert counts.substitutions == {("c", "X"): 2, ("d", "Y"): 2}
    assert counts.deletions == {"b": 1} and not counts.insertions
    assert counts.most_common() == [("substitute", "c", "X", 2), ("substitute", "d", "Y", 2), ("delete", "b", "", 1)]
    assert counts.most_common(1) == [("substitute", "c", "X", 2)]
