"""Files the tests feed ocrft, built on the fly: PNG headers, ALTO and PAGE-XML pages, a
Transkribus-style export."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from PIL import Image

PAGE_NS = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"
ALTO_NS = "http://www.loc.gov/standards/alto/ns-v4#"
NS2013 = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2013-07-15"


def png_claiming(width: int, height: int) -> bytes:
    """A valid ~100-byte PNG whose header claims ``width`` x ``height`` grayscale pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def alto_file(path: Path, image: str, size: tuple[int, int], lines: list[tuple[str, tuple, list[str]]]) -> Path:
    """A Tesseract-style ALTO: each line a box and its words as String elements with SP between."""
    body = []
    for lid, (x, y, w, h), words in lines:
        parts = []
        for k, word in enumerate(words):
            if k:
                parts.append('<SP WIDTH="8"/>')
            parts.append(f'<String ID="{lid}_w{k}" HPOS="{x}" VPOS="{y}" WIDTH="10" HEIGHT="{h}" CONTENT="{word}"/>')
        body.append(f'<TextLine ID="{lid}" HPOS="{x}" VPOS="{y}" WIDTH="{w}" HEIGHT="{h}">{"".join(parts)}</TextLine>')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'<?xml version="1.0" encoding="UTF-8"?>\n<alto xmlns="{ALTO_NS}"><Description>'
        "<MeasurementUnit>pixel</MeasurementUnit>"
        f"<sourceImageInformation><fileName>{image}</fileName></sourceImageInformation></Description>"
        f'<Layout><Page ID="page_0" WIDTH="{size[0]}" HEIGHT="{size[1]}"><PrintSpace>'
        f'<TextBlock ID="block_0">\n' + "\n".join(body) + "\n</TextBlock></PrintSpace></Page></Layout></alto>\n",
        encoding="utf-8",
    )
    return path


def page_file(path: Path, image: str, size: tuple[int, int], lines: list[tuple[str, str, str]]) -> Path:
    """A PAGE-XML (kraken/Transkribus style): TextLines with Coords points and a TextEquiv."""
    body = "\n".join(
        f'<TextLine id="{lid}"><Coords points="{points}"/><TextEquiv><Unicode>{text}</Unicode></TextEquiv></TextLine>'
        for lid, points, text in lines
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'<?xml version="1.0" encoding="UTF-8"?>\n<PcGts xmlns="{PAGE_NS}">'
        f'<Page imageFilename="{image}" imageWidth="{size[0]}" imageHeight="{size[1]}">'
        f'<TextRegion id="r1">\n{body}\n</TextRegion></Page></PcGts>\n',
        encoding="utf-8",
    )
    return path


def make_export(root: Path, pages: int) -> dict[str, int]:
    """Transkribus-style docs of 60x40 pages; page k has k % 4 + 1 lines. Returns lines per page id."""
    counts = {}
    for k in range(pages):
        doc = root / f"Doc_{k % 3}"
        (doc / "page").mkdir(parents=True, exist_ok=True)
        stem = f"{k:04d}_scan"
        # a distinct gray per page: identical scans would be deduplicated
        Image.new("L", (60, 40), 255 - 7 * k).save(doc / f"{stem}.png")
        n = k % 4 + 1
        body = "".join(
            f'<TextLine id="l{i}"><Coords points="2,{2 + 9 * i} 58,{2 + 9 * i} 58,{9 + 9 * i} 2,{9 + 9 * i}"/>'
            f"<TextEquiv><Unicode>page {k} line {i}</Unicode></TextEquiv></TextLine>"
            for i in range(n)
        )
        (doc / "page" / f"{stem}.xml").write_text(
            f'<?xml version="1.0" encoding="UTF-8"?><PcGts xmlns="{NS2013}">'
            f'<Page imageFilename="{stem}.png" imageWidth="60" imageHeight="40"><TextRegion id="r1">{body}</TextRegion></Page></PcGts>'
        )
        counts[f"Doc_{k % 3}/{stem}"] = n
    return counts
