"""The studio's Playground, driven in headless Chromium over HTTP on 127.0.0.1.

The studio runs as a real child process (``python -m ocrft task=studio``). It transcribes an
uploaded line with the shipped demo base, and with a local OpenAI-compatible server
(tests/fake_openai.py) reached with a key typed into the password field; afterwards that
key is in no file the studio could have written.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from tests.browser import Browser
from tests.fake_openai import FakeOpenAI
from tests.helpers import REPO

LINE = REPO / "tests" / "assets" / "tiny_ocr" / "line_00.png"
FAKE_ANSWER = "answered by the fake endpoint"


class _AnyImage(dict):
    """FakeOpenAI's labels: one answer whatever image bytes arrive (gradio may re-encode uploads)."""

    def __missing__(self, sha: str) -> str:
        return FAKE_ANSWER


def _open_playground(b: Browser, url: str) -> None:
    b.open(url, wait_for_css="button[role=tab]")
    tab = _wait(b, lambda: b.run_js(
        "return [...document.querySelectorAll('button[role=tab]')].find(t => t.textContent.trim() === 'Playground')"),
        "the Playground tab", timeout=30)  # fmt: skip
    tab.click()
    b.wait_for("#pg-image input[type=file]")
    b.wait_for("#pg-run")


def _value(b: Browser, css: str) -> str:
    return b.run_js(f"const e = document.querySelector({css!r}); return e ? e.value : null")


def _wait(b: Browser, check, what: str, timeout: float = 90, show=lambda: ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what} {show()}")


def _upload_and_run(b: Browser, expect_col: str) -> dict:
    """Upload the line, press Transcribe; the result column whose source starts with ``expect_col``."""
    b.driver.find_element("css selector", "#pg-image input[type=file]").send_keys(str(LINE))
    _wait(b, lambda: b.run_js("return !!document.querySelector('#pg-image img')"), "the uploaded image")
    b.run_js("const o = document.querySelector('#pg-out'); if (o) o.setAttribute('data-seen', '')")
    b.click("#pg-run")
    script = ("const c = [...document.querySelectorAll('#pg-results .pg-col')].find(c => c.dataset.source.startsWith(arguments[0]));"
              "if (!c) return null; const q = s => { const e = c.querySelector(s); return e ? e.textContent : null };"
              "return {text: q('.pg-text'), seconds: q('.pg-seconds'), tokens: q('.pg-tokens'), error: q('.pg-error')}")
    return _wait(b, lambda: b.run_js(script, expect_col), f"a result from {expect_col}", timeout=120)


def test_transcribe_uploaded_line_with_demo_base(studio):
    url = studio.url
    with Browser() as b:
        _open_playground(b, url)
        assert _value(b, "#pg-prompt textarea") == "Read the line."  # prompt=ocr_line, the default
        assert _value(b, "#pg-local textarea").strip() == "asset:demo_base"
        row = _upload_and_run(b, "asset:demo_base")
        assert row["error"] is None, row["error"]
        assert row["text"].strip(), row
        assert row["seconds"].endswith(" s") and float(row["seconds"][:-2]) > 0
        assert int(row["tokens"]) > 0
        assert b.console_errors() == []


def _set_text(b: Browser, css: str, text: str) -> None:
    """Replace a textbox's text with key presses, so that gradio sees every change (an empty one too)."""
    from selenium.webdriver.common.keys import Keys

    box = b.driver.find_element("css selector", css)
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACKSPACE)
    if text:
        box.send_keys(text)


def test_pick_a_sample_from_a_data_file_shows_cer_and_diff(studio):
    url = studio.url
    with Browser() as b:
        _open_playground(b, url)
        b.click("#pg-data-set button, #pg-data-set")  # open the accordion
        b.wait_for("#pg-source textarea")
        _set_text(b, "#pg-source textarea", str(LINE.parent / "ocr.json"))
        b.click("#pg-load")
        _pick(b, "#pg-sample", "line_00.png: hello world")
        _wait(b, lambda: _value(b, "#pg-reference textarea") == "hello world", "the sample's label")
        _wait(b, lambda: b.run_js("return !!document.querySelector('#pg-image img')"), "the sample's image")
        b.click("#pg-run")
        cer = _wait(b, lambda: b.run_js("return document.querySelector('#pg-results .pg-cer')?.textContent"), "the CER")
        assert cer.startswith("CER ")
        assert b.run_js("return document.querySelectorAll('#pg-results .pg-diff').length") == 1
        assert b.console_errors() == []


def _pick(b: Browser, css: str, option: str) -> None:
    """Choose ``option`` in a gradio Dropdown (type it, then click the listed option)."""
    from selenium.webdriver.common.keys import Keys

    box = b.driver.find_element("css selector", f"{css} input")
    box.click()
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(option)
    item = _wait(b, lambda: b.run_js(
        "return [...document.querySelectorAll('li[data-testid=dropdown-option]')].find(li => li.getAttribute('aria-label') === arguments[0])",
        option), f"option {option}", timeout=15)  # fmt: skip
    item.click()


