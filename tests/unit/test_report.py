"""HTML reports: diff markup, escaping, embedded thumbnails, confusions, comparison, and task=report."""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from PIL import Image, ImageDraw

from ocrft.config import EvalConfig, NormalizationConfig, ReportConfig
from ocrft.evaluation.comparison import compare_counts, match_samples
from ocrft.evaluation.html import THUMB_MAX_H, THUMB_MAX_W, diff_html, render_comparison_html, render_report_html
from ocrft.tasks.report import run_report
from ocrft.evaluation.results import build_results, load_results, score_samples, write_results
from ocrft.runner import RunContext
from ocrft.tracking import NullTracker

XSS = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'


def make_line_image(path: Path, text: str, size=(1200, 64), mode="RGB") -> Path:
    img = Image.new(mode, size, "white" if mode == "RGB" else (255, 255, 255, 0))
    ImageDraw.Draw(img).text((10, 20), text, fill="black")
    img.save(path)
    return path


@pytest.fixture
def results_files(tmp_path):
    """Two results files (A, B) over the same 4 samples, images beside them, one missing."""
    make_line_image(tmp_path / "l0.png", "hello world")
    make_line_image(tmp_path / "l1.png", "line two", mode="RGBA")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    labels = ["hello world", XSS, "line two", "same here"]
    images = ["l0.png", str(tmp_path / "l1.png"), "missing.png", "broken.png"]
    preds_a = ["hello wrld", XSS, "line twoo", "same here"]
    preds_b = ["hello world", XSS + "!", "line two", "same here"]
    out = []
    for name, preds in (("a", preds_a), ("b", preds_b)):
        rows = [{"id": f"s{i}", "image_path": im, "label": lab, "prediction": p}
                for i, (im, lab, p) in enumerate(zip(images, labels, preds))]
        if name == "b":
            rows.reverse()  # matching must not depend on order
        metrics, scored = score_samples(rows, None)
        out.append(write_results(tmp_path / f"{name}.json", build_results(scored, f"model-{name}", None, metrics)))
    return out


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def parse(page: str) -> list[tuple[str, dict]]:
    p = _Tags()
    p.feed(page)
    return p.tags


def test_diff_html_marks_each_edit_kind():
    assert diff_html("abc", "abc") == "abc"
    assert diff_html("abc", "abd") == 'ab<span class="sub-r">c</span><span class="sub-h">d</span>'
    assert diff_html("abc", "ac") == "a<del>b</del>c"
    assert diff_html("ac", "abc") == "a<ins>b</ins>c"
    assert diff_html("<b>", "<i>") == '&lt;<span class="sub-r">b</span><span class="sub-h">i</span>&gt;'


def test_report_escapes_text_and_embeds_thumbnails(results_files):
    a = load_results(results_files[0])
    page = render_report_html(a, base_dirs=(results_files[0].parent,))
    tags = parse(page)
    # One <script> (ours, without src), no element or handler injected from a label.
    assert [t for t, _ in tags].count("script") == 1 and all("src" not in at for t, at in tags if t == "script")
    assert not any(k.startswith("on") for _, at in tags for k in at)
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page  # markupsafe writes " as &#34;
    # Self-contained: no external URL anywhere.
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    rows = [at for t, at in tags if t == "tr" and "data-idx" in at]
    assert len(rows) == 4
    imgs = [at["src"] for t, at in tags if t == "img"]
    assert len(imgs) == 2  # l0 (relative, found beside the file) and l1 (absolute, RGBA)
    for src in imgs:
        assert src.startswith("data:image/jpeg;base64,")
        thumb = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert thumb.width <= THUMB_MAX_W and thumb.height <= THUMB_MAX_H
        assert thumb.getpixel((thumb.width - 1, 0)) > (200, 200, 200)  # transparency flattened to white
    assert "image not found: missing.png" in page and "image not found: broken.png" in page
    # Rows carry the sort keys: sample 0 has CER 1/11 ("hello wrld").
    assert rows[0]["data-cer"] == repr(1 / 11) and rows[0]["data-bad"] == "1" and rows[3]["data-bad"] == "0"


def test_report_shows_errors_and_metrics(tmp_path):
    rows = [{"id": "ok", "image_path": None, "label": "a", "prediction": "a"},
            {"id": "bad", "image_path": None, "label": "b", "prediction": None, "error": "HTTP <500>"}]
    metrics, scored = score_samples(rows, NormalizationConfig())
    page = render_report_html(build_results(scored, "m", NormalizationConfig(), metrics))
    assert "error: HTTP &lt;500&gt;" in page
    assert "degenerate" not in page.split("<tbody>")[1]
    rows[0]["prediction"] = "a" * 40  # a loop
    metrics, scored = score_samples(rows, NormalizationConfig())
    assert "degenerate</span>" in render_report_html(build_results(scored, "m", None, metrics)).split("<tbody>")[1]
    assert "num_errors" in page and "collapse_whitespace=True" in page
    bad_row = [at for t, at in parse(page) if t == "tr" and at.get("data-idx") == "1"][0]
    assert bad_row["data-cer"] == "" and bad_row["data-bad"] == "1"


def test_seed_file_without_metrics_renders(tmp_path):
    seed = {"overall_cer": 0.5, "overall_f1": 0.6, "total_samples": 1, "timestamp": "t", "model_name": "g",
            "samples": [{"image_path": "x.png", "label": "ab", "prediction": "a", "cer_score": 0.5, "f1_score": 0.6}]}
    page = render_report_html(seed)
    assert "0.5000" in page and "not recorded" in page and "a<del>b</del>" in page


