"""Synthetic data rendered with the fonts on this machine: text lines and invoices.

Everything is seeded: the same arguments give byte-identical PNGs, so a cache keyed by
the settings (ocrft.data.loading) can reuse them across runs. Each generator writes
``<out_dir>/<id>.png`` files and ``<out_dir>/manifest.jsonl`` rows
``{"id", "image", "text", ...}`` with ``image`` relative to ``out_dir`` (readable by the
``lines_jsonl`` reader).
"""

from __future__ import annotations

import json
import logging
import random
import string
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

from ocrft import atomic
from ocrft.config import ConfigError
from ocrft.data.record import Record

log = logging.getLogger(__name__)

# Bump when rendering changes, so caches keyed on generator settings are not reused.
GENERATOR_VERSION = 1
FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path("~/.fonts"), Path("~/.local/share/fonts"))
INVOICE_SIZE = (384, 256)

_UK_UPPER = "АБВГҐДЕЄЖЗИІЇЙКЛМНОПРСТУФХЦЧШЩЬЮЯ"
# name -> (alphabet for random strings, words); any other data.charset is a literal alphabet
CHARSETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "latin": (
        string.ascii_letters + string.digits + ".,;:!?'-()",
        tuple(
            "the of and to in is was for on that with as by at from this have not are but "
            "page letter river house north garden winter market paper church village street "
            "number record ledger county mill harbour station quick brown fox jumps over lazy dog".split()
        ),
    ),
    "cyrillic": (
        _UK_UPPER + _UK_UPPER.lower() + string.digits + ".,;:!?'-",
        tuple(
            "і в на що та до не як за від це але його року "
            "ґанок їжак єдність ґудзик їхній європа сім'я україна київ річка село "
            "місто поле книга лист хата вода земля слово пісня день ніч зима осінь".split()
        ),
    ),
    "digits": (string.digits, ()),
}

_VENDORS = ("Acme Ltd", "Northwind GmbH", "Globex SA", "Initech LLC", "Umbrella Co", "Stark & Sons",
            "Hooli Inc", "Vandelay Imports", "Wayne Supplies", "Kyiv Print")
_ITEMS = ("Printer paper A4", "Toner cartridge", "Office chair", "USB cable", "Desk lamp",
          "Consulting hour", "Shipping", "Notebook", "Monitor 24in", "Coffee beans 1kg")
_CURRENCIES = ("EUR", "USD", "UAH", "GBP", "PLN")


def find_fonts(fonts: Sequence[str] = ()) -> list[Path]:
    """Resolve ``data.fonts`` to font files.

    Args:
        fonts: font file paths, or names matched against font file stems under
            ``FONT_DIRS`` (e.g. ``"DejaVuSerif"``); empty means every DejaVu text font found.

    Raises:
        ConfigError: when a font is not found, or no DejaVu font is installed.
    """
    installed = sorted(
        p for d in FONT_DIRS if d.expanduser().is_dir()
        for p in d.expanduser().rglob("*") if p.suffix.lower() in (".ttf", ".otf")
    )
    if not fonts:
        # the math font lacks most of the Latin/Cyrillic text glyphs
        found = [p for p in installed if p.stem.startswith("DejaVu") and "Math" not in p.stem]
        if not found:
            dirs = ", ".join(str(d) for d in FONT_DIRS)
            raise ConfigError(f"data.fonts=[]: no DejaVu fonts found under {dirs}; install fonts-dejavu-core or "
                              "name fonts in data.fonts")
        return found
    by_stem: dict[str, Path] = {}
    for p in installed:
        by_stem.setdefault(p.stem.lower(), p)
    out = []
    for entry in fonts:
        path = Path(entry).expanduser()
        if path.is_file():
            out.append(path)
        elif str(entry).lower() in by_stem:
            out.append(by_stem[str(entry).lower()])
        else:
            known = sorted(p.stem for p in installed)[:30]
            raise ConfigError(f"data.fonts: font {entry!r} is neither a file nor an installed font; installed: {known}")
    return out


def charset_alphabet(charset: str) -> tuple[str, tuple[str, ...]]:
    """Return (alphabet, words) for a charset name, or a literal alphabet with no words."""
    if charset in CHARSETS:
        return CHARSETS[charset]
    alphabet = "".join(dict.fromkeys(c for c in charset if not c.isspace()))
    if not alphabet:
        raise ConfigError(f"data.charset={charset!r}: expected {sorted(CHARSETS)} or a literal alphabet")
    return alphabet, ()


