"""Headless Chromium for tests: render a page, run JS in it, read its console, screenshot it.

    from tests.browser import Browser, render

    page = render("file:///tmp/report.html", wait_for_css="#samples tbody tr")
    assert not page.console_errors

    with Browser() as b:                      # for interaction
        b.open("http://127.0.0.1:5000", wait_for_css="#root")
        b.click("th[data-key=cer]")
        order = b.run_js("return [...document.querySelectorAll('tr')].map(r => r.id)")
        b.screenshot(tmp_path / "page.png")

Chromium and its driver come from Debian (``apt-get install -y chromium chromium-driver``):
when missing they are installed on first use (CI runs as root on a fresh machine). Only when
that is impossible does the calling test skip, with the reason. Selenium drives the
browser; Selenium Manager is bypassed (binary and driver paths are given), so nothing is
downloaded at run time.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest

log = logging.getLogger(__name__)

CHROMIUM_NAMES = ("chromium", "chromium-browser")
DRIVER_NAMES = ("chromedriver",)
APT_PACKAGES = ("chromium", "chromium-driver")
# Flags that work in this container: no sandbox (root), no GPU, and nothing that phones home.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
# Console messages that are noise rather than page errors.
IGNORED_CONSOLE = ("favicon.ico",)


@dataclass
class PageResult:
    """What :func:`render` saw: the DOM after load, SEVERE console messages, the screenshot."""

    dom: str
    console_errors: list[str] = field(default_factory=list)
    screenshot: Optional[Path] = None


def _which(names: tuple[str, ...]) -> Optional[str]:
    return next((p for p in map(shutil.which, names) if p), None)


def _install() -> Optional[str]:
    """Install Chromium with apt-get; return None on success, else why it failed."""
    if shutil.which("apt-get") is None:
        return "apt-get not found (not a Debian system)"
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            return "not root and no sudo"
        prefix = ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Wait for the dpkg lock rather than fail when another process is installing.
    lock = ["-o", "DPkg::Lock::Timeout=300"]
    for cmd in (["apt-get", *lock, "update", "-qq"], ["apt-get", *lock, "install", "-y", "-qq", *APT_PACKAGES]):
        log.info("installing chromium: %s", " ".join(cmd))
        proc = subprocess.run(prefix + cmd, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            return f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}"
    return None


def ensure_chromium() -> tuple[str, str]:
    """Paths of (chromium, chromedriver), installing them if needed; skips the test if impossible."""
    browser, driver = _which(CHROMIUM_NAMES), _which(DRIVER_NAMES)
    if browser and driver:
        return browser, driver
    why = _install()
    browser, driver = _which(CHROMIUM_NAMES), _which(DRIVER_NAMES)
    if not (browser and driver):
        pytest.skip(f"headless Chromium unavailable and could not be installed: {why or 'binaries not on PATH'}")
    return browser, driver


class Browser:
    """A headless Chromium session (context manager) with a fresh, empty profile."""

    def __init__(self, window_size: tuple[int, int] = (1400, 1000), timeout: float = 30):
        self.window_size = window_size
        self.timeout = timeout
        self.driver: Any = None
        self._profile: Optional[tempfile.TemporaryDirectory] = None

    def __enter__(self) -> "Browser":
        try:
            from selenium import webdriver
            from selenium.webdriver.chrome.service import Service
        except ImportError as err:  # a test extra: fail loudly rather than skip silently
            raise ImportError("tests/browser.py needs selenium: pip install -e '.[test]'") from err

        browser, driver = ensure_chromium()
        self._profile = tempfile.TemporaryDirectory(prefix="ocrft-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self._profile.name}")
        options.add_argument(f"--window-size={self.window_size[0]},{self.window_size[1]}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(executable_path=driver), options=options)
        self.driver.set_page_load_timeout(self.timeout)
        self._errors: list[str] = []
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.driver is not None:
            self.driver.quit()
        if self._profile is not None:
            self._profile.cleanup()

    def open(self, url: str, wait_for_css: Optional[str] = None) -> None:
        """Load ``url``; with ``wait_for_css``, wait until an element matches it."""
        self.driver.get(url)
        if wait_for_css:
            self.wait_for(wait_for_css)

    def wait_for(self, css: str) -> Any:
        """The first element matching ``css``, waiting up to ``timeout`` seconds for it."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, self.timeout).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))

    def run_js(self, script: str, *args: Any) -> Any:
        """Run ``script`` (a function body: use ``return``) in the page."""
        return self.driver.execute_script(script, *args)

    def click(self, css: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.CSS_SELECTOR, css).click()

    def type_text(self, css: str, text: str) -> None:
        from selenium.webdriver.common.by import By

        element = self.driver.find_element(By.CSS_SELECTOR, css)
        element.clear()
        element.send_keys(text)

    @property
    def dom(self) -> str:
        return self.driver.page_source

    def console_errors(self) -> list[str]:
        """SEVERE console messages and uncaught exceptions since the last call (accumulated)."""
        for entry in self.driver.get_log("browser"):
            if entry.get("level") == "SEVERE" and not any(s in entry["message"] for s in IGNORED_CONSOLE):
                self._errors.append(entry["message"])
        return list(self._errors)

    def screenshot(self, path: Path, full_page: bool = False) -> Path:
        """Save a PNG of the viewport, or with ``full_page`` of the whole page (through the
        DevTools protocol, which can capture beyond the viewport)."""
        path = Path(path)
        if not full_page:
            self.driver.save_screenshot(str(path))
            return path
        size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 16000), "scale": 1}
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
        )
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


def render(
    url: str, wait_for_css: Optional[str] = None, timeout: float = 30, screenshot: Optional[Path] = None
) -> PageResult:
    """Open ``url`` in a fresh headless Chromium and return its DOM, console errors and,
    when ``screenshot`` is a path, a PNG of the viewport written there."""
    with Browser(timeout=timeout) as b:
        b.open(url, wait_for_css)
        shot = b.screenshot(screenshot) if screenshot else None
        return PageResult(dom=b.dom, console_errors=b.console_errors(), screenshot=shot)
