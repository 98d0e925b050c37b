"""PAGE-XML (2013-07-15 and 2019-07-15) page files, as Transkribus and eScriptorium write them.

A line's text is the TextLine's own TextEquiv, never its Words' (Transkribus writes both,
and they can disagree after a correction made only at line level). Of several TextEquivs
the one with the lowest ``index`` is the main text, as the PAGE schema says (``index="1"``
in 1-based exports); without indices, the first. Lines are returned in reading order:

1. regions by ReadingOrder (OrderedGroup members by ``index``, nested groups flattened),
   else by the ``custom="readingOrder {index:N;}"`` attribute Transkribus writes on
   regions; regions in neither come after, in document order;
2. lines within a region by their ``custom`` readingOrder index when every line of the
   region has one, else document order.

Lines inside Transkribus TableCells belong to the cell (``region`` = the cell id) and are
ordered with their table region.
"""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Optional

from ocrft.data.lines import Line, PageLines, local, namespace, parse_points, parse_xml
from ocrft.data.record import DataError

PAGE_NAMESPACES = (
    "http://schema.primaresearch.org/PAGE/gts/pagecontent/2013-07-15",
    "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15",
)
# Any PAGE version: files of other versions are read far enough to be counted as
# unsupported_schema instead of being passed over in silence.
MARKER = b"primaresearch.org/PAGE/gts/pagecontent/"

_CUSTOM_INDEX = re.compile(r"readingOrder\s*\{[^}]*?index\s*:\s*(\d+)")
_GROUP_MEMBERS = {
    "RegionRefIndexed", "OrderedGroupIndexed", "UnorderedGroupIndexed", "RegionRef", "OrderedGroup", "UnorderedGroup",
}
_LAST = float("inf")


def read_page_xml(path: Path) -> Optional[PageLines]:
    """Read one PAGE-XML file into its image reference, page size and ordered lines.

    Returns:
        None for an XML file that is not PAGE (its root is not ``PcGts``).

    Raises:
        DataError: naming the file and line, for malformed XML or a PcGts without a Page.
    """
    root, source_lines = parse_xml(path)
    if local(root.tag) != "PcGts":
        return None
    ns = namespace(root.tag)
    if ns not in PAGE_NAMESPACES:
        return PageLines(image_ref=None, size=None, skip_reason="unsupported_schema")
    page = root.find(f"{{{ns}}}Page")
    if page is None:
        raise DataError("PcGts has no Page element", path, source_lines[root])
    ranks = _region_ranks(page, ns)
    found: list[tuple[float, int, float, Line]] = []  # (region rank, region ordinal, line index, line)
    _collect(page, ns, ranks, source_lines, [], found, itertools.count(1))
    # a line index counts only where the whole region has them; a partial set says nothing
    unindexed = {region for _, region, index, _ in found if index == _LAST}
    order = sorted(
        range(len(found)),
        key=lambda i: (found[i][0], found[i][1], i if found[i][1] in unindexed else found[i][2], i),
    )
    return PageLines(image_ref=page.get("imageFilename"), size=_size(page), lines=[found[i][3] for i in order])


def _size(page: ET.Element) -> Optional[tuple[float, float]]:
    try:
        width, height = float(page.get("imageWidth", "")), float(page.get("imageHeight", ""))
    except ValueError:
        return None
    return (width, height) if width > 0 and height > 0 else None


def _custom_index(el: ET.Element) -> float:
    m = _CUSTOM_INDEX.search(el.get("custom", ""))
    return int(m.group(1)) if m else _LAST


def _region_ranks(page: ET.Element, ns: str) -> dict[str, int]:
    """Region id -> position in the page's reading order."""
    order: list[str] = []
    reading_order = page.find(f"{{{ns}}}ReadingOrder")
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


def _collect(el, ns, ranks, source_lines, regions, found, ordinal) -> None:
    """Walk the page, keeping the chain of enclosing (region id, document ordinal), and
    collect each TextLine with what orders it."""
    for child in el:
        name = local(child.tag)
        if name == "TextLine":
            # the innermost enclosing region that the reading order names decides the place
            rank = next((ranks[rid] for rid, _ in reversed(regions) if rid in ranks), _LAST)
            ordinal = regions[-1][1] if regions else 0
            found.append((rank, ordinal, _custom_index(child), _line(child, ns, regions, source_lines)))
        elif child.get("id") and (name.endswith("Region") or name == "TableCell"):
            _collect(child, ns, ranks, source_lines, regions + [(child.get("id"), next(ordinal))], found, ordinal)
        elif name not in ("ReadingOrder", "Metadata"):
            _collect(child, ns, ranks, source_lines, regions, found, ordinal)


def _line(el: ET.Element, ns: str, regions, source_lines) -> Line:
    coords = el.find(f"{{{ns}}}Coords")
    equivs = el.findall(f"{{{ns}}}TextEquiv")  # the line's own, not its Words'
    text = ""
    if equivs:
        main = min(equivs, key=lambda e: _int(e.get("index")))  # min is stable: first on ties
        text = (main.findtext(f"{{{ns}}}Unicode") or "").strip()
    return Line(
        id=el.get("id") or f"line{source_lines[el]}",
        region=regions[-1][0] if regions else "",
        text=text,
        points=parse_points(coords.get("points") if coords is not None else ""),
        source_line=source_lines[el],
    )