def random_text(rng: random.Random, charset: str, min_chars: int, max_chars: int) -> str:
    """A seeded line: whole words from the charset's word list, or a random string."""
    if not 1 <= min_chars <= max_chars:
        raise ConfigError(f"data.min_chars={min_chars} must be >= 1 and <= data.max_chars={max_chars}")
    alphabet, words = charset_alphabet(charset)
    n = rng.randint(min_chars, max_chars)
    if words and rng.random() < 0.5:
        picked: list[str] = []
        while len(" ".join(picked + [w := rng.choice(words)])) <= n:
            picked.append(w.capitalize() if rng.random() < 0.2 else w)
        if len(" ".join(picked)) >= min_chars:
            return " ".join(picked)
    return "".join(rng.choice(alphabet) for _ in range(n))


@lru_cache(maxsize=64)
def _font(path: str, size: int):
    from PIL import ImageFont

    return ImageFont.truetype(path, size)


@lru_cache(maxsize=256)
def missing_glyphs(font_path: str, chars: str) -> str:
    """The characters of ``chars`` that ``font_path`` cannot draw (they come out as the
    font's "missing glyph" box, which would silently teach the model tofu)."""
    font = _font(font_path, 24)

    def drawn_as(c: str) -> tuple:
        mask = font.getmask(c)
        return mask.size, bytes(mask)

    missing = drawn_as("\U0010FFFD")  # a private-use code point no text font maps
    return "".join(c for c in dict.fromkeys(chars) if not c.isspace() and drawn_as(c) == missing)


def fonts_for(charset: str, fonts: Sequence[str] = ()) -> list[Path]:
    """The fonts of ``find_fonts(fonts)`` that can draw every character of ``charset``.

    Raises:
        ConfigError: when none can, naming the characters the fonts lack.
    """
    alphabet, words = charset_alphabet(charset)
    chars = "".join(sorted(set(alphabet + "".join(words))))
    candidates = find_fonts(fonts)
    lacking = {p: missing_glyphs(str(p), chars) for p in candidates}
    usable = [p for p in candidates if not lacking[p]]
    for p in candidates:
        if lacking[p]:
            log.warning("font %s lacks %r; not used for charset %r", p.name, lacking[p][:20], charset)
    if not usable:
        worst = min(lacking.values(), key=len)
        raise ConfigError(f"data.charset={charset!r}: no font in data.fonts can draw it (missing {worst[:20]!r}); "
                          "install a font that covers it and name it in data.fonts")
    return usable


def _degrade(im, rng: random.Random, noise: float, blur: float, *, invert: bool):
    """Blur, then gaussian pixel noise (std ``noise`` of full scale), then optional inversion."""
    from PIL import Image, ImageFilter, ImageOps

    if blur > 0:
        im = im.filter(ImageFilter.GaussianBlur(blur))
    if noise > 0:
        import numpy as np

        arr = np.asarray(im, dtype=np.float32)
        arr = arr + np.random.default_rng(rng.getrandbits(64)).normal(0.0, noise * 255.0, arr.shape)
        im = Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8), mode="L")
    return ImageOps.invert(im) if invert else im


