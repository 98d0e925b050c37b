"""The HTML reports in a real headless Chromium: they render, run without console errors,
sort and filter, and keep a ``<script>`` label as text."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from ocrft.evaluation.html import render_comparison_html, render_report_html
from ocrft.evaluation.results import build_results, score_samples
from tests.browser import Browser

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # a real browser: ~5 s per test
log = logging.getLogger(__name__)

XSS = '<script>document.title="pwned";window.PWNED=1</script><img src=x onerror="window.PWNED=2">'
LABELS = ["The quick brown fox", "jumps over the lazy dog", XSS, "Київ, 1923 р.", "same line"]
PREDS_A = ["The quick brown fax", "jumps ovr the lazy dog.", XSS, "Kиїв, 1923 p.", "same line"]
PREDS_B = ["The quick brown fox", "jumps over the lazy dog", XSS + "!", "Київ, 1923 р.", "same line"]


def _line(path: Path, text: str) -> str:
    img = Image.new("RGB", (900, 48), "white")
    ImageDraw.Draw(img).text((8, 10), text, fill="black", font=ImageFont.load_default(size=24))
    img.save(path)
    return str(path)


def _results(tmp_path: Path, model: str, preds: list[str]) -> dict:
    rows = []
    for i, (label, pred) in enumerate(zip(LABELS, preds)):
        path = _line(tmp_path / f"line{i}.png", label) if i != 4 else str(tmp_path / "missing.png")
        rows.append({"id": f"s{i}", "image_path": path, "label": label, "prediction": pred})
    rows.append({"id": "s5", "image_path": None, "label": "failed", "prediction": None, "error": "HTTP 500"})
    metrics, scored = score_samples(rows, None)
    return build_results(scored, model, None, metrics)


def _visible_ids(b: Browser) -> list[str]:
    return b.run_js(
        "return Array.from(document.querySelectorAll('#samples tbody tr'))"
        ".filter(r => !r.hidden).map(r => r.cells[1].textContent)"
    )


def test_report_renders_sorts_and_filters(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render_report_html(_results(tmp_path, "model-a", PREDS_A)))
    with Browser() as b:
        b.open(page.as_uri(), wait_for_css="#samples tbody tr")
        assert _visible_ids(b) == ["s0", "s1", "s2", "s3", "s4", "s5"]
        # The label's script neither ran nor injected an element: it is text.
        assert b.run_js("return [window.PWNED, document.title]") == [None, "OCR report: model-a"]
        assert b.run_js("return document.querySelectorAll('script').length") == 1
        assert XSS in b.run_js("return document.querySelector('#samples').textContent")
        assert b.run_js("return document.querySelectorAll('img.thumb').length") == 4
        assert b.run_js("return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        b.screenshot(tmp_path / "report.png", full_page=True)

        b.click("th[data-key=cer]")  # ascending; the failed sample (no CER) sorts last
        asc = _visible_ids(b)
        assert asc[-1] == "s5" and asc[:2] in (["s2", "s4"], ["s4", "s2"])
        cers = b.run_js("return Array.from(document.querySelectorAll('#samples tbody tr'))"
                        ".map(r => r.dataset.cer).filter(c => c !== '').map(Number)")
        assert cers == sorted(cers)
        b.click("th[data-key=cer]")  # descending
        assert _visible_ids(b)[0] == "s5" and _visible_ids(b)[1] == "s3"  # "Kиїв ... p." has 2/13 CER
        b.click("th[data-key=idx]")
        assert _visible_ids(b) == ["s0", "s1", "s2", "s3", "s4", "s5"]

        b.click("input[data-only=bad]")  # errors only: mistakes and the failed sample
        assert _visible_ids(b) == ["s0", "s1", "s3", "s5"]
        b.type_text("#q", "lazy")
        assert _visible_ids(b) == ["s1"]
        assert b.run_js("return document.getElementById('shown').textContent") == "1 of 6 rows shown"
        b.click("input[data-only=bad]")
        b.type_text("#q", "КИЇВ")  # case-insensitive, Cyrillic
        assert _visible_ids(b) == ["s3"]
        assert b.console_errors() == []
        b.type_text("#q", "")
        b.screenshot(tmp_path / "report_viewport.png")
    log.info("screenshots in %s", tmp_path)


def test_comparison_renders_and_sorts_by_delta(tmp_path):
    page = tmp_path / "compare.html"
    a, b_res = _results(tmp_path, "base", PREDS_A), _results(tmp_path, "finetuned", PREDS_B)
    b_res["samples"].reverse()
    page.write_text(render_comparison_html(a, b_res))
    with Browser() as b:
        b.open(page.as_uri(), wait_for_css="#samples tbody tr")
        deltas = b.run_js("return Array.from(document.querySelectorAll('#samples tbody tr'))"
                          ".map(r => r.dataset.delta)")
        numeric = [float(d) for d in deltas if d]
        assert numeric == sorted(numeric, reverse=True) and numeric[0] > 0  # B's regression (s2) first
        assert _visible_ids(b)[0] == "s2"
        assert b.run_js("return window.PWNED") is None
        b.click("input[data-only=changed]")
        assert sorted(_visible_ids(b)) == ["s0", "s1", "s2", "s3", "s5"]  # s4 identical; s5 unscored
        b.click("input[data-only=changed]")
        b.click("th[data-key=delta]")  # now ascending: B's biggest gain first
        assert _visible_ids(b)[0] == "s3"  # -2/13
        assert b.console_errors() == []
        b.screenshot(tmp_path / "compare.png", full_page=True)
