"""Regenerate the bad-input corpus the reader tests run against.

    python tests/assets/bad_input/make.py

Every file is written byte for byte (``.gitattributes`` keeps git from touching line
endings), so the line numbers the tests expect are the ones written below.

Images: good.png; truncated.png (first half of a PNG); empty.png (0 bytes);
jpeg_named.png (JPEG bytes, .png name: readable); not_an_image.png (text); bomb.png
(6 KB PNG claiming 7000x7000 pixels).
Labels: broken.json (syntax error line 6 col 3); bad_records.json (one bad record per
kind, see RECORDS_JSON); non_utf8.json / non_utf8.jsonl (a Latin-1 byte on line 3);
mixed_newlines.jsonl (BOM, CRLF and LF lines, malformed line 4); bad_values.jsonl (one
bad row per kind, see BAD_VALUES).

For the command-line corpus (tests/integration/test_bad_input_cli.py), see CLI_FILES:
one_<image>.jsonl (one row naming each bad image, so the CLI stops at that image);
utf16.json; lines_named.json (JSONL under a .json name); png_named.jsonl (an image given
as the label file); cut_off.json / cut_off.jsonl (a file cut short mid-record, as a killed
non-atomic writer leaves it); PAGE/ALTO exports whose namespace is wrong: page_undated_ns/
(a PAGE namespace without a schema date: no version to read it as), page_foreign_ns/ (PcGts outside the PAGE namespace),
alto_unknown_ns/ (ALTO ns-v9).
"""

from __future__ import annotations

import io
import logging
import random
import struct
import zlib
from pathlib import Path

log = logging.getLogger(__name__)

BROKEN_JSON = b"""[
  {"img_path": "good.png", "ocr_results": "first"},
  {"img_path": "good.png", "ocr_results": "second"},
  {
    "img_path": "good.png"
  "ocr_results": "missing comma above"}
]
"""

# record index -> problem: [0] ok (line 2), [1] missing ocr_results (line 6), [2] non-string
# text (line 9), [3] empty text (line 13), [4] missing image (line 17), [5] truncated
# image (line 21), [6] JPEG named .png, ok (line 25), [7] not an object (line 29)
RECORDS_JSON = b"""[
  {
    "img_path": "good.png",
    "ocr_results": "good line"
  },
  {
    "img_path": "good.png"
  },
  {
    "img_path": "good.png",
    "ocr_results": 42
  },
  {
    "img_path": "good.png",
    "ocr_results": ""
  },
  {
    "img_path": "missing.png",
    "ocr_results": "no such image"
  },
  {
    "img_path": "truncated.png",
    "ocr_results": "cut short"
  },
  {
    "img_path": "jpeg_named.png",
    "ocr_results": "a jpeg in disguise"
  },
  "not an object"
]
"""

NON_UTF8_JSON = (
    b'[\n  {"img_path": "good.png", "ocr_results": "ok"},\n'
    b'  {"img_path": "good.png", "ocr_results": "caf\xe9"},\n'
    b'  {"img_path": "good.png", "ocr_results": "also ok"}\n]\n'
)
NON_UTF8_JSONL = (
    b'{"image": "good.png", "response": "one"}\n'
    b'{"image": "good.png", "response": "two"}\n'
    b'{"image": "good.png", "response": "caf\xe9"}\n'
    b'{"image": "good.png", "response": "four"}\n'
)
MIXED_NEWLINES_JSONL = (
    b"\xef\xbb\xbf"
    b'{"image": "good.png", "response": "crlf one", "text": "Read this line."}\r\n'
    b'{"image": "good.png", "response": "lf two"}\n'
    b'{"image": "good.png", "response": "crlf three"}\r\n'
    b'{"image": "good.png", "response": "broken"\n'
    b'{"image": "good.png", "response": "crlf five"}\r\n'
)
# line -> reason when skipped
BAD_VALUES = {
    1: ('{"image": "good.png", "response": "fine", "id": "first"}', None),
    2: ('{"image": "good.png", "response": 42}', "non_string_text"),
    3: ('{"image": "good.png", "response": ""}', "empty_text"),
    4: ('{"image": "good.png", "response": "   "}', "empty_text"),
    5: ('{"image": "good.png"}', "missing_key"),
    6: ('{"image": "missing.png", "response": "x"}', "missing_image"),
    7: ('{"image": "truncated.png", "response": "x"}', "unreadable_image"),
    8: ('{"image": "empty.png", "response": "x"}', "unreadable_image"),
    9: ("[1, 2]", "malformed_line"),
    10: ('{"image": "jpeg_named.png", "response": "fine too"}', None),
    11: ('{"image": "not_an_image.png", "response": "x"}', "unreadable_image"),
    12: ('{"image": "good.png", "response": "dup", "id": "first"}', "duplicate_id"),
}


