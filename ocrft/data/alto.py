"""ALTO v1-v4 page files, as eScriptorium, Tesseract and ABBYY/docWORKS write them.

ALTO 1.x files (the US newspaper programme's and other docWORKS output) use the namespace
``http://schema.ccs-gmbh.com/ALTO`` or ``http://www.loc.gov/standards/alto/ns-v1#``; their
TextBlock / TextLine / String / SP / HYP elements are those of v2, so one reader serves all.

A TextLine's outline is its ``Shape/Polygon`` when it has one (eScriptorium), else its
HPOS/VPOS/WIDTH/HEIGHT box (Tesseract). Its text is its Strings' CONTENT in order: each
SP is one space, two Strings with no SP between them are joined by a single space (ALTO
producers that omit SP still mean separate words), and a HYP adds its CONTENT (the
hyphen printed at the end of the line, ``-`` when it names none).

Coordinates in ``mm10`` or ``inch1200`` are scaled to the image through the Page's
WIDTH/HEIGHT; without those the page is skipped as ``unsupported_measurement_unit``.
The image is ``sourceImageInformation/fileName``, else an image with the XML's stem.
Lines and TextBlocks are in document order (ALTO has no reading-order element that
producers fill in); a TextBlock's outline is read like a line's, and a block without an
ID is named ``block<N>`` after its line in the file.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Optional

from ocrft.data.lines import local, namespace, parse_points, parse_xml
from ocrft.data.machine_text import is_machine_text
from ocrft.data.page_model import Line, PageLines, Region

ALTO_NAMESPACES = (
    "http://schema.ccs-gmbh.com/ALTO",
    "http://www.loc.gov/standards/alto/ns-v1#",
    "http://www.loc.gov/standards/alto/ns-v2#",
    "http://www.loc.gov/standards/alto/ns-v3#",
    "http://www.loc.gov/standards/alto/ns-v4#",
)
MARKERS = (b"www.loc.gov/standards/alto/", b"schema.ccs-gmbh.com/ALTO")
UNITS = ("pixel", "mm10", "inch1200")


def read_alto(path: Path) -> Optional[PageLines]:
    """Read one ALTO file (ground truth or an engine's output, e.g. ``tesseract ... alto``)
    into its image reference, page size, lines and TextBlocks (regions, without text of
    their own), in document order.

    Returns:
        None for an XML file that is not ALTO (its root is not ``alto``).

    Raises:
        DataError: naming the file and line, for malformed XML.
    """
    root, source_lines = parse_xml(path)
    if local(root.tag) != "alto":
        return None
    ns = namespace(root.tag)
    if ns not in ALTO_NAMESPACES:
        return PageLines(image_ref=None, size=None, skip_reason="unsupported_schema")
    q = lambda name: f"{{{ns}}}{name}"  # noqa: E731 - a local shorthand for qualified names
    unit = (root.findtext(f"{q('Description')}/{q('MeasurementUnit')}") or "pixel").strip()
    image_ref = (root.findtext(f"{q('Description')}/{q('sourceImageInformation')}/{q('fileName')}") or "").strip()
    pages = root.findall(f"{q('Layout')}/{q('Page')}")
    size = _size(pages[0]) if pages else None
    result = PageLines(image_ref=image_ref or None, size=size)
    if len(pages) > 1:  # one image per file is all eScriptorium and Tesseract write
        result.skip_reason = "multi_page_alto"
    elif unit not in UNITS or (unit != "pixel" and size is None):
        result.skip_reason = "unsupported_measurement_unit"
    for block in root.iter(q("TextBlock")):
        block_id = block.get("ID") or f"block{source_lines[block]}"
        result.regions.append(Region(id=block_id, text="", points=_outline(block, ns), source_line=source_lines[block]))
        for el in block.findall(q("TextLine")):
            result.lines.append(
                Line(
                    id=el.get("ID") or f"line{source_lines[el]}",
                    region=block_id,
                    text=_text(el, ns),
                    points=_outline(el, ns),
                    source_line=source_lines[el],
                    machine=_machine(el, ns),
                )
            )
    return result


def _size(page: ET.Element) -> Optional[tuple[float, float]]:
    try:
        width, height = float(page.get("WIDTH", "")), float(page.get("HEIGHT", ""))
    except ValueError:
        return None
    return (width, height) if width > 0 and height > 0 else None


def _outline(el: ET.Element, ns: str) -> Optional[list[tuple[float, float]]]:
    """A TextLine's or TextBlock's Shape/Polygon, else its HPOS/VPOS/WIDTH/HEIGHT box."""
    polygon = el.find(f"{{{ns}}}Shape/{{{ns}}}Polygon")
    if polygon is not None:
        return parse_points(polygon.get("POINTS"))
    try:
        x, y, w, h = (float(el.get(k, "")) for k in ("HPOS", "VPOS", "WIDTH", "HEIGHT"))
    except ValueError:
        return None
    return [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]


def _machine(line: ET.Element, ns: str) -> bool:
    """Whether the line's text is ocrft's, unchanged: every String of it names the tag
    ``ocrft.<hash>`` in its TAGREFS (see ocrft.data.alto_writeback)."""
    strings = line.findall(f"{{{ns}}}String")
    marks = {s.get("TAGREFS", "") for s in strings}
    return len(marks) == 1 and is_machine_text(_text(line, ns), marks.pop())


def _text(line: ET.Element, ns: str) -> str:
    parts: list[str] = []
    after_string = False
    for el in line:
        name = local(el.tag) if namespace(el.tag) == ns else ""
        if name == "String" and el.get("CONTENT"):
            if after_string:
                parts.append(" ")
            parts.append(el.get("CONTENT"))
            after_string = True
        elif name == "SP":
            parts.append(" ")
            after_string = False
        elif name == "HYP":
            parts.append(el.get("CONTENT") or "-")
            after_string = False
    return "".join(parts).strip()