def test_report_tabulates_character_confusions_from_the_scored_text():
    rows = [{"id": "1", "image_path": None, "label": "a<b  c", "prediction": "a>b c"},
            {"id": "2", "image_path": None, "label": "x<y", "prediction": "x>y z"},
            {"id": "3", "image_path": None, "label": "q", "prediction": None, "error": "timeout"}]
    metrics, scored = score_samples(rows, NormalizationConfig())  # collapse: "a<b  c" is scored as "a<b c"
    page = render_report_html(build_results(scored, "m", NormalizationConfig(), metrics))
    table = page.split('<table class="confusions">')[1].split("</table>")[0]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", table)
    assert [cells[i : i + 4] for i in range(0, len(cells), 4)] == [
        ["substitute", "&lt;", "&gt;", "2"],
        ["insert", "", "␣", "1"],  # a space made visible
        ["insert", "", "z", "1"],
    ]
    # 4 edits over 8 scored label characters: the corpus CER the page reports.
    assert "4 character edits in all" in page and metrics["cer"] == pytest.approx(4 / 8)


def test_comparison_tabulates_confusions_of_both_files(results_files):
    a, b = (load_results(p) for p in results_files)
    page = render_comparison_html(a, b)
    tables = page.split('<table class="confusions">')[1:]
    assert len(tables) == 2
    assert "<td>delete</td><td class=\"c\">o</td>" in tables[0]  # A: "hello wrld"
    assert "<td>insert</td><td class=\"c\"></td><td class=\"c\">!</td>" in tables[1]  # B: XSS + "!"


def test_match_samples_by_id_else_image_path():
    a = [{"id": "1", "image_path": "p"}, {"id": "2", "image_path": "q"}]
    b = [{"id": "2", "image_path": "q"}, {"id": "3", "image_path": "r"}]
    assert match_samples(a, b) == ("id", [(1, 0)], [0], [1])
    a2 = [{"image_path": "p"}, {"image_path": "q"}]
    assert match_samples(a2, b) == ("image_path", [(1, 0)], [0], [1])
    # Samples with neither an id nor an image path cannot be matched, not even to each other.
    assert match_samples([{"image_path": None}], [{"image_path": None}]) == ("image_path", [], [0], [0])


def test_comparison_counts_and_order(results_files):
    a, b = (load_results(p) for p in results_files)
    # A vs B by sample: s0 B better, s1 B worse (one "!" inserted), s2 B better, s3 same.
    assert compare_counts(a, b) == {"better": 2, "worse": 1, "same": 1, "unscored": 0, "only_a": 0, "only_b": 0}
    page = render_comparison_html(a, b, base_dirs=(results_files[0].parent,))
    rows = [at for t, at in parse(page) if t == "tr" and "data-delta" in at]
    deltas = [float(r["data-delta"]) for r in rows]
    assert deltas == sorted(deltas, reverse=True) and deltas[0] > 0  # B's regression first
    assert "better on 2" in page and "worse on 1" in page and "same on 1" in page
    assert [t for t, _ in parse(page)].count("script") == 1


def test_comparison_warns_about_different_normalizations(results_files):
    a, b = (load_results(p) for p in results_files)
    b["normalization"] = {**b["normalization"], "lowercase": True}
    assert "different normalizations" in render_comparison_html(a, b)


def _cfg(**report):
    eval_cfg = EvalConfig(normalization=NormalizationConfig(lowercase=True))
    return OmegaConf.create({"report": OmegaConf.structured(ReportConfig(**report)),
                             "eval": OmegaConf.structured(eval_cfg)})


def test_run_report_rescores_and_writes(tmp_path, results_files):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    result = run_report(_cfg(results=str(results_files[0])), RunContext(run_dir=run_dir, tracker=NullTracker()))
    assert Path(result.paths["report"]) == run_dir / "report.html"
    rescored = load_results(result.paths["results"])
    assert Path(result.paths["results"]).parent == run_dir
    assert rescored["normalization"]["lowercase"] is True
    assert rescored["rescored_from"]["normalization"]["lowercase"] is False
    # Under lowercase + collapse: edits 1 ("wrld") + 0 + 1 ("twoo") + 0 over all label characters.
    labels = ["hello world", XSS, "line two", "same here"]
    assert result.metrics["report/cer"] == pytest.approx(2 / sum(len(" ".join(x.lower().split())) for x in labels))
    page = (run_dir / "report.html").read_text()
    assert page.count('<tr data-idx="') == 4


def test_run_report_compare_and_no_rescore(tmp_path, results_files):
    run_dir = tmp_path / "run"
    cfg = _cfg(results=str(results_files[0]), compare=str(results_files[1]), rescore=False,
               output=str(tmp_path / "cmp.html"))
    result = run_report(cfg, RunContext(run_dir=run_dir, tracker=NullTracker()))
    assert result.paths["results"] == str(results_files[0]) and result.paths["report"] == str(tmp_path / "cmp.html")
    assert result.metrics["report/better"] == 2 and result.metrics["report/worse"] == 1
    assert result.metrics["report/a/cer"] == json.loads(results_files[0].read_text())["metrics"]["cer"]
    assert "OCR comparison" in (tmp_path / "cmp.html").read_text()


def test_run_report_needs_a_results_file(tmp_path):
    with pytest.raises(ValueError, match="report.results is not set"):
        run_report(_cfg(), RunContext(run_dir=tmp_path, tracker=NullTracker()))
