"""olmOCR-Bench's checks, each passing and failing where the benchmark's rules say
(olmocr/bench/tests.py and table_parsing.py; cases worked out by hand from those rules)."""

from __future__ import annotations

import pytest

from ocrft.evaluation.olmocr_checks import match_starts, run_check, tail_repeats
from ocrft.evaluation.olmocr_scoring import score_checks
from ocrft.evaluation.olmocr_tables import html_grids, markdown_grids

PAGE = "# Annual **Report** 2024\n\nThe company grew \u201cstrongly\u201d \u2014 by 12%.\n\nPage 3 of 10"


def t(kind: str, **fields) -> dict:
    return {"pdf": "doc.pdf", "page": 1, "id": f"{kind}_1", "type": kind, **fields}


@pytest.mark.parametrize(
    ("test", "passed"),
    [
        (t("present", text="Annual Report 2024"), True),  # ** removed by normalize_text
        (t("present", text='grew "strongly" - by'), True),  # curly quotes, em dash unified
        (t("present", text="Annual Rep0rt"), False),  # partial_ratio 12/13 = 0.923 < threshold 1.0
        # threshold 1 - 1/13: rapidfuzz's 92.3076923.../100 falls one ulp short, in the benchmark too
        (t("present", text="Annual Rep0rt", max_diffs=1), False),
        (t("present", text="Annual Rep0rt", max_diffs=2), True),
        (t("present", text="annual report", case_sensitive=False), True),
        (t("present", text="annual report"), False),
        (t("present", text="Annual", first_n=10), True),
        (t("present", text="Page 3", first_n=10), False),
        (t("absent", text="Page 3 of 10"), False),
        (t("absent", text="Page 3 of 10", first_n=20), True),  # only the first 20 characters are searched
        (t("absent", text="Page 3 of 10", last_n=20), False),
    ],
)
def test_presence(test, passed):
    assert run_check(test, PAGE)[0] is passed


def test_order():
    assert run_check(t("order", before="Annual Report", after="Page 3"), PAGE) == (True, "")
    passed, why = run_check(t("order", before="Page 3", after="Annual Report"), PAGE)
    assert not passed and why.startswith("Could not find a location where 'Page 3...' appears before")
    assert not run_check(t("order", before="Anual Report", after="Page 3"), PAGE)[0]  # one edit, max_diffs 0
    assert run_check(t("order", before="Anual Report", after="Page 3", max_diffs=1), PAGE)[0]
    passed, why = run_check(t("order", before="Annual Report", after="Missing text"), PAGE)
    assert not passed and why.startswith("'after' text 'Missing text...' not found with max_l_dist 0")


def test_fuzzy_match_starts():
    assert match_starts("abc", "xxabcxxabc", 0) == [2, 7]
    assert 2 in match_starts("abd", "xxabcxx", 1) and match_starts("abd", "xxxxxxx", 1) == []


TABLE_MD = """| Year | Sales | Costs |
|------|-------|-------|
| 2023 | 10 | 7 |
| 2024 | 12 | 8 |
"""
TABLE_HTML = """<table><thead><tr><th>Year</th><th colspan="2">Money</th></tr></thead>
<tr><td rowspan="2">Q</td><td>10</td><td>7</td></tr><tr><td>12</td><td>8</td></tr></table>"""


@pytest.mark.parametrize(
    ("test", "page", "passed"),
    [
        (t("table", cell="12", up="10", left="2024", right="8", top_heading="Sales", left_heading="2024"), TABLE_MD, True),
        (t("table", cell="12", up="7"), TABLE_MD, False),
        (t("table", cell="12", down="10"), TABLE_MD, False),  # nothing below the last row
        (t("table", cell="13"), TABLE_MD, False),  # fuzz.ratio("13", "12") = 0.5 < threshold 1.0
        (t("table", cell="13", max_diffs=1), TABLE_MD, True),  # threshold max(0.5, 1 - 1/2) = 0.5
        (t("table", cell="12", top_heading="Money", left="Q"), TABLE_HTML, True),  # spans: Q covers two rows
        (t("table", cell="8", top_heading="Money", left="12"), TABLE_HTML, True),
        (t("table", cell="10", up="Year"), TABLE_HTML, False),  # above 10 is Money (colspan 2 from column 1)
        (t("table", cell="Sales"), "no table at all", False),
        (t("table", cell="12", up="10", ignore_markdown_tables=True), TABLE_MD, False),
    ],
)
def test_table(test, page, passed):
    assert run_check(test, page)[0] is passed


