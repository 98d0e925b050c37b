"""data=olmocr_bench through task=eval: a small bench folder shaped like olmOCR-Bench's
(*.jsonl tests, pdfs/ with a subfolder, a candidate folder of _pg<page>_repeat<k>.md files),
scored from the candidate's markdown and by a tiny local model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocrft.data.record import DataError
from tests.helpers import run
from tests.pdfs import image_pdf

pytestmark = [pytest.mark.slow, pytest.mark.integration]

TABLE = "| Year | Sales |\n|---|---|\n| 2023 | 10 |\n| 2024 | 12 |\n"


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def make_bench(root: Path) -> Path:
    bench = root / "bench"
    (bench / "pdfs" / "old").mkdir(parents=True)
    image_pdf(bench / "pdfs" / "report.pdf", ["Annual Report", "a table"])
    image_pdf(bench / "pdfs" / "old" / "scan.pdf", ["an old scan"])
    write_jsonl(bench / "text.jsonl", [
        {"pdf": "report.pdf", "page": 1, "id": "p1_present", "type": "present", "text": "Annual Report"},
        {"pdf": "report.pdf", "page": 1, "id": "p1_absent", "type": "absent", "text": "Page 1 of 2", "last_n": 20},
        {"pdf": "report.pdf", "page": 1, "id": "p1_order", "type": "order", "before": "Annual", "after": "growth"},
        {"pdf": "old/scan.pdf", "page": 1, "id": "scan_present", "type": "present", "text": "Ye olde text"},
    ])  # fmt: skip
    write_jsonl(bench / "tables.jsonl", [
        {"pdf": "report.pdf", "page": 2, "id": "p2_table", "type": "table", "cell": "12", "up": "10",
         "top_heading": "Sales"},
        {"pdf": "report.pdf", "page": 2, "id": "p2_math", "type": "math", "math": "x^2"},
    ])  # fmt: skip
    cand = bench / "good_tool"
    (cand / "old").mkdir(parents=True)
    (cand / "report_pg1_repeat1.md").write_text("# Annual **Report**\n\nStrong growth.\n\nPage 1 of 2\n")
    (cand / "report_pg1_repeat2.md").write_text("# Annual Report\n\nStrong growth.\n")
    (cand / "report_pg2_repeat1.md").write_text(TABLE)
    (cand / "report_pg2_repeat2.md").write_text(TABLE)
    (cand / "old" / "scan_pg1_repeat1.md").write_text("Ye olde texte")
    (cand / "old" / "scan_pg1_repeat2.md").write_text("nothing")
    return bench


def test_a_candidate_folder_is_scored_as_the_benchmark_scores_it(tmp_path):
    bench = make_bench(tmp_path)
    record = run(["task=eval", "data=olmocr_bench", f"data.path={bench}", "model=predictions",
                  f"model.path={bench / 'good_tool'}", "data.pdf_dpi=36"], tmp_path / "run")  # fmt: skip
    results = json.loads(Path(record["paths"]["results"]).read_text())
    samples = {s["id"]: s for s in results["samples"]}
    assert sorted(samples) == ["old/scan.pdf#p1", "report.pdf#p1", "report.pdf#p2"]
    checks = {c["id"]: c for s in samples.values() for c in s["checks"]}
    # present and order pass in both repeats, the table in both
    assert checks["p1_present"]["passed"] and checks["p1_order"]["passed"] and checks["p2_table"]["passed"]
    # "Page 1 of 2" is in the last 20 characters of repeat 1 only: 1 of 2 passes, not a majority
    assert checks["p1_absent"]["passed"] is False and checks["p1_absent"]["repeats_passed"] == "1/2"
    # "Ye olde text" is inside "Ye olde texte" (partial ratio 1.0); repeat 2 reads "nothing": 1 of 2
    assert checks["scan_present"]["passed"] is False and checks["scan_present"]["repeats_passed"] == "1/2"
    assert checks["p2_math"]["passed"] is None and "KaTeX" in checks["p2_math"]["explanation"]
    assert {c["id"] for c in samples["old/scan.pdf#p1"]["checks"]} == {"scan_present", "old/scan.pdf_baseline"}
    m = record["metrics"]
    # text.jsonl 2 of 4, tables.jsonl 1 of 1 (math not scored), baseline_added 2 of 2
    assert m["eval/olmocr/text.jsonl"] == 0.5 and m["eval/olmocr/tables.jsonl"] == 1.0
    assert m["eval/olmocr/baseline_added"] == 1.0
    assert m["eval/olmocr/overall"] == pytest.approx((0.5 + 1.0 + 1.0) / 3)
    assert m["eval/olmocr/not_scored"] == 1 and m["eval/olmocr/tests"] == 7
    report = Path(record["paths"]["results_report"]).read_text()
    assert "✗ absent p1_absent: Expected absence of" in report and "– math p2_math: math is not scored" in report


def test_a_model_reads_the_rendered_pages(tmp_path):
    bench = make_bench(tmp_path)
    record = run(["task=eval", "data=olmocr_bench", f"data.path={bench}", "model=tiny_qwen2_vl",
                  "eval.max_new_tokens=2", "data.pdf_dpi=36"], tmp_path / "run")  # fmt: skip
    results = json.loads(Path(record["paths"]["results"]).read_text())
    assert all(len(s["checks"]) >= 1 for s in results["samples"])
    assert 0.0 <= record["metrics"]["eval/olmocr/overall"] <= 1.0


def test_a_test_naming_a_missing_pdf_is_named(tmp_path):
    bench = make_bench(tmp_path)
    write_jsonl(bench / "bad.jsonl", [{"pdf": "gone.pdf", "page": 1, "id": "x", "type": "present", "text": "a"}])
    with pytest.raises(DataError, match="gone.pdf: 1 test.*'x'.*not in pdfs/"):
        run(["task=eval", "data=olmocr_bench", f"data.path={bench}", "model=predictions",
             f"model.path={bench / 'good_tool'}"], tmp_path / "run")  # fmt: skip


def test_analyze_counts_the_image_tokens_of_rendered_pages(tmp_path):
    bench = make_bench(tmp_path)
    image_tokens = {}
    for dpi in (36, 72):
        record = run(["task=analyze", "data=olmocr_bench", f"data.path={bench}", "model=tiny_qwen2_vl",
                      f"data.pdf_dpi={dpi}"], tmp_path / f"run{dpi}")  # fmt: skip
        analysis = json.loads(Path(record["paths"]["analysis"]).read_text())
        image_tokens[dpi] = analysis["tokens"]["splits"]["test"]["image"]["max"]
        assert record["metrics"]["analyze/test/over_max_length"] == 0
    assert image_tokens[72] > 2 * image_tokens[36]  # twice the DPI, four times the pixels