PAGE_XML = """<?xml version="1.0" encoding="UTF-8"?>
<PcGts xmlns="{ns}">
  <Page imageFilename="good.png" imageWidth="100" imageHeight="30">
    <TextRegion id="r1">
      <TextLine id="l1">
        <Coords points="0,0 90,0 90,25 0,25"/>
        <TextEquiv><Unicode>good line</Unicode></TextEquiv>
      </TextLine>
    </TextRegion>
  </Page>
</PcGts>
"""
ALTO_XML = """<?xml version="1.0" encoding="UTF-8"?>
<alto xmlns="{ns}">
  <Description><sourceImageInformation><fileName>good.png</fileName></sourceImageInformation></Description>
  <Layout><Page WIDTH="100" HEIGHT="30"><PrintSpace><TextBlock ID="b1">
    <TextLine ID="l1" HPOS="0" VPOS="0" WIDTH="90" HEIGHT="25"><String CONTENT="good"/><SP/><String CONTENT="line"/></TextLine>
  </TextBlock></PrintSpace></Page></Layout>
</alto>
"""
CUT_OFF_JSON = b'[\n  {"img_path": "good.png", "ocr_results": "whole"},\n  {"img_path": "good.png", "ocr_res'
CUT_OFF_JSONL = b'{"image": "good.png", "response": "whole"}\n{"image": "good.png", "respo'


def cli_files(good_png: bytes) -> dict[str, bytes]:
    """The files only the command-line corpus uses (see the module docstring)."""
    files = {f"one_{stem}.jsonl": f'{{"image": "{stem}.png", "response": "x"}}\n'.encode()
             for stem in ("empty", "truncated", "not_an_image", "bomb", "missing")}
    files.update({
        "utf16.json": '[{"img_path": "good.png", "ocr_results": "x"}]'.encode("utf-16"),
        "lines_named.json": b'{"img_path": "good.png", "ocr_results": "one"}\n{"img_path": "good.png", "ocr_results": "two"}\n',
        "png_named.jsonl": good_png,
        "cut_off.json": CUT_OFF_JSON,
        "cut_off.jsonl": CUT_OFF_JSONL,
        "page_undated_ns/page.xml": PAGE_XML.format(ns="http://schema.primaresearch.org/PAGE/gts/pagecontent/draft").encode(),
        "page_undated_ns/good.png": good_png,
        "page_foreign_ns/page.xml": PAGE_XML.format(ns="http://example.com/not-page").encode(),
        "page_foreign_ns/good.png": good_png,
        "alto_unknown_ns/page.xml": ALTO_XML.format(ns="http://www.loc.gov/standards/alto/ns-v9#").encode(),
        "alto_unknown_ns/good.png": good_png,
    })
    return files


def _png(im) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _bomb_png(size: int = 7000) -> bytes:
    """A valid 1-bit PNG of size x size white-free pixels that compresses to a few KB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes((size + 7) // 8)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * size, 9)) + chunk(b"IEND", b""))


def make(out_dir: Path) -> None:
    """Write every corpus file into ``out_dir``."""
    from ocrft.data.synthetic import find_fonts, render_line

    good = render_line("good line", find_fonts(["DejaVuSans"])[0], 22, rng=random.Random(0))
    good_png = _png(good)
    jpeg = io.BytesIO()
    good.convert("RGB").save(jpeg, format="JPEG", quality=90)
    files = {
        "good.png": good_png,
        "truncated.png": good_png[: len(good_png) // 2],
        "empty.png": b"",
        "jpeg_named.png": jpeg.getvalue(),
        "not_an_image.png": b"this is a text file, not an image\n",
        "bomb.png": _bomb_png(),
        "broken.json": BROKEN_JSON,
        "bad_records.json": RECORDS_JSON,
        "non_utf8.json": NON_UTF8_JSON,
        "non_utf8.jsonl": NON_UTF8_JSONL,
        "mixed_newlines.jsonl": MIXED_NEWLINES_JSONL,
        "bad_values.jsonl": "".join(row + "\n" for row, _ in BAD_VALUES.values()).encode(),
        ".gitattributes": b"# byte-exact test inputs: no line-ending conversion\n* -text\n",
        **cli_files(good_png),
    }
    for name, data in files.items():
        (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (out_dir / name).write_bytes(data)
    log.info("wrote %d files to %s", len(files), out_dir)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    make(Path(__file__).resolve().parent)
