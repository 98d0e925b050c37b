"""Order-robust page text (bow_f1, line_cer, reading_order) and how results files carry them
and TEDS per sample and as corpus means."""

from __future__ import annotations

import pytest

from ocrft.evaluation.metrics import score_sample
from ocrft.evaluation.page_text import bow_f1, page_scores
from ocrft.evaluation.results import score_samples

LEFT = ["The quick brown fox", "jumps over the dog"]
RIGHT = ["Column two begins", "and ends right here"]
PAGE = "\n".join(LEFT + RIGHT)  # read column by column, left first


def same(text: str) -> str:
    return " ".join(text.split())


def test_two_columns_read_in_the_other_order():
    swapped = "\n".join(RIGHT + LEFT)
    scores = page_scores(swapped, PAGE, same)
    assert scores["bow_f1"] == 1.0
    assert scores["line_cer"] == 0.0
    # lines 0,1,2,3 came out at 2,3,0,1: only (0,1) and (2,3) keep their order, 2 of 6 pairs
    assert scores["reading_order"] == pytest.approx(2 / 6)
    assert score_sample(swapped, PAGE)["cer"] > 0.5  # what CER alone says of a correct reading


def test_misreads_still_count():
    pred = "\n".join(["The quick brown box", "jumps over the dog"] + RIGHT)
    scores = page_scores(pred, PAGE, same)
    assert scores["line_cer"] == pytest.approx(1 / sum(len(x) for x in LEFT + RIGHT))
    assert scores["bow_f1"] == pytest.approx(2 * 14 / 30)  # 15 words each side, 14 shared
    assert scores["reading_order"] == 1.0


def test_a_missing_line_costs_its_characters():
    pred = "\n".join(LEFT + RIGHT[:1])
    scores = page_scores(pred, PAGE, same)
    assert scores["line_cer"] == pytest.approx(len(RIGHT[1]) / sum(len(x) for x in LEFT + RIGHT))
    assert scores["reading_order"] == 1.0


def test_one_line_references_have_no_page_scores():
    assert page_scores("a line", "a line", same) is None
    assert bow_f1("", "") == 1.0 and bow_f1("a", "") == 0.0


def test_results_carry_page_and_table_scores_per_sample_and_as_means():
    table = "| A | B |\n|---|---|\n| 1 | 2 |"
    rows = [
        {"id": "page", "image_path": "p.png", "label": PAGE, "prediction": "\n".join(RIGHT + LEFT)},
        {"id": "line", "image_path": "l.png", "label": "one line", "prediction": "one line"},
        {"id": "table", "image_path": "t.png", "label": table, "prediction": "| A | B |\n|---|---|\n| 2 | 1 |"},
    ]
    metrics, scored = score_samples(rows, None)
    assert scored[0]["bow_f1"] == 1.0 and "teds" not in scored[0]
    assert "bow_f1" not in scored[1] and "teds" not in scored[1]
    assert scored[2]["teds"] == pytest.approx(1 - 2 / 9) and scored[2]["teds_struct"] == 1.0
    assert metrics["tables_samples"] == 1 and metrics["teds"] == pytest.approx(1 - 2 / 9)
    assert metrics["page_text_samples"] == 2  # the markdown table has three lines: a page sample too
    # re-scoring a scored row recomputes rather than keeps stale scores
    rows[2] = {**scored[2], "label": "no table"}
    assert "teds" not in score_samples(rows, None)[1][2]