def test_endpoint_key_is_used_and_written_nowhere(studio, tmp_path):
    url, folder = studio.url, studio.folder
    key, wrong = f"pgkey-{uuid.uuid4().hex}", f"pgwrong-{uuid.uuid4().hex}"
    started = time.time()
    with FakeOpenAI(_AnyImage(), api_key=key) as fake, Browser() as b:
        _open_playground(b, url)
        _set_text(b, "#pg-local textarea", "")  # the endpoint alone
        _pick(b, "#pg-provider", "ocrft")
        _wait(b, lambda: _value(b, "#pg-base-url textarea") == "http://127.0.0.1:8000/v1", "the provider's base URL")
        _set_text(b, "#pg-base-url textarea", fake.url)
        # A wrong key first: the server echoes it back in its 401, and the studio must not show it.
        _set_text(b, "#pg-key input", wrong)
        row = _upload_and_run(b, "ocrft:")
        assert row["error"] and "401" in row["error"], row
        assert wrong not in b.dom
        _set_text(b, "#pg-key input", key)
        b.click("#pg-run")
        _wait(b, lambda: FAKE_ANSWER in (b.run_js("return document.querySelector('#pg-results .pg-text')?.textContent") or ""),
              "the endpoint's answer", timeout=30, show=lambda: b.run_js("return document.querySelector('#pg-out').innerText"))
        assert b.run_js("return document.querySelector('#pg-key input').type") == "password"
        assert b.console_errors() == []
    assert fake.log and fake.log[-1]["outcome"] == "ok"  # the typed key did reach the server
    roots = [folder, REPO, Path(os.environ.get("OCRFT_CACHE", folder)), tmp_path, Path("/tmp")]
    canary = folder / "gradio" / "canary.txt"  # the scan does find a key where one is written
    canary.parent.mkdir(exist_ok=True)
    canary.write_text(f"x{key}x")
    assert str(canary) in [str(p) for p in _files_since(roots, started) if _holds(p, (key.encode(),))]
    canary.unlink()
    leaks = [str(p) for p in _files_since(roots, started) if _holds(p, (key.encode(), wrong.encode()))]
    assert leaks == []


def _holds(path: Path, needles: tuple[bytes, ...]) -> bool:
    try:
        if path.stat().st_size > 200_000_000:
            return False
        data = path.read_bytes()
    except OSError:
        return False
    return any(n in data for n in needles)


def _files_since(roots: list[Path], since: float):
    """Regular files under ``roots`` written since ``since`` (the studio's cache, logs, runs, /tmp)."""
    seen = set()
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in (".git", ".venv", "proc")]
            for name in filenames:
                path = Path(dirpath) / name
                try:
                    if path.is_file() and not path.is_symlink() and path.stat().st_mtime >= since - 1 and path not in seen:
                        seen.add(path)
                        yield path
                except OSError:
                    continue


def test_save_prompt_writes_new_names_only(tmp_path):
    from ocrft.studio.playground import list_prompts, read_prompt, save_prompt

    path = save_prompt("my_lines", "Read: the line.\nOnly the text.", "You are an OCR engine.", prompt_dir=tmp_path)
    assert path == tmp_path / "my_lines.yaml" and "base_prompt" in path.read_text()
    assert list_prompts(tmp_path) == ["my_lines"]
    assert read_prompt("my_lines", tmp_path) == ("Read: the line.\nOnly the text.", "You are an OCR engine.")
    with pytest.raises(ValueError, match="exists already"):
        save_prompt("my_lines", "other", prompt_dir=tmp_path)
    for bad in ("", "../evil", "a/b", "base_prompt", "1st", "x" * 65, "has space"):
        with pytest.raises(ValueError, match="bad prompt name"):
            save_prompt(bad, "text", prompt_dir=tmp_path)
    with pytest.raises(ValueError, match="empty"):
        save_prompt("blank", "  ", prompt_dir=tmp_path)
    assert read_prompt("../conf/prompt/ocr", tmp_path) == ("", "")  # only names listed in the folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_lines.yaml"]


def test_data_samples_from_a_data_file_and_a_results_file(tmp_path):
    import json

    from ocrft.studio.playground import data_samples

    rows = data_samples(str(REPO / "tests" / "assets" / "tiny_ocr" / "ocr.json"))
    assert rows[0][1] == str(LINE) and rows[0][2] == "hello world"
    results = {"samples": [{"id": "a", "image_path": str(LINE), "label": "hello world", "prediction": "x"}]}
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert data_samples(str(tmp_path / "results.json")) == [("a: hello world", str(LINE), "hello world")]
    assert [r[1] for r in data_samples(str(LINE.parent))][:1] == [str(LINE)]
    with pytest.raises(ValueError):
        data_samples(str(tmp_path / "missing.txt"))
