"""``data=olmocr_bench``: an olmOCR-Bench folder (allenai/olmocr ``olmocr/bench``) as test records.

    bench/                    data.path
      *.jsonl                 the tests, one JSON object a line: {pdf, page, id, type, ...}
      pdfs/<name>.pdf         the pages they test (subfolders allowed: "headers_footers/x.pdf")
      <candidate>/            a tool's output, <name>_pg<page>_repeat<k>.md (model=predictions)

One record per tested page, id ``<name>#p<page>``, its image the page rendered at
``data.pdf_dpi`` within ``data.max_pixels`` (ocrft.data.pdf) and its text empty: the page is
scored by its tests, carried in ``meta["olmocr_tests"]`` (each with the ``jsonl`` file it came
from) and run by ocrft.evaluation.olmocr_scoring. As the benchmark does, a PDF without a
baseline test gets one on page 1 (group ``baseline_added``). All records are the test split.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Optional

from ocrft.data.pdf import RenderSettings, render_pdf
from ocrft.data.reading import Collector, ReadResult
from ocrft.data.record import DataError

log = logging.getLogger(__name__)

ADDED_BASELINE = "baseline_added"  # the benchmark's "baseline" group of the tests it adds
TEST_TYPES = ("present", "absent", "order", "table", "baseline", "math", "format", "footnote")
REQUIRED = {"pdf": str, "page": int, "id": str, "type": str}


def _read_tests(path: Path, collector: Collector) -> list[dict]:
    tests = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            test = json.loads(line)
        except json.JSONDecodeError as e:
            collector.bad("malformed_line", f"malformed JSON at column {e.colno}: {e.msg}", lineno, path)
            continue
        if not isinstance(test, dict):
            collector.bad("malformed_line", "expected a JSON object {pdf, page, id, type, ...}", lineno, path)
            continue
        wrong = [k for k, kind in REQUIRED.items() if not isinstance(test.get(k), kind) or isinstance(test.get(k), bool)]
        if wrong or test["type"] not in TEST_TYPES:
            why = f"'{wrong[0]}' missing or not a {REQUIRED[wrong[0]].__name__}" if wrong else \
                f"unknown test type {test['type']!r} (one of {', '.join(TEST_TYPES)})"  # fmt: skip
            collector.bad("missing_key", why, lineno, path)
            continue
        if test["id"] in collector.ids:
            collector.bad("duplicate_id", f"duplicate test id {test['id']!r}", lineno, path)
            continue
        collector.ids.add(test["id"])
        tests.append({**test, "jsonl": path.name})
    return tests


def read_olmocr_bench_splits(source: str | Path, on_error: str = "raise", cache_dir: Optional[Path] = None, *,
                             pdf_dpi: int = 200, max_pixels: int = 1_003_520) -> dict[str, ReadResult]:  # fmt: skip
    """The bench folder's tested pages as the test split (see the module docstring).

    Raises:
        DataError: naming the file (and line): no .jsonl or no pdfs/ folder, a malformed test,
            a test naming a PDF or page that is not there, an unreadable PDF (with
            ``on_error=skip`` bad tests and unreadable pages are counted instead).
    """
    bench = Path(source).expanduser()
    files = sorted(bench.glob("*.jsonl"))
    pdf_dir = bench / "pdfs"
    if not files or not pdf_dir.is_dir():
        raise DataError("not an olmOCR-Bench folder: it needs *.jsonl test files and a pdfs/ folder", bench)
    collector = Collector(files[0], on_error, cache_dir)
    tests = [test for path in files for test in _read_tests(path, collector)]
    pdfs = sorted(p.relative_to(pdf_dir).as_posix() for p in pdf_dir.rglob("*.pdf"))
    baselined = {t["pdf"] for t in tests if t["type"] == "baseline"}
    tests += [{"pdf": pdf, "page": 1, "id": f"{pdf}_baseline", "type": "baseline", "jsonl": ADDED_BASELINE}
              for pdf in pdfs if pdf not in baselined]  # fmt: skip
    pages: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for test in tests:
        pages[(test["pdf"], test["page"])].append(test)
    settings = RenderSettings(dpi=pdf_dpi, max_pixels=max_pixels)
    out_dir = (Path(cache_dir) if cache_dir is not None else bench / ".ocrft_pages") / "olmocr_pages"
    for (pdf, page), page_tests in sorted(pages.items()):
        try:
            if not (pdf_dir / pdf).is_file():
                raise DataError(f"{len(page_tests)} test(s) (e.g. {page_tests[0]['id']!r}) name it, but it is not in pdfs/",
                                pdf_dir / pdf)  # fmt: skip
            (record,) = render_pdf(pdf_dir / pdf, out_dir, settings=settings, pages=[page], name=pdf)
        except DataError as err:
            if not collector.skip:
                raise
            collector.note("unreadable_pdf", str(err))
            continue
        collector.result.records.append(replace(record, meta={**record.meta, "olmocr_tests": page_tests}))
    log.info("olmOCR-Bench %s: %d tests on %d pages of %d PDFs", bench, len(tests), len(pages), len(pdfs))
    return {"test": collector.result}
