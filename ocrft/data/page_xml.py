"""PAGE-XML page files of every schema version: 2009-03-16 to 2019-07-15 and later.

Transkribus and eScriptorium write 2013-07-15 or 2019-07-15, OCR-D ground truth and
dinglehopper 2018-07-15 (often with a ``pc:`` prefix), PRImA's own example 2017-07-15,
kraken an ``https://`` spelling of the namespace, and older ground truth (PRImA's layout
datasets) 2009-03-16 to 2010-03-19. Elements are matched by local name, so any prefix
or a default namespace reads the same. What changed between versions and matters here:

- coordinates: ``<Coords points="x,y x,y ..."/>`` since 2013-07-15; before, ``<Coords>``
  held ``<Point x="" y=""/>`` children. Both are read in any version.
- ``TextEquiv``: one per element before 2013 (``PlainText`` + ``Unicode``); since then
  several, with an ``index``. Of several, the lowest ``index`` is the main text, as the
  schema says (``index="1"`` in 1-based exports); without indices, the first.
- nesting: before 2013 only FrameRegion held regions; since then any region may, and
  Transkribus puts lines in ``TableRegion/TableCell``.

A line's text is the TextLine's own TextEquiv, never its Words' (Transkribus writes both,
and they can disagree after a correction made only at line level). A region's own text
(its TextEquiv) is kept too: some ground truth, PRImA's example among it, has text only
there. Lines are returned in reading order:

1. regions by ReadingOrder (OrderedGroup members by ``index``, nested groups flattened;
   pre-2013 files may list RegionRefs directly), else by the ``custom="readingOrder
   {index:N;}"`` attribute Transkribus writes on regions; regions in neither come after,
   in document order;
2. lines within a region by their ``custom`` readingOrder index when every line of the
   region has one, else document order.

Regions (TextRegion, TableCell, and any region holding lines or text directly) come in the
same order. Lines inside Transkribus TableCells belong to the cell (``region`` = the cell
id) and are ordered with their table region.
"""

from __future__ import annotations

import itertools
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Optional

from ocrft.data.lines import local, namespace, parse_points, parse_xml, sniff
from ocrft.data.machine_text import is_machine_text
from ocrft.data.page_model import Line, PageLines, Region
from ocrft.data.record import DataError

PAGE_NAMESPACE = "http://schema.primaresearch.org/PAGE/gts/pagecontent/<version date>"
# Any version date, http or https: only a namespace of this family with another tail
# (none is known) is counted as unsupported_schema.
_PAGE_FAMILY = re.compile(r"https?://schema\.primaresearch\.org/PAGE/gts/pagecontent/")
_PAGE_VERSION = re.compile(r"https?://schema\.primaresearch\.org/PAGE/gts/pagecontent/\d{4}-\d{2}-\d{2}")
# What every PAGE file has near its top, so import finds page files among other XML.
MARKERS = (b"primaresearch.org/PAGE/gts/pagecontent/",)

_CUSTOM_INDEX = re.compile(r"readingOrder\s*\{[^}]*?index\s*:\s*(\d+)")
_GROUP_MEMBERS = {
    "RegionRefIndexed", "OrderedGroupIndexed", "UnorderedGroupIndexed", "RegionRef", "OrderedGroup", "UnorderedGroup",
}
_TEXT_CONTAINERS = {"TextRegion", "TableCell"}  # regions counted even when they hold no text
_NOT_CONTENT = {"ReadingOrder", "Metadata", "Layers", "Relations", "TextEquiv"}  # no lines or regions inside
_LAST = float("inf")


def read_page_xml(path: Path) -> Optional[PageLines]:
    """Read one PAGE-XML file (ground truth or an engine's output) into its image
    reference, page size, and lines and regions in reading order.

    Returns:
        None for an XML file that is not PAGE (its root is not ``PcGts`` and it never
        mentions the PAGE namespace, e.g. a METS file beside the pages). A PAGE
        namespace with no version date gives a PageLines with
        ``skip_reason="unsupported_schema"``.

    Raises:
        DataError: naming the file and line, for malformed XML, a file that mentions the
            PAGE namespace but whose root is not ``PcGts``, a ``PcGts`` outside the PAGE
            namespace, or a PcGts without a Page.
    """
    root, source_lines = parse_xml(path)
    ns = namespace(root.tag)
    if local(root.tag) != "PcGts":
        if _PAGE_FAMILY.match(ns) or sniff(path, MARKERS):
            msg = f"the root element is <{local(root.tag)}>, not <PcGts>: not a PAGE-XML page file"
            raise DataError(msg, path, source_lines[root])
        return None
    if not _PAGE_FAMILY.match(ns):
        msg = f"<PcGts> is in namespace {ns or '(none)'!r}, not PAGE's {PAGE_NAMESPACE!r}"
        raise DataError(msg, path, source_lines[root])
    if not _PAGE_VERSION.fullmatch(ns):
        return PageLines(image_ref=None, size=None, skip_reason="unsupported_schema")
    page = _child(root, "Page")
    if page is None:
        raise DataError("PcGts has no Page element", path, source_lines[root])
    ranks = _region_ranks(page)
    lines: list[tuple[float, int, float, Line]] = []  # (region rank, region ordinal, line index, line)
    regions: list[tuple[float, int, Region]] = []  # (rank, ordinal, region)
    _collect(page, ranks, source_lines, [], lines=lines, regions=regions, ordinal=itertools.count(1))
    # a line index counts only where the whole region has them; a partial set says nothing
    unindexed = {region for _, region, index, _ in lines if index == _LAST}
    order = sorted(
        range(len(lines)),
        key=lambda i: (lines[i][0], lines[i][1], i if lines[i][1] in unindexed else lines[i][2], i),
    )
    return PageLines(
        image_ref=page.get("imageFilename"),
        size=_size(page),
        lines=[lines[i][3] for i in order],
        regions=[region for *_, region in sorted(regions, key=lambda r: r[:2])],  # sorted is stable
    )


