"""olmOCR-Bench's pass/fail checks on one page's markdown (allenai/olmocr, ``olmocr/bench/tests.py``),
ported rule for rule. Each check compares text after the benchmark's ``normalize_text``
(:func:`ocrft.evaluation.normalize.olmocr_normalize`: markdown emphasis removed, whitespace
collapsed, NFC, dash and quote variants unified).

    type      passes when
    present   the text (fuzzy, within max_diffs) is in the page (or its first_n / last_n characters)
    absent    it is not (headers, footers)
    order     some match of ``before`` starts before some match of ``after`` (max_diffs edits each)
    table     some table cell matches ``cell`` and every given neighbour (up, down, left, right,
              top_heading, left_heading) matches too
    baseline  the page has alphanumeric text, does not end in 30+ repeats of one 1..5-gram, and
              holds no CJK or emoji (with max_length: a blank page, at most that many alphanumerics)

``math`` needs a KaTeX renderer to compare equations; ``format`` and ``footnote`` are newer
than the published benchmark. They are reported as not scored (``passed`` None), never as
failures. ``order`` with max_diffs > 0 considers every start of a match within max_diffs edits,
where the benchmark's fuzzysearch keeps the best of overlapping matches: the two can differ
only when ``before`` and ``after`` lie within max_diffs characters of each other.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Optional

from rapidfuzz import fuzz

from ocrft.evaluation.normalize import olmocr_normalize
from ocrft.evaluation.olmocr_tables import html_grids, markdown_grids

Outcome = tuple[Optional[bool], str]  # (passed, or None when not scored; why)
NOT_SCORED = {
    "math": "math is not scored: it needs a KaTeX renderer to compare equations",
    "format": "format checks are not scored by ocrft",
    "footnote": "footnote checks are not scored by ocrft",
}
_DISALLOWED = re.compile("[\u4e00-\u9fff\u3040-\u309f\u30a0-\u30ff\U0001f600-\U0001f64f\U0001f300-\U0001f5ff"
                         "\U0001f680-\U0001f6ff\U0001f1e0-\U0001f1ff]")  # fmt: skip


def _threshold(max_diffs: int, text: str) -> float:
    return 1.0 - max_diffs / (len(text) if text else 1)


def _presence(test: dict, page: str) -> Outcome:
    query, content = olmocr_normalize(test["text"]), olmocr_normalize(page)
    if not test.get("case_sensitive", True):
        query, content = query.lower(), content.lower()
    first_n, last_n = test.get("first_n"), test.get("last_n")
    if first_n and last_n:
        content = content[:first_n] + content[-last_n:]
    elif first_n:
        content = content[:first_n]
    elif last_n:
        content = content[-last_n:]
    threshold = _threshold(test.get("max_diffs", 0), query)
    ratio = fuzz.partial_ratio(query, content) / 100.0
    found = ratio >= threshold
    if found == (test["type"] == "present"):
        return True, ""
    what = "" if test["type"] == "present" else "absence of "
    return False, f"Expected {what}'{query[:40]}...' with threshold {threshold} but best match ratio was {ratio:.3f}"


def match_starts(pattern: str, text: str, max_diffs: int) -> list[int]:
    """Every start in ``text`` of a substring within ``max_diffs`` edits of ``pattern``
    (Sellers' algorithm run on the reversed strings: its end positions are our starts)."""
    if max_diffs == 0:
        return [m.start() for m in re.finditer(f"(?={re.escape(pattern)})", text)]
    rp, rt = pattern[::-1], text[::-1]
    column = list(range(len(rp) + 1))
    starts = []
    for j, ch in enumerate(rt, 1):
        prev_diag, column[0] = column[0], 0
        for i in range(1, len(rp) + 1):
            cur = min(column[i] + 1, column[i - 1] + 1, prev_diag + (rp[i - 1] != ch))
            prev_diag, column[i] = column[i], cur
        if column[-1] <= max_diffs:
            starts.append(len(text) - j)
    return sorted(starts)


def _order(test: dict, page: str) -> Outcome:
    content, before, after = olmocr_normalize(page), olmocr_normalize(test["before"]), olmocr_normalize(test["after"])
    diffs = test.get("max_diffs", 0)
    befores, afters = match_starts(before, content, diffs), match_starts(after, content, diffs)
    if not befores:
        return False, f"'before' text '{before[:40]}...' not found with max_l_dist {diffs}"
    if not afters:
        return False, f"'after' text '{after[:40]}...' not found with max_l_dist {diffs}"
    if min(befores) < max(afters):
        return True, ""
    return False, f"Could not find a location where '{before[:40]}...' appears before '{after[:40]}...'."


_RELATIONS = ("up", "down", "left", "right", "top_heading", "left_heading")


def _neighbours(grid: Any, cell: tuple[int, int], relation: str) -> set:
    if relation == "top_heading":
        return grid.top_heading(cell)
    if relation == "left_heading":
        return grid.left_heading(cell)
    return getattr(grid, relation)[cell]


def _table(test: dict, page: str) -> Outcome:
    diffs = test.get("max_diffs", 0)
    want = {k: olmocr_normalize(test.get(k) or "") for k in ("cell", *_RELATIONS)}
    grids = ([] if test.get("ignore_markdown_tables") else markdown_grids(page)) + html_grids(page)
    if not grids:
        return False, "No tables found in the content"
    threshold = max(0.5, _threshold(diffs, want["cell"]))
    reasons: list[str] = []
    for grid in grids:
        cells = [rc for rc, text in grid.cell_text.items()
                 if fuzz.ratio(want["cell"], olmocr_normalize(text)) / 100.0 >= threshold]  # fmt: skip
        for cell in cells:
            failed = []
            for relation in (r for r in _RELATIONS if want[r]):
                expected = want[relation]
                scores = [(fuzz.ratio(expected, olmocr_normalize(grid.cell_text[n])) / 100.0, grid.cell_text[n])
                          for n in _neighbours(grid, cell, relation)]  # fmt: skip
                best = max(scores, default=(0.0, None))
                if best[0] < max(0.5, _threshold(diffs, expected)):
                    failed.append(f"Cell compared to '{best[1]}' doesn't match expected '{expected}' "
                                  f"(best similarity: {best[0]:.2f})")  # fmt: skip
            if not failed:
                return True, ""
            reasons.extend(failed)
    if not reasons:
        return False, f"No cell matching '{want['cell']}' found in any table with threshold {threshold}"
    return False, f"Found cells matching '{want['cell']}' but relationships were not satisfied: {'; '.join(reasons)}"


def tail_repeats(text: str, max_ngram: int = 5) -> list[int]:
    """olmocr's RepeatDetector: for n = 1..max_ngram, how many times the last n characters
    (whitespace collapsed) repeat back to back at the end of ``text``."""
    text = re.sub(r"\s+", " ", text)
    counts = [0] * max_ngram
    for size in range(1, min(max_ngram, len(text)) + 1):
        target, pos = text[-size:], len(text) - size
        while pos >= 0 and text[pos : pos + size] == target:
            counts[size - 1] += 1
            pos -= size
    return counts


def _baseline(test: dict, page: str) -> Outcome:
    alnum = len("".join(c for c in page if c.isalnum()).strip())
    if test.get("max_length") is not None:
        if test.get("max_length_skips_image_alt_tags"):
            alnum = len("".join(c for c in re.sub(r"!\[.*?\]\(.*?\)", "", page) if c.isalnum()).strip())
        if alnum > test["max_length"]:
            return False, f"{alnum} characters were output for a page we expected to be blank"
        return True, ""
    if alnum == 0:
        return False, "The text contains no alpha numeric characters"
    for index, count in enumerate(tail_repeats(page)):
        if count > test.get("max_repeats", 30):
            return False, f"Text ends with {count} repeating {index + 1}-grams, invalid"
    found = _DISALLOWED.findall(page)
    if test.get("check_disallowed_characters", True) and found:
        return False, f"Text contains disallowed characters {found}"
    return True, ""


CHECKS: dict[str, Callable[[dict, str], Outcome]] = {
    "present": _presence,
    "absent": _presence,
    "order": _order,
    "table": _table,
    "baseline": _baseline,
}


def run_check(test: dict, page: str) -> Outcome:
    """One test (a row of a benchmark .jsonl) on one page's markdown."""
    if test["type"] in NOT_SCORED:
        return None, NOT_SCORED[test["type"]]
    return CHECKS[test["type"]](test, page)
