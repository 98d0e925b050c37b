"""olmOCR-Bench scored as the benchmark scores it (allenai/olmocr, ``olmocr/bench/benchmark.py``).

A sample of ``data=olmocr_bench`` carries its page's tests (``olmocr_tests``, each naming the
.jsonl file it came from) and, with ``model=predictions``, every repeat the candidate wrote
(``repeats``). Each test runs on each repeat (:func:`ocrft.evaluation.olmocr_checks.run_check`);
it passes when more than half of the repeats pass. The sample's results get
``checks: [{id, type, passed, explanation}]`` (``passed`` None: not scored, e.g. math).

Metrics, over the scored tests:
- ``olmocr/overall``: the mean over .jsonl files of the share of their tests that pass (the
  benchmark's headline: each file weighs the same however many tests it holds);
- ``olmocr/<file>.jsonl``: that share for one file; the baseline tests the reader adds for
  PDFs that have none form the group the benchmark calls "baseline", here ``olmocr/baseline_added``
  (``olmocr/baseline`` is the type);
- ``olmocr/<type>``: the mean over tests of that type of the share of repeats that pass (the
  benchmark's per-type breakdown);
- ``olmocr/tests``, ``olmocr/not_scored``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Sequence

from ocrft.data.olmocr_bench import ADDED_BASELINE
from ocrft.evaluation.olmocr_checks import run_check

log = logging.getLogger(__name__)


def _check(test: dict, pages: Sequence[str], error: str) -> tuple[dict, float]:
    """A test's results entry and its share of repeats passed."""
    entry = {"id": test["id"], "type": test["type"]}
    if error:
        return {**entry, "passed": False, "explanation": f"no prediction: {error}"}, 0.0
    outcomes = [run_check(test, page) for page in pages]
    if outcomes[0][0] is None:
        return {**entry, "passed": None, "explanation": outcomes[0][1]}, 0.0
    share = sum(bool(passed) for passed, _ in outcomes) / len(outcomes)
    failures = [why for passed, why in outcomes if not passed]
    entry.update(passed=share > 0.5, explanation=failures[0] if failures else "")
    if len(outcomes) > 1:
        entry["repeats_passed"] = f"{len(outcomes) - len(failures)}/{len(outcomes)}"
    return entry, share


def score_checks(rows: list[dict]) -> dict[str, float]:
    """Set ``checks`` on every row holding ``olmocr_tests``; the olmocr/* metrics (none
    when no row holds tests)."""
    by_file: dict[str, list[bool]] = defaultdict(list)
    by_type: dict[str, list[float]] = defaultdict(list)
    not_scored = 0
    for row in rows:
        if not row.get("olmocr_tests"):
            continue
        pages = row.get("repeats") or [row.get("prediction") or ""]
        row["checks"] = []
        for test in row["olmocr_tests"]:
            entry, share = _check(test, pages, row.get("error") or "")
            row["checks"].append(entry)
            if entry["passed"] is None:
                not_scored += 1
                continue
            by_file[test.get("jsonl", ADDED_BASELINE)].append(entry["passed"])
            by_type[test["type"]].append(share)
    if not by_file and not not_scored:
        return {}
    files = {name: sum(p) / len(p) for name, p in by_file.items()}
    metrics = {
        "olmocr/overall": sum(files.values()) / len(files) if files else 0.0,
        **{f"olmocr/{name}": share for name, share in sorted(files.items())},
        **{f"olmocr/{kind}": sum(s) / len(s) for kind, s in sorted(by_type.items())},
        "olmocr/tests": sum(len(p) for p in by_file.values()),
        "olmocr/not_scored": not_scored,
    }
    if not_scored:
        log.warning("olmOCR-Bench: %d test(s) not scored (math needs a KaTeX renderer; format and footnote "
                    "are not ported); olmocr/overall is over the %d scored tests", not_scored, metrics["olmocr/tests"])  # fmt: skip
    return metrics
