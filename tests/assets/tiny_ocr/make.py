"""Regenerate the tiny OCR dataset shipped with the tests (12 line PNGs + ocr.json).

    python tests/assets/tiny_ocr/make.py

The images are rendered with ocrft's own synthetic renderer and a DejaVu font, so the
set is reproducible on any machine with fonts-dejavu; ocr.json is Gemma-OCR format with
image paths relative to this folder.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

# Latin and Ukrainian lines, short enough for a tiny model to fit in a few steps.
TEXTS = (
    "hello world",
    "the quick fox",
    "invoice 2024",
    "Kyiv 01037",
    "river house",
    "page 17",
    "добрий день",
    "ґанок і їжак",
    "Європа",
    "місто Львів",
    "total 42.50",
    "OCR test line",
)
FONTS = ("DejaVuSans", "DejaVuSerif", "DejaVuSansMono")

log = logging.getLogger(__name__)


def make(out_dir: Path) -> list[dict]:
    """Render the images and write ocr.json into ``out_dir``; return the JSON rows."""
    from ocrft.data.synthetic import find_fonts, render_line

    fonts = find_fonts(FONTS)
    rows = []
    for i, text in enumerate(TEXTS):
        name = f"line_{i:02d}.png"
        im = render_line(text, fonts[i % len(fonts)], 22, height=32, rng=random.Random(i))
        im.save(out_dir / name, format="PNG")
        rows.append({"img_path": name, "ocr_results": text})
    (out_dir / "ocr.json").write_text(json.dumps(rows, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %d images and ocr.json to %s", len(rows), out_dir)
    return rows


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    make(Path(__file__).resolve().parent)