def test_table_grids_follow_the_benchmark():
    (md,) = markdown_grids(TABLE_MD)
    assert md.cell_text[(2, 1)] == "12" and md.heading_cells == {(0, 0), (0, 1), (0, 2), (1, 0), (2, 0)}
    (html,) = html_grids(TABLE_HTML)
    assert html.cell_text == {(0, 0): "Year", (0, 1): "Money", (1, 0): "Q", (1, 1): "10", (1, 2): "7",
                              (2, 1): "12", (2, 2): "8"}  # fmt: skip
    assert html.left[(2, 1)] == {(1, 0)} and html.up[(1, 2)] == {(0, 1)} and html.right[(1, 0)] == {(1, 1), (2, 1)}


@pytest.mark.parametrize(
    ("test", "page", "passed"),
    [
        (t("baseline"), PAGE, True),
        (t("baseline"), "   \n--- ", False),  # no alphanumerics
        (t("baseline"), "text " + "ab" * 31, False),  # the 2-gram "ab" repeats 31 times at the end
        (t("baseline"), "text " + "ab" * 30, True),  # 30 is allowed
        (t("baseline"), "mixed 中文 text", False),  # CJK is disallowed
        (t("baseline", check_disallowed_characters=False), "mixed 中文 text", True),
        (t("baseline", max_length=5), "abc ![a figure](x.png)", False),  # 13 alphanumerics
        (t("baseline", max_length=5, max_length_skips_image_alt_tags=True), "abc ![a figure](x.png)", True),
    ],
)
def test_baseline(test, page, passed):
    assert run_check(test, page)[0] is passed


def test_tail_repeats_is_olmocrs_repeat_detector():
    assert tail_repeats("abab", 3) == [1, 2, 1]
    assert tail_repeats("aabaabaa", 3) == [2, 1, 2]
    assert tail_repeats("abc", 5) == [1, 1, 1, 0, 0]


def test_math_is_not_scored_and_says_so():
    assert run_check(t("math", math="x^2"), PAGE) == (None, "math is not scored: it needs a KaTeX renderer to compare equations")


def test_repeats_majority_and_per_file_mean():
    present = {**t("present", text="Annual Report"), "jsonl": "a.jsonl"}
    absent = {**t("absent", text="Page 3", id="absent_1"), "jsonl": "a.jsonl"}
    order = {**t("order", before="Annual", after="Page", id="order_1"), "jsonl": "b.jsonl"}
    math = {**t("math", math="x", id="math_1"), "jsonl": "b.jsonl"}
    rows = [
        # "Annual" is in 2 of 3 repeats: present and order pass; "Page 3" is in all: absent fails
        {"id": "doc.pdf#p1", "prediction": PAGE, "olmocr_tests": [present, absent, order, math],
         "repeats": [PAGE, PAGE, "Page 3 only"]},
        {"id": "other.pdf#p1", "prediction": "", "olmocr_tests": [{**t("baseline", id="b"), "pdf": "other.pdf"}],
         "error": "request failed"},
        # one of two repeats is not a majority
        {"id": "half.pdf#p1", "prediction": PAGE, "olmocr_tests": [{**present, "id": "half"}], "repeats": [PAGE, "no"]},
    ]  # fmt: skip
    metrics = score_checks(rows)
    checks = {c["id"]: c for c in rows[0]["checks"]}
    assert checks["present_1"]["passed"] is True and checks["present_1"]["repeats_passed"] == "2/3"
    assert checks["order_1"]["passed"] is True
    assert checks["absent_1"]["passed"] is False and checks["math_1"]["passed"] is None
    assert rows[1]["checks"][0] == {"id": "b", "type": "baseline", "passed": False, "explanation": "no prediction: request failed"}
    assert rows[2]["checks"][0]["passed"] is False and rows[2]["checks"][0]["repeats_passed"] == "1/2"
    # a.jsonl 1 of 3, b.jsonl 1 of 1 (math not scored), baseline_added 0 of 1: overall is their mean
    assert metrics["olmocr/a.jsonl"] == pytest.approx(1 / 3) and metrics["olmocr/b.jsonl"] == 1.0
    assert metrics["olmocr/baseline_added"] == 0.0
    assert metrics["olmocr/overall"] == pytest.approx((1 / 3 + 1 + 0) / 3)
    assert metrics["olmocr/present"] == pytest.approx((2 / 3 + 1 / 2) / 2)  # the type: mean share of repeats
    assert metrics["olmocr/tests"] == 5 and metrics["olmocr/not_scored"] == 1