def _child(el: ET.Element, name: str) -> Optional[ET.Element]:
    return next((c for c in el if local(c.tag) == name), None)


def _size(page: ET.Element) -> Optional[tuple[float, float]]:
    try:
        width, height = float(page.get("imageWidth", "")), float(page.get("imageHeight", ""))
    except ValueError:
        return None
    return (width, height) if width > 0 and height > 0 else None


def _custom_index(el: ET.Element) -> float:
    m = _CUSTOM_INDEX.search(el.get("custom", ""))
    return int(m.group(1)) if m else _LAST


def _region_ranks(page: ET.Element) -> dict[str, int]:
    """Region id -> position in the page's reading order."""
    order: list[str] = []
    reading_order = _child(page, "ReadingOrder")
    if reading_order is not None:
        for group in reading_order:
            _flatten(group, order)
    else:  # Transkribus also writes the order on each region
        regions = [el for el in page.iter() if el.get("id") and local(el.tag).endswith("Region")]
        indexed = sorted((_custom_index(el), i, el.get("id")) for i, el in enumerate(regions))
        order = [rid for index, _, rid in indexed if index != _LAST]
    return {rid: rank for rank, rid in reversed(list(enumerate(order)))}


def _flatten(group: ET.Element, order: list[str]) -> None:
    if group.get("regionRef"):
        order.append(group.get("regionRef"))
    members = [el for el in group if local(el.tag) in _GROUP_MEMBERS]
    if local(group.tag).startswith("Ordered"):
        members.sort(key=lambda el: _int(el.get("index")))  # stable: unindexed keep their place at the end
    for el in members:
        if local(el.tag).startswith("RegionRef"):
            order.append(el.get("regionRef", ""))
        else:
            _flatten(el, order)


def _int(value: Optional[str]) -> float:
    try:
        return int(value)
    except (TypeError, ValueError):
        return _LAST


def _collect(el, ranks, source_lines, chain, *, lines, regions, ordinal) -> None:
    """Walk the page, keeping the chain of enclosing (region id, document ordinal), and
    collect each TextLine and text region with what orders it."""
    for child in el:
        name = local(child.tag)
        if name == "TextLine":
            line = Line(
                id=child.get("id") or f"line{source_lines[child]}",
                region=chain[-1][0] if chain else "",
                text=_text(child),
                points=_points(child),
                source_line=source_lines[child],
                machine=_machine(child),
            )
            lines.append((_rank(chain, ranks), chain[-1][1] if chain else 0, _custom_index(child), line))
        elif child.get("id") and (name.endswith("Region") or name == "TableCell"):
            inner = chain + [(child.get("id"), next(ordinal))]
            if name in _TEXT_CONTAINERS or any(local(c.tag) in ("TextLine", "TextEquiv") for c in child):
                region = Region(child.get("id"), _own_text(child), _points(child), source_lines[child],
                                machine=_machine(child))
                regions.append((_rank(inner, ranks), inner[-1][1], region))
            _collect(child, ranks, source_lines, inner, lines=lines, regions=regions, ordinal=ordinal)
        elif name not in _NOT_CONTENT:
            _collect(child, ranks, source_lines, chain, lines=lines, regions=regions, ordinal=ordinal)


def _rank(chain: list[tuple[str, int]], ranks: dict[str, int]) -> float:
    """The innermost enclosing region that the reading order names decides the place."""
    return next((ranks[rid] for rid, _ in reversed(chain) if rid in ranks), _LAST)


def _own_text(region: ET.Element) -> str:
    """A region's TextEquiv, unless a line or region nested in it has text: the innermost
    text is the transcription, an outer one usually repeats it (and would be read twice)."""
    nested = (el for el in region.iter() if el is not region and local(el.tag) in ("TextLine", "TextRegion", "TableCell"))
    return "" if any(_text(el) for el in nested) else _text(region)


def _text(el: ET.Element) -> str:
    """The element's own main TextEquiv (not its children's), stripped."""
    equivs = [c for c in el if local(c.tag) == "TextEquiv"]
    if not equivs:
        return ""
    main = min(equivs, key=lambda e: _int(e.get("index")))  # min is stable: first on ties
    unicode = _child(main, "Unicode")
    return (unicode.text or "").strip() if unicode is not None else ""


def _machine(el: ET.Element) -> bool:
    """Whether the element's main text is ocrft's, unchanged: the mark is on that TextEquiv's
    ``comments`` (PAGE 2016 and later), else on the element's own (2013 has no TextEquiv
    comments; see ocrft.data.page_writeback)."""
    equivs = [c for c in el if local(c.tag) == "TextEquiv"]
    if not equivs:
        return False
    main = min(equivs, key=lambda e: _int(e.get("index")))
    return is_machine_text(_text(el), main.get("comments") or el.get("comments"))


def _points(el: ET.Element) -> Optional[list[tuple[float, float]]]:
    """``Coords@points`` (2013 and later) or ``Coords/Point`` children (before); [] when the
    element has no Coords, None when they cannot be parsed."""
    coords = _child(el, "Coords")
    if coords is None:
        return []
    if coords.get("points") is not None:
        return parse_points(coords.get("points"))
    try:
        points = [(float(p.get("x")), float(p.get("y"))) for p in coords if local(p.tag) == "Point"]
    except (TypeError, ValueError):  # a Point without x or y, or not a number
        return None
    return points if all(math.isfinite(v) for point in points for v in point) else None
