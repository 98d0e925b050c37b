"""Cutting page exports into line images: the part PAGE-XML and ALTO import share.

A format module (``page_xml``, ``alto``) turns one XML file into a :class:`PageLines`:
the page image it names, the page size its coordinates refer to, and its text lines in
reading order. :func:`import_pages` walks an export folder, finds each page's image
without leaving the folder, crops every line and writes it as a PNG, skipping (and
counting by reason) whatever cannot become a sample. Nothing bad in an export crashes
the import except malformed XML with ``on_error="raise"``, because that is usually a
broken export the user wants to hear about, with the file and line.

A line image is the polygon's bounding box plus ``padding`` page pixels on each side
(clipped to the page; with ``mask`` everything outside the polygon is white), scaled to
``target_height`` with its aspect ratio kept, or with ``preserve_aspect_ratio=false``
stretched to ``FIXED_ASPECT * target_height`` x ``target_height``.

Skip reasons: a page is skipped for ``xml_error`` (with ``on_error="skip"``),
``unsupported_schema``, ``unsupported_measurement_unit``, ``multi_page_alto``,
``missing_image``, ``image_outside_export``, ``image_too_large``, ``image_unreadable``;
its text lines are counted under the same reason. A page whose image bytes equal an
earlier page's is ``duplicate_page`` (its lines count as duplicates removed). A line is
skipped for ``no_text``, ``invalid_coords``, ``degenerate_polygon`` (fewer than 3 distinct
points, or a zero-width or zero-height box) or ``outside_image``, checked in that order;
a line partly outside the image is clipped.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional
from xml.parsers import expat

from ocrft.data.record import DataError, Record

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".jp2", ".webp", ".bmp")
# With preserve_aspect_ratio=false every line is stretched to this width:height, about
# the shape of a short manuscript line, so batches of fixed-size images can be built.
FIXED_ASPECT = 4
LOG_EVERY = 50  # pages between progress messages
MAX_EXAMPLES = 10  # skipped lines named per reason in the report
_SAFE_NAME = re.compile(r"[^\w.-]+")


class PageSkipped(Exception):
    """A page (or line) that cannot be imported; ``reason`` is the counted skip reason."""

    def __init__(self, reason: str, message: str = ""):
        super().__init__(message or reason)
        self.reason = reason


@dataclass(frozen=True)
class Line:
    """One text line found in a page file, before cropping."""

    id: str
    region: str
    text: str  # already stripped; "" = no text
    points: Optional[list[tuple[float, float]]]  # None = coordinates could not be parsed
    source_line: int  # line of the TextLine element in the XML file


@dataclass
class PageLines:
    """What a format module reads from one page file."""

    image_ref: Optional[str]  # the image as the file names it; None = look for a same-stem image
    size: Optional[tuple[float, float]]  # page size the coordinates refer to; None = image's
    lines: list[Line] = field(default_factory=list)
    skip_reason: Optional[str] = None  # the whole page cannot be imported (e.g. unknown unit)


@dataclass
class Imported:
    """Records read for task=prepare, with everything skipped counted by reason."""

    records: list[Record] = field(default_factory=list)
    pages: int = 0
    pages_skipped: Counter = field(default_factory=Counter)
    lines_skipped: Counter = field(default_factory=Counter)
    duplicates: list[dict] = field(default_factory=list)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def skip_line(self, reason: str, where: str) -> None:
        self.lines_skipped[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < MAX_EXAMPLES:
            self.examples[reason].append(where)


@dataclass(frozen=True)
class CropSettings:
    """How a line polygon becomes a line image (the ``data.*`` crop keys)."""

    target_height: int = 128
    preserve_aspect_ratio: bool = True
    padding: int = 4  # page pixels added around the line's box, clipped to the page
    mask: bool = False  # white out pixels outside the polygon


# --- XML -----------------------------------------------------------------------------------


def parse_xml(path: Path) -> tuple[ET.Element, dict[ET.Element, int]]:
    """Parse ``path`` safely and return its root and each element's line number.

    Page exports carry no DTD, so any DOCTYPE is refused: that rules out entity expansion
    (billion laughs) and external entities whatever the expat version, without needing
    defusedxml.

    Raises:
        DataError: naming the file and line, for malformed XML or a DOCTYPE.
    """
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate(namespace_separator="}")
    lines: dict[ET.Element, int] = {}

    def qname(name: str) -> str:
        return "{" + name if "}" in name else name

    def start(tag: str, attrs: dict[str, str]) -> None:
        el = builder.start(qname(tag), {qname(k): v for k, v in attrs.items()})
        lines[el] = parser.CurrentLineNumber

    def refuse_doctype(*_args) -> None:
        raise DataError("a DOCTYPE is not allowed in a page file (entity expansion risk)", path, parser.CurrentLineNumber)

    parser.StartElementHandler = start
    parser.EndElementHandler = lambda tag: builder.end(qname(tag))
    parser.CharacterDataHandler = builder.data
    parser.StartDoctypeDeclHandler = refuse_doctype
    parser.buffer_text = True
    try:
        with path.open("rb") as f:
            parser.ParseFile(f)
    except expat.ExpatError as e:
        msg = f"malformed XML: {expat.ErrorString(e.code)} (column {e.offset + 1})"
        raise DataError(msg, path, e.lineno) from None
    return builder.close(), lines


def local(tag: str) -> str:
    """``{namespace}Name`` -> ``Name``."""
    return tag.rpartition("}")[2]


def namespace(tag: str) -> str:
    """``{namespace}Name`` -> ``namespace`` ("" when there is none)."""
    return tag[1:].partition("}")[0] if tag.startswith("{") else ""


def sniff(path: Path, marker: bytes) -> bool:
    """Whether the first 4 KiB of ``path`` mention ``marker`` (a namespace), so that
    mets.xml, metadata.xml and other XML beside the pages are passed over unparsed."""
    with path.open("rb") as f:
        return marker in f.read(4096)


def parse_points(text: Optional[str]) -> Optional[list[tuple[float, float]]]:
    """``"x1,y1 x2,y2 ..."`` (PAGE) or ``"x1 y1 x2 y2 ..."`` (ALTO) -> points; None if invalid."""
    values = (text or "").replace(",", " ").split()
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        return None
    if len(numbers) % 2 or not all(math.isfinite(n) for n in numbers):
        return None
    return list(zip(numbers[0::2], numbers[1::2]))


# --- page images ----------------------------------------------------------------------------


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root)


def find_page_image(xml_path: Path, ref: Optional[str], root: Path) -> Path:
    """Find the image a page file names, never outside ``root`` (the export folder).

    A relative name is looked up beside the XML, then one folder up (Transkribus keeps
    XML in ``page/`` beside the images). An absolute path or URL, as Tesseract and some
    tools write, is used when it lies inside the export; otherwise its file name is
    looked up the same way. Without a name, an image with the XML's stem is used.

    Raises:
        PageSkipped: ``image_outside_export`` for a name that leads out of the export
            (``../../x.png``, a symlink out), ``missing_image`` when nothing is found.
    """
    folders = [xml_path.parent] + ([xml_path.parent.parent] if xml_path.parent != root else [])
    if ref:
        ref = ref.strip().replace("\\", "/")
        foreign = "://" in ref or re.match(r"[A-Za-z]:/", ref)  # a URL or Windows path: only its name helps
        if foreign or Path(ref).is_absolute():
            absolute = None if foreign else Path(ref)
            if absolute and absolute.is_file() and _inside(absolute, root):
                return absolute
            names = [ref.rsplit("/", 1)[-1]]
            outside = bool(absolute and absolute.is_file())
        else:
            if not _inside(xml_path.parent / ref, root):
                raise PageSkipped("image_outside_export", f"image {ref!r} lies outside the export folder")
            names, outside = [ref], False
    else:
        names = [xml_path.stem + s for s in IMAGE_SUFFIXES]
        outside = False
    for folder in folders:
        for name in names:
            candidate = folder / name
            if candidate.is_file():
                if not _inside(candidate, root):
                    raise PageSkipped("image_outside_export", f"image {candidate} links outside the export folder")
                return candidate
    if outside:
        raise PageSkipped("image_outside_export", f"image {ref!r} lies outside the export folder")
    raise PageSkipped("missing_image", f"no image {ref or xml_path.stem + '.*'!r} beside {xml_path.name}")


def open_page_image(path: Path, size: Optional[tuple[float, float]]):
    """Load a page image and the factors that turn page coordinates into its pixels.

    When the page size the XML declares differs from the image, the image was rotated by
    its EXIF tag (the XML then matches the rotated size) or rescaled after export, or the
    unit is not pixels (ALTO mm10/inch1200): coordinates are scaled to fit.

    Raises:
        PageSkipped: ``image_too_large`` past PIL's decompression-bomb limit,
            ``image_unreadable`` for anything PIL cannot decode.
    """
    from PIL import Image, ImageOps

    data = path.read_bytes()
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Image.DecompressionBombError as e:
        raise PageSkipped("image_too_large", str(e)) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise PageSkipped("image_unreadable", f"{path.name}: {e}") from None
    if size and image.size != tuple(round(v) for v in size):
        turned = ImageOps.exif_transpose(image)
        if turned.size == tuple(round(v) for v in size):
            image = turned
    scale = (image.width / size[0], image.height / size[1]) if size else (1.0, 1.0)
    return image, scale, hashlib.sha256(data).hexdigest()


def crop_line(image, points: list[tuple[float, float]], settings: CropSettings):
    """Crop one line's polygon out of a page image and resize it to the target height.

    The crop is the polygon's bounding box plus ``padding`` page pixels on each side,
    clipped to the image; with ``mask`` the pixels outside the polygon become white.

    Raises:
        PageSkipped: ``degenerate_polygon`` (fewer than 3 distinct points or a zero-area
            box) or ``outside_image`` (the box misses the image entirely).
    """
    from PIL import Image, ImageDraw

    if len(set(points)) < 3:
        raise PageSkipped("degenerate_polygon")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    box = (math.floor(min(xs)), math.floor(min(ys)), math.ceil(max(xs)), math.ceil(max(ys)))
    if box[2] <= box[0] or box[3] <= box[1]:
        raise PageSkipped("degenerate_polygon")
    if box[2] <= 0 or box[3] <= 0 or box[0] >= image.width or box[1] >= image.height:
        raise PageSkipped("outside_image")
    pad = settings.padding
    x0, y0 = max(0, box[0] - pad), max(0, box[1] - pad)
    x1, y1 = min(image.width, box[2] + pad), min(image.height, box[3] + pad)
    crop = image.crop((x0, y0, x1, y1)).convert("RGB")
    if settings.mask:
        inside = Image.new("L", crop.size, 0)
        ImageDraw.Draw(inside).polygon([(x - x0, y - y0) for x, y in points], fill=255)
        crop = Image.composite(crop, Image.new("RGB", crop.size, (255, 255, 255)), inside)
    height = settings.target_height
    if settings.preserve_aspect_ratio:
        width = max(1, round(crop.width * height / crop.height))
    else:
        width = FIXED_ASPECT * height
    return crop.resize((width, height), Image.Resampling.LANCZOS)


# --- the import loop -------------------------------------------------------------------------


def _page_id(rel: Path, used: set[str]) -> str:
    """``Doc/page/0001_x.xml`` -> ``Doc/0001_x``: the image's place, unique in the export."""
    parts = list(rel.with_suffix("").parts)
    if len(parts) > 1 and parts[-2] == "page":  # Transkribus keeps XML in page/
        del parts[-2]
    full = rel.with_suffix("").as_posix()
    page_id, k = "/".join(parts), 1
    if page_id in used:
        page_id = full
    while page_id in used:
        k += 1
        page_id = f"{full}~{k}"
    used.add(page_id)
    return page_id