def render_line(
    text: str,
    font_path: str | Path,
    font_size: int,
    height: int = 32,
    *,
    noise: float = 0.0,
    blur: float = 0.0,
    skew: float = 0.0,
    invert: bool = False,
    rng: Optional[random.Random] = None,
):
    """Render one text line as a grayscale ``PIL.Image`` of exactly ``height`` pixels.

    The line is drawn black on white with a margin, its box spanning the font's full
    ascent and descent (so all lines share a baseline scale whatever their letters),
    rotated by up to ``skew`` degrees, then scaled to ``height`` keeping the aspect ratio.
    """
    from PIL import Image, ImageDraw

    rng = rng or random.Random(0)
    font = _font(str(font_path), int(font_size))
    left, top, right, bottom = font.getbbox(text)
    ascent, descent = font.getmetrics()
    top, bottom = min(0, top), max(ascent + descent, bottom)
    margin = max(2, font_size // 6)
    im = Image.new("L", (right - left + 2 * margin, bottom - top + 2 * margin), 255)
    ImageDraw.Draw(im).text((margin - left, margin - top), text, font=font, fill=0)
    if skew > 0:
        im = im.rotate(rng.uniform(-skew, skew), resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)
    im = im.resize((max(1, round(im.width * height / im.height)), height), Image.Resampling.LANCZOS)
    return _degrade(im, rng, noise, blur, invert=invert)


def _save(out_dir: Path, rows: list[dict], images: list) -> list[Record]:
    """Write PNGs and the manifest; return records with absolute image paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for row, im in zip(rows, images):
        # plain writes: the manifest, written atomically last, is what marks the set complete
        im.save(out_dir / row["image"], format="PNG")
        meta = {k: v for k, v in row.items() if k not in ("id", "image", "text")}
        image = str((out_dir / row["image"]).absolute())
        records.append(Record(id=row["id"], image=image, text=row["text"], meta=meta))
    atomic.write_jsonl(out_dir / "manifest.jsonl", rows)
    log.info("wrote %d synthetic images to %s", len(rows), out_dir)
    return records


def generate_lines(
    out_dir: str | Path,
    n: int,
    seed: int,
    charset: str = "latin",
    min_chars: int = 4,
    max_chars: int = 12,
    fonts: Sequence[str] = (),
    font_size: Sequence[int] = (22, 26),
    noise: float = 0.0,
    blur: float = 0.0,
    skew: float = 0.0,
    invert: bool = False,
    image_height: int = 32,
    id_prefix: str = "line",
) -> list[Record]:
    """Render ``n`` seeded text lines into ``out_dir`` (PNGs + manifest.jsonl).

    Args mirror ``data.*`` (see DataConfig); ``font_size`` is an inclusive [lo, hi] range
    and each line draws its font and size at random. Ids are ``<id_prefix>-<index>``.
    """
    font_paths = fonts_for(charset, fonts)
    lo, hi = font_size
    rng = random.Random(seed)
    rows, images = [], []
    for i in range(n):
        text = random_text(rng, charset, min_chars, max_chars)
        font, size = rng.choice(font_paths), rng.randint(lo, hi)
        images.append(render_line(text, font, size, image_height, noise=noise, blur=blur, skew=skew, invert=invert,
                                  rng=rng))
        name = f"{id_prefix}-{i:05d}"
        rows.append({"id": name, "image": f"{name}.png", "text": text, "font": font.stem, "font_size": size})
    return _save(Path(out_dir), rows, images)


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _invoice_fields(rng: random.Random) -> dict:
    items, total_cents = [], 0
    for _ in range(rng.randint(1, 3)):
        qty, cents = rng.randint(1, 9), rng.randint(100, 20000)
        total_cents += qty * cents  # integer cents: the total must add up exactly
        items.append({"description": rng.choice(_ITEMS), "quantity": qty, "amount": _money(qty * cents)})
    return {
        "invoice_number": f"INV-{rng.randint(1000, 99999)}",
        "date": (date(2023, 1, 1) + timedelta(days=rng.randint(0, 729))).isoformat(),
        "vendor": rng.choice(_VENDORS),
        "currency": rng.choice(_CURRENCIES),
        "items": items,
        "total": _money(total_cents),
    }


def render_invoice(fields: dict, font_path: str | Path, rng: random.Random, noise: float = 0.0, *, blur: float = 0.0):
    """Draw an invoice (header fields, item lines, total) on an ``INVOICE_SIZE`` page."""
    from PIL import Image, ImageDraw

    w, h = INVOICE_SIZE
    im = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(im)
    small, big = _font(str(font_path), 14), _font(str(font_path), 20)
    x, right = 12 + rng.randint(0, 12), w - 12 - rng.randint(0, 12)
    draw.text((x, 10), "INVOICE", font=big, fill=0)
    for y, line in ((40, f"No. {fields['invoice_number']}"), (60, f"Date: {fields['date']}"),
                    (80, f"From: {fields['vendor']}")):
        draw.text((x, y), line, font=small, fill=0)
    draw.line((x, 104, right, 104), fill=0)
    y = 112
    for it in fields["items"]:
        draw.text((x, y), f"{it['quantity']} x {it['description']}", font=small, fill=0)
        draw.text((right, y), it["amount"], font=small, fill=0, anchor="ra")
        y += 22
    draw.line((x, y + 4, right, y + 4), fill=0)
    draw.text((right, y + 14), f"Total: {fields['total']} {fields['currency']}", font=small, fill=0, anchor="ra")
    return _degrade(im, rng, noise, blur, invert=False)


def generate_invoices(
    out_dir: str | Path,
    n: int,
    seed: int,
    fonts: Sequence[str] = (),
    noise: float = 0.0,
    blur: float = 0.0,
    id_prefix: str = "invoice",
) -> list[Record]:
    """Render ``n`` seeded invoices; each target is the compact, key-sorted JSON of its fields."""
    font_paths = fonts_for("latin", fonts)
    rng = random.Random(seed)
    rows, images = [], []
    for i in range(n):
        fields = _invoice_fields(rng)
        font = rng.choice(font_paths)
        images.append(render_invoice(fields, font, rng, noise, blur=blur))
        text = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        name = f"{id_prefix}-{i:05d}"
        rows.append({"id": name, "image": f"{name}.png", "text": text, "font": font.stem})
    return _save(Path(out_dir), rows, images)
