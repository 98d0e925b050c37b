"""TEDS and TEDS-S: hand-computed values, and agreement with PubTabNet's reference code
(tests/teds_reference.py) on tables written in PubTabNet's shape."""

from __future__ import annotations

import pytest

from ocrft.evaluation.tables import find_tables, table_scores, teds
from tests.teds_reference import TEDS as ReferenceTEDS

HEAD = "<thead><tr><td>A</td><td>B</td></tr></thead>"
T2 = f"<table>{HEAD}<tbody><tr><td>1</td><td>2</td></tr></tbody></table>"  # 9 nodes
T3 = f"<table>{HEAD}<tbody><tr><td>1</td><td>2</td></tr><tr><td>3</td><td>4</td></tr></tbody></table>"  # 12 nodes
SWAPPED = f"<table>{HEAD}<tbody><tr><td>2</td><td>1</td></tr></tbody></table>"
SPAN = '<table><tbody><tr><td colspan="2">AB</td></tr></tbody></table>'  # 4 nodes
SPLIT = "<table><tbody><tr><td>A</td><td>B</td></tr></tbody></table>"  # 5 nodes
ROWSPAN = '<table><tbody><tr><td rowspan="2">x</td><td>1</td></tr><tr><td>2</td></tr></tbody></table>'
NO_ROWSPAN = "<table><tbody><tr><td>x</td><td>1</td></tr><tr><td>x</td><td>2</td></tr></tbody></table>"
CJK = "<table><tbody><tr><td>金额</td><td>合计</td></tr></tbody></table>"
CJK_ONE_WRONG = "<table><tbody><tr><td>金頟</td><td>合计</td></tr></tbody></table>"
BOLD = "<table><tbody><tr><td><b>Total</b></td><td>9</td></tr></tbody></table>"
PLAIN = "<table><tbody><tr><td>Total</td><td>9</td></tr></tbody></table>"
EMPTY_CELL = "<table><tbody><tr><td></td><td>9</td></tr></tbody></table>"


@pytest.mark.parametrize(
    ("pred", "ref", "expected", "expected_struct"),
    [
        (T2, T2, 1.0, 1.0),
        (SWAPPED, T2, 1 - 2 / 9, 1.0),  # two td renames, each a full token change
        (T2, T3, 1 - 3 / 12, 1 - 3 / 12),  # a missing row: tr and its two td deleted
        (SPLIT, SPAN, 1 - 2 / 5, 1 - 2 / 5),  # colspan differs: rename 1 + an inserted td
        (CJK_ONE_WRONG, CJK, 1 - 0.5 / 5, 1.0),  # one of two characters wrong in one cell
        (PLAIN, BOLD, 1 - (2 / 7) / 5, 1.0),  # <b>Total</b> is 7 tokens: <b>, 5 letters, </b>
        (EMPTY_CELL, PLAIN, 1 - 1 / 5, 1.0),
        ("", T2, 0.0, 0.0),
    ],
)
def test_hand_computed(pred, ref, expected, expected_struct):
    assert teds(pred, ref) == pytest.approx(expected)
    assert teds(pred, ref, structure_only=True) == pytest.approx(expected_struct)


PAIRS = [
    (T2, T2), (SWAPPED, T2), (T2, T3), (T3, T2), (SPLIT, SPAN), (SPAN, SPLIT), (NO_ROWSPAN, ROWSPAN),
    (ROWSPAN, NO_ROWSPAN), (CJK_ONE_WRONG, CJK), (PLAIN, BOLD), (EMPTY_CELL, PLAIN), (SWAPPED, T3), (CJK, T3),
]  # fmt: skip


@pytest.mark.parametrize(("pred", "ref"), PAIRS)
@pytest.mark.parametrize("structure_only", [False, True])
def test_equals_reference_implementation(pred, ref, structure_only):
    def wrapped(t):
        return f"<html><body>{t}</body></html>"

    expected = ReferenceTEDS(structure_only=structure_only)(wrapped(pred), wrapped(ref))
    assert teds(pred, ref, structure_only=structure_only) == pytest.approx(expected)


def test_markdown_table_equals_the_same_table_in_html():
    markdown = "| A | B |\n|---|:-:|\n| 1 | 2 |\n"
    assert find_tables(markdown) == [T2]
    assert table_scores(markdown, T2) == {"teds": 1.0, "teds_struct": 1.0}
    with_th = "<table><tr><th>A</th><th>B</th></tr><tr><td>1</td><td>2</td></tr></table>"
    assert teds(markdown and find_tables(markdown)[0], with_th) == 1.0  # th row = thead, loose rows = tbody


def test_what_is_not_a_markdown_table():
    assert find_tables("a | b\n---\ntext") == []  # a setext heading under a line with a pipe
    assert find_tables("| a | b |\n|---|\n| 1 | 2 |") == []  # GFM: the delimiter row must match the header


def test_markdown_rows_take_the_header_width():
    (table,) = find_tables("| A | B |\n| --- | --- |\n| 1 |\n| 2 | 3 | 4 |")
    assert table.count("<td>") == 6


def test_tables_in_page_text_pair_up_in_order():
    ref = f"Title\n\n{T2}\n\ntext between\n\n| x | y |\n|---|---|\n| 5 | 6 |\n"
    pred = f"Title\n\n{T2}\n\nno second table"
    assert [t[:7] for t in find_tables(ref)] == ["<table>", "<table>"]
    assert table_scores(pred, ref) == {"teds": 0.5, "teds_struct": 0.5}
    assert table_scores("plain", "no table here") is None


def test_report_shows_tables_cell_by_cell_and_escapes_them():
    from ocrft.evaluation.html import render_report_html
    from ocrft.evaluation.results import build_results, score_samples
    from ocrft.evaluation.table_diff import cell_diff

    label = "| A | B |\n|---|---|\n| 1 | <script> |\n| 3 | 4 |"
    pred = "| A | B |\n|---|---|\n| 1 | 9 |"
    (table,) = cell_diff(pred, label)
    assert [[c["status"] for c in row] for row in table] == [["same", "same"], ["same", "changed"], ["missing", "missing"]]
    assert table[1][1] == {"ref": "<script>", "pred": "9", "status": "changed"}
    metrics, rows = score_samples([{"id": "t", "image_path": None, "label": label, "prediction": pred}], None)
    page = render_report_html(build_results(rows, "m", {}, metrics))
    assert '<td class="changed">&lt;script&gt; → 9</td>' in page and '<td class="missing">3</td>' in page
    assert "<td class=\"changed\"><script>" not in page  # the label's tag stays text