def import_pages(
    input_dir: Path,
    work_dir: Path,
    read_page: Callable[[Path], Optional[PageLines]],
    marker: bytes,
    settings: CropSettings,
    skip_bad_xml: bool,
) -> Imported:
    """Cut every page file under ``input_dir`` into line PNGs under ``work_dir/lines``.

    Args:
        read_page: the format's reader; None for an XML file of another kind.
        marker: bytes every page file of the format has near its top (its namespace).
        skip_bad_xml: count malformed XML as ``xml_error`` instead of raising.

    Returns:
        One Record per line written (image relative to ``work_dir``, group = page id,
        meta page/region/sha256 of the page image), pages in path order, lines in
        reading order.
    """
    root = input_dir.resolve()
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".xml" and p.is_file() and sniff(p, marker))
    result, used, seen = Imported(), set(), {}
    log.info("importing %d page files from %s", len(files), root)
    for n, xml_path in enumerate(files, 1):
        if n % LOG_EVERY == 0:
            log.info("%d/%d pages, %d lines so far", n, len(files), len(result.records))
        rel = xml_path.relative_to(root)
        try:
            page = read_page(xml_path)
        except DataError as e:
            if not skip_bad_xml:
                raise DataError(f"{e} (data.on_error=skip skips such files)") from None
            log.warning("skipping %s", e)
            result.pages_skipped["xml_error"] += 1
            continue
        if page is None:
            continue
        page_id = _page_id(rel, used)
        lines = []
        for line in page.lines:
            reason = "no_text" if not line.text else "invalid_coords" if line.points is None else None
            if reason:
                result.skip_line(reason, f"{rel}:{line.source_line} ({line.id})")
            else:
                lines.append(line)
        try:
            if page.skip_reason:
                raise PageSkipped(page.skip_reason)
            if not lines:
                result.pages += 1
                continue
            image, scale, digest = open_page_image(find_page_image(xml_path, page.image_ref, root), page.size)
        except PageSkipped as e:
            log.warning("skipping page %s: %s", rel, e)
            result.pages_skipped[e.reason] += 1
            result.lines_skipped[e.reason] += len(lines)
            continue
        if digest in seen:  # the same scan exported twice: keep its first transcription
            log.warning("skipping page %s: same image as %s", rel, seen[digest])
            result.pages_skipped["duplicate_page"] += 1
            result.duplicates.append({"page": page_id, "same_as": seen[digest], "removed": len(lines)})
            continue
        seen[digest] = page_id
        result.pages += 1
        _write_lines(page_id, rel, lines, image, scale, digest, work_dir, settings, result)
    log.info("%d pages read, %d lines cut", result.pages, len(result.records))
    return result


def _write_lines(page_id, rel, lines, image, scale, digest, work_dir, settings, result) -> None:
    names: set[str] = set()
    for line in lines:
        points = [(x * scale[0], y * scale[1]) for x, y in line.points]
        try:
            crop = crop_line(image, points, settings)
        except PageSkipped as e:
            result.skip_line(e.reason, f"{rel}:{line.source_line} ({line.id})")
            continue
        base = _SAFE_NAME.sub("_", line.id).strip(".") or "line"
        name, k = base, 1
        while name in names:  # ids are unique in a valid file; a broken one must not overwrite
            k += 1
            name = f"{base}~{k}"
        names.add(name)
        image_rel = f"lines/{page_id}/{name}.png"
        target = work_dir / image_rel
        target.parent.mkdir(parents=True, exist_ok=True)
        crop.save(target, format="PNG")
        meta = {"page": page_id, "region": line.region, "sha256": digest}
        result.records.append(Record(id=f"{page_id}/{name}", image=image_rel, text=line.text, group=page_id, meta=meta))
