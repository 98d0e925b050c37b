"""task=studio for real: `python -m ocrft task=studio` in a subprocess over a roots folder
holding a 2-step tiny training, driven by headless Chromium over HTTP: the run is listed,
its results open and sort by CER, before and after compare; no console errors.

With OCRFT_WRITE_SCREENSHOT=1 the Results screenshot goes to docs/studio.png (the README's).
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = [pytest.mark.slow, pytest.mark.integration]

TRAIN = ["model=tiny_qwen2_vl", "data=tiny_ocr", "data.train_ratio=0.5", "data.val_ratio=0.25",
         "train.max_steps=2", "train.per_device_train_batch_size=4", "train.save_steps=100",
         "eval.max_new_tokens=4", "eval.before_after=true"]  # fmt: skip


@pytest.fixture(scope="module")
def train_overrides() -> list[str]:
    return TRAIN


@pytest.fixture(scope="module")
def studio_roots(trained: Path) -> Path:
    """The outputs folder holding the tiny training (tests/fixtures/runs.py): what the studio serves."""
    return trained.parents[1]


def open_tab(b, name: str) -> None:
    tab = b.run_js(
        "return [...document.querySelectorAll('button[role=tab]')].find(e => e.textContent.trim() === arguments[0])", name
    )
    tab.click()


def pick(b, css: str, value: str) -> None:
    """Type a value into a Gradio dropdown that accepts custom values, and commit it."""
    from selenium.webdriver.common.keys import Keys

    box = b.wait_for(f"{css} input")
    box.click()
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(value)
    box.send_keys(Keys.ENTER)
    box.send_keys(Keys.ESCAPE)


def wait_js(b, script: str, timeout: float = 30, *args):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = b.run_js(script, *args)
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for: {script}")


def test_studio_runs_results_compare(studio, trained_record, tmp_path):
    from tests.browser import Browser

    url, record = studio.url, trained_record
    results, before = record["paths"]["results"], record["paths"]["results_before"]
    with Browser(window_size=(1400, 1100)) as b:
        b.open(url, wait_for_css="#runs-table")
        # Runs: the training is listed with its task and status
        wait_js(b, "return document.querySelector('#runs-table').textContent.includes('tiny-run')")
        text = b.run_js("return document.querySelector('#runs-table').textContent")
        assert "train" in text and "finished" in text

        # Results: open the run's results, sort by CER (worst first)
        open_tab(b, "Results")
        pick(b, "#results-file", results)
        wait_js(b, "return document.querySelector('#results-table table#samples')")
        header = b.run_js("return document.querySelector('#results-header').textContent")
        assert "cer" in header and "samples" in header
        b.click("#results-sort input[value='CER, worst first']")
        wait_js(b, "return document.querySelector('#results-sort input[value=\"CER, worst first\"]').checked")
        time.sleep(1.5)  # the table re-renders through the queue
        cers = b.run_js("return [...document.querySelectorAll('#results-table td.cer')].map(e => e.textContent)")
        values = [float("inf") if c == "–" else float(c) for c in cers]
        assert values and values == sorted(values, reverse=True), cers
        assert b.run_js("return document.querySelectorAll('#results-table img.thumb').length") > 0
        assert "edit" in b.run_js("return document.querySelector('#results-confusions').textContent") or \
            "no character edits" in b.run_js("return document.querySelector('#results-confusions').textContent")
        shot = REPO / "docs" / "studio.png" if os.environ.get("OCRFT_WRITE_SCREENSHOT") == "1" else tmp_path / "studio.png"
        b.screenshot(shot)
        assert shot.stat().st_size > 10_000

        # Compare: before (A) and after (B) training on the same test set
        open_tab(b, "Compare")
        pick(b, "#compare-a", before)
        pick(b, "#compare-b", results)
        b.run_js("document.querySelector('#compare-go').click()")  # a closing dropdown list may still cover it
        wait_js(b, "return document.querySelector('#compare-summary table#deltas')")
        summary = b.run_js("return document.querySelector('#compare-summary').textContent")
        assert "better" in summary and "worse" in summary and "the same" in summary
        assert b.run_js("return document.querySelectorAll('#compare-table table#pairs tr').length") > 1
        assert b.console_errors() == []


def test_files_route_serves_reports_only_under_roots(studio, trained_record):
    url, roots, record = studio.url + "/", studio.roots, trained_record
    report = record["paths"].get("results_report")
    if report:
        with urllib.request.urlopen(url + "files/" + str(Path(report).resolve()).lstrip("/")) as resp:
            assert resp.status == 200 and b"<html" in resp.read(2000).lower()
    for path in ("files/etc/passwd", "files/" + str(roots).lstrip("/") + "/../studio.log"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url + path)
        assert err.value.code == 404


def test_login_guards_the_api_and_files(tmp_path):
    """With a login, /api/jobs and /files answer 401 without it and serve with it."""
    from fastapi.testclient import TestClient

    from ocrft.studio.app import build_app
    from tests.helpers import compose

    cfg = compose(["task=studio", f"studio.roots=[{tmp_path}]"]).studio
    (tmp_path / "a.txt").write_text("hello")
    client = TestClient(build_app(cfg, auth=("me", "s3cret")), base_url="http://127.0.0.1")
    target = "/files/" + str((tmp_path / "a.txt").resolve()).lstrip("/")
    for path in ("/api/jobs", target):
        assert client.get(path).status_code == 401
        assert client.get(path, auth=("me", "wrong")).status_code == 401
        assert client.get(path, auth=("me", "s3cret")).status_code == 200
    assert client.get(target, auth=("me", "s3cret")).text == "hello"
