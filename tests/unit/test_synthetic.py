"""ocrft.data.synthetic: seeded, byte-reproducible lines and invoices from the machine's fonts."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ocrft.data import synthetic
from ocrft.data.readers import read_json_ocr, read_lines_jsonl
from ocrft.data.synthetic import (
    CHARSETS,
    INVOICE_SIZE,
    find_fonts,
    fonts_for,
    generate_invoices,
    generate_lines,
    missing_glyphs,
    random_text,
    render_line,
)

TINY = Path(__file__).resolve().parents[1] / "assets" / "tiny_ocr"
UK_LETTERS = set("абвгґдеєжзиіїйклмнопрстуфхцчшщьюя")


@pytest.fixture(scope="module")
def sans() -> Path:
    return find_fonts(["DejaVuSans"])[0]


def _pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("height", [16, 32, 48])
def test_render_line_has_the_requested_height_and_tight_width(sans, height):
    short = render_line("ab", sans, 24, height=height)
    long = render_line("ab" * 10, sans, 24, height=height)
    assert short.height == long.height == height
    assert long.width > 5 * short.width  # width follows the text, not a fixed canvas
    arr = np.asarray(long)
    assert arr[:, 0].min() > 240 and arr[:, -1].min() > 240  # blank margins (resampling may tint them)
    assert arr.min() < 64  # there is ink


def test_render_line_effects(sans):
    plain = np.asarray(render_line("Hello", sans, 24), dtype=np.float32)
    inverted = np.asarray(render_line("Hello", sans, 24, invert=True), dtype=np.float32)
    assert np.array_equal(inverted, 255 - plain)
    noisy = np.asarray(render_line("Hello", sans, 24, noise=0.2, rng=random.Random(1)), dtype=np.float32)
    assert noisy[:, :3].std() > 10  # the blank margin is no longer flat
    blurred = np.asarray(render_line("Hello", sans, 24, blur=1.5), dtype=np.float32)
    assert blurred.min() > plain.min()  # ink is spread out
    skewed = [render_line("Hello world", sans, 24, skew=5, rng=random.Random(s)) for s in (1, 2)]
    assert skewed[0].tobytes() != skewed[1].tobytes()  # the angle comes from the rng


def test_generate_lines_is_byte_identical_for_a_seed(tmp_path):
    kwargs = dict(n=6, charset="latin", noise=0.05, blur=0.3, skew=2.0, font_size=[20, 26])
    a = generate_lines(tmp_path / "a", seed=7, **kwargs)
    b = generate_lines(tmp_path / "b", seed=7, **kwargs)
    c = generate_lines(tmp_path / "c", seed=8, **kwargs)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert [r.text for r in a] == [r.text for r in b]
    assert [r.text for r in a] != [r.text for r in c]
    assert _files(tmp_path / "a") != _files(tmp_path / "c")
    assert all(_pixels(r.image).shape[0] == 32 for r in a)


def test_manifest_reads_back_as_the_same_records(tmp_path):
    records = generate_lines(tmp_path, n=5, seed=1, id_prefix="val", fonts=["DejaVuSerif"], font_size=[24, 24])
    assert [r.id for r in records] == [f"val-{i:05d}" for i in range(5)]
    assert read_lines_jsonl(tmp_path / "manifest.jsonl").records == records
    assert {r.meta["font"] for r in records} == {"DejaVuSerif"}
    assert {r.meta["font_size"] for r in records} == {24}


@pytest.mark.parametrize(
    "charset, allowed",
    [
        ("latin", set(CHARSETS["latin"][0]) | {" "}),
        ("cyrillic", set(CHARSETS["cyrillic"][0]) | {" "}),
        ("digits", set("0123456789")),
        ("xyz", set("xyz")),
    ],
)
def test_random_text_stays_in_its_charset_and_length(charset, allowed):
    rng = random.Random(3)
    texts = [random_text(rng, charset, 3, 9) for _ in range(200)]
    assert all(set(t) <= allowed for t in texts)
    assert all(3 <= len(t) <= 9 and t == t.strip() for t in texts)
    assert len(set(texts)) > 150


def test_cyrillic_is_the_ukrainian_alphabet():
    alphabet = set(CHARSETS["cyrillic"][0])
    assert {"ґ", "є", "і", "ї", "Ґ", "Є", "І", "Ї"} <= alphabet
    assert not alphabet & set("ыэъё")  # Russian-only letters
    words = " ".join(CHARSETS["cyrillic"][1])
    assert UK_LETTERS & set(words) and {"ґ", "є", "ї"} <= set(words)


def test_random_text_rejects_bad_lengths():
    with pytest.raises(ValueError, match="min_chars"):
        random_text(random.Random(0), "latin", 5, 4)


def test_fonts_by_name_file_or_default(sans):
    assert sans.name == "DejaVuSans.ttf"
    assert find_fonts([str(sans)]) == [sans]
    default = find_fonts([])
    assert sans in default and all(p.stem.startswith("DejaVu") for p in default)
    assert not any("Math" in p.stem for p in default)
    with pytest.raises(ValueError, match="'NoSuchFont'.*DejaVuSans"):
        find_fonts(["NoSuchFont"])


def test_fonts_that_cannot_draw_the_charset_are_refused(sans, tmp_path):
    assert missing_glyphs(str(sans), "aЖґ 中1ก") == "中ก"
    assert sans in fonts_for("cyrillic")
    with pytest.raises(ValueError, match="no font in data.fonts can draw.*中"):
        generate_lines(tmp_path, n=1, seed=0, charset="中文字")
    assert not list(tmp_path.iterdir())


def test_no_fonts_on_the_machine_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(synthetic, "FONT_DIRS", (tmp_path,))
    with pytest.raises(ValueError, match="no DejaVu fonts found"):
        find_fonts([])


def test_invoices_are_seeded_json_targets(tmp_path):
    a = generate_invoices(tmp_path / "a", n=4, seed=5)
    generate_invoices(tmp_path / "b", n=4, seed=5)
    c = generate_invoices(tmp_path / "c", n=4, seed=6)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert [r.text for r in a] != [r.text for r in c]
    for r in a:
        assert _pixels(r.image).shape[::-1] == INVOICE_SIZE
        fields = json.loads(r.text)
        assert r.text == json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert set(fields) == {"invoice_number", "date", "vendor", "currency", "items", "total"}
        assert 1 <= len(fields["items"]) <= 3
        cents = sum(round(float(it["amount"]) * 100) for it in fields["items"])
        assert fields["total"] == f"{cents // 100}.{cents % 100:02d}"


def test_tiny_ocr_assets_are_what_make_py_renders(tmp_path):
    spec = importlib.util.spec_from_file_location("tiny_ocr_make", TINY / "make.py")
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    rows = make.make(tmp_path)
    assert (tmp_path / "ocr.json").read_text() == (TINY / "ocr.json").read_text()
    assert 8 <= len(rows) <= 16
    for row in rows:
        # pixels, not bytes: a different zlib may compress the same image differently
        assert np.array_equal(_pixels(tmp_path / row["img_path"]), _pixels(TINY / row["img_path"]))
    assert len(read_json_ocr(TINY / "ocr.json").records) == len(rows)
