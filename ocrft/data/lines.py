"""Page exports (PAGE-XML, ALTO) into samples: the part the formats share.

A format module (``page_xml``, ``alto``) turns one XML file into a :class:`PageLines`:
the page image it names, the page size its coordinates refer to, its text lines and its
regions, both in reading order. Those readers are public and work on any engine's output
file as well as on ground truth (``read_page_xml(path).lines``).

:func:`import_pages` walks an export folder, finds each page's image without leaving the
folder (:mod:`ocrft.data.crops`), turns the page into samples of ``data.level``
(:mod:`ocrft.data.page_samples`: lines, regions or the page), crops each and writes it as
a PNG, skipping (and counting by reason) whatever cannot become a sample. Nothing bad in
an export crashes the import except an unreadable XML file or page image with
``on_error="raise"``, because that is usually a broken export the user wants to hear about,
with the file and line.

Skip reasons: a page is skipped for ``xml_error`` (with ``on_error="skip"``: malformed
XML, a root that is not PcGts, a PcGts outside the PAGE namespace), ``unsupported_schema``,
``unsupported_measurement_unit``, ``multi_page_alto``, ``missing_image``,
``image_outside_export``, ``image_too_large``, ``image_unreadable``; its samples are
counted under the same reason. A page whose image bytes equal an earlier page's is
``duplicate_page`` (its samples count as duplicates removed). A sample is skipped for
``no_text``, ``invalid_coords``, ``no_region`` (see page_samples), ``machine_text`` (text
task=predict wrote that nobody corrected, while data.skip_machine_text=true), ``degenerate_polygon``
(fewer than 3 distinct points, or a zero-width or zero-height box) or ``outside_image``,
checked in that order; a sample partly outside the image is clipped.
"""

from __future__ import annotations

import logging
import math
import os
import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional
from xml.parsers import expat

from ocrft import atomic
from ocrft.data.crops import (
    CropSettings,
    PageFrame,
    PageSkipped,
    crop_line,
    crop_region,
    find_page_image,
    fit_pixels,
    open_page_image,
    pixel_box,
)
from ocrft.data.page_model import PageLines
from ocrft.data.page_samples import SAMPLERS, Sample
from ocrft.data.record import DataError, Record

log = logging.getLogger(__name__)

LOG_EVERY = 50  # pages between progress messages
MAX_EXAMPLES = 10  # skipped samples named per reason in the report
FOLDERS = {"line": "lines", "region": "regions", "page": "pages"}  # where each level's images go
_SAFE_NAME = re.compile(r"[^\w.-]+")


@dataclass
class Imported:
    """Records read for task=prepare, with everything skipped counted by reason."""

    records: list[Record] = field(default_factory=list)
    pages: int = 0
    pages_skipped: Counter = field(default_factory=Counter)
    lines_skipped: Counter = field(default_factory=Counter)  # samples skipped, whatever the level
    duplicates: list[dict] = field(default_factory=list)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def skip_line(self, reason: str, where: str) -> None:
        self.lines_skipped[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < MAX_EXAMPLES:
            self.examples[reason].append(where)


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


def sniff(path: Path, markers: tuple[bytes, ...]) -> bool:
    """Whether the first 4 KiB of ``path`` mention one of ``markers`` (namespaces), so that
    mets.xml, metadata.xml and other XML beside the pages are passed over unparsed."""
    with path.open("rb") as f:
        head = f.read(4096)
    return any(marker in head for marker in markers)


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


# page-image skip reasons that mean a broken file (raised unless data.on_error=skip)
BROKEN_IMAGE = frozenset({"image_unreadable", "image_too_large"})


def import_pages(
    input_dir: Path,
    work_dir: Path,
    read_page: Callable[[Path], Optional[PageLines]],
    markers: tuple[bytes, ...],
    *,
    settings: CropSettings,
    skip_bad_xml: bool,
    level: str = "line",
    skip_machine_text: bool = True,
) -> Imported:
    """Cut every page file under ``input_dir`` into sample PNGs under ``work_dir``.

    Args:
        read_page: the format's reader; None for an XML file of another kind.
        markers: one of them is near the top of every page file of the format (its namespaces).
        skip_bad_xml: count an unreadable page file as ``xml_error``, and a broken page image
            (truncated, empty, a decompression bomb) as ``image_unreadable`` /
            ``image_too_large``, instead of raising (data.on_error=skip).
        level: ``line``, ``region`` or ``page``: what one sample is (see page_samples).
        skip_machine_text: leave out (as ``machine_text``) samples holding text that
            task=predict wrote and nobody corrected (ocrft.data.machine_text).

    Returns:
        One Record per sample written (image relative to ``work_dir``, group = page id,
        meta: see :func:`_write_lines`), pages in path order, samples in reading order.
    """
    root = input_dir.resolve()
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".xml" and p.is_file() and sniff(p, markers))
    result, used, seen = Imported(), set(), {}
    log.info("importing %d page files from %s (one sample per %s)", len(files), root, level)
    for n, xml_path in enumerate(files, 1):
        if n % LOG_EVERY == 0:
            log.info("%d/%d pages, %d samples so far", n, len(files), len(result.records))
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
        samples, skips = SAMPLERS[level](page)
        if skip_machine_text:
            skips += [("machine_text", s.source_line, s.id or "page") for s in samples if s.machine]
            samples = [s for s in samples if not s.machine]
        for reason, source_line, element in skips:
            result.skip_line(reason, f"{rel}:{source_line} ({element})")
        try:
            if page.skip_reason:
                raise PageSkipped(page.skip_reason)
            if not samples:
                result.pages += 1
                continue
            image_path = find_page_image(xml_path, page.image_ref, root)
            image, scale, digest = open_page_image(image_path, page.size)
        except PageSkipped as e:
            if e.reason in BROKEN_IMAGE and not skip_bad_xml:
                # a truncated or bomb scan is a broken export, like unreadable XML: say which
                raise DataError(f"{rel}: page image: {e} (data.on_error=skip skips such pages)") from None
            log.warning("skipping page %s: %s", rel, e)
            result.pages_skipped[e.reason] += 1
            if samples:  # an unreadable page (unknown schema) has none: no zero entry in the report
                result.lines_skipped[e.reason] += len(samples)
            continue
        if digest in seen:  # the same scan exported twice: keep its first transcription
            log.warning("skipping page %s: same image as %s", rel, seen[digest])
            result.pages_skipped["duplicate_page"] += 1
            result.duplicates.append({"page": page_id, "same_as": seen[digest], "removed": len(samples)})
            continue
        seen[digest] = page_id
        result.pages += 1
        page_image = Path(os.path.relpath(image_path, root)).as_posix()
        _write_lines(page_id, rel, samples, (image, scale, digest, page_image), work_dir=work_dir, settings=settings,
                     result=result)
    log.info("%d pages read, %d samples cut", result.pages, len(result.records))
    return result


def _cut(sample: Sample, image, scale: PageFrame, settings: CropSettings):
    """The sample's image and its box ``[x0, y0, x1, y1]`` in page-image pixels."""
    if sample.points is None:  # the whole page
        return fit_pixels(image, settings.max_pixels), [0, 0, image.width, image.height]
    points = scale.to_pixels(sample.points)  # scaled, and turned with an EXIF-rotated image
    crop = (crop_line if sample.level == "line" else crop_region)(image, points, settings)
    return crop, list(pixel_box(points, image.size))


def _write_lines(page_id, rel, samples, page, *, work_dir, settings, result) -> None:
    """Crop and save each sample of one page and add its Record.

    Meta (every key but sha256 becomes a column of the prepared rows): ``page`` (page id),
    ``region`` (region id; "" for a page), ``line`` (the line's element id; None for a
    region or page sample), ``level`` (line, region or page), ``bbox`` (the polygon's box
    in page-image pixels, clipped to the image), ``page_image`` (the image's path relative
    to the export), ``page_size`` ([width, height] of the image), ``sha256`` (of the image file).
    """
    image, scale, digest, page_image = page
    names: set[str] = set()
    for sample in samples:
        try:
            crop, bbox = _cut(sample, image, scale, settings)
        except PageSkipped as e:
            result.skip_line(e.reason, f"{rel}:{sample.source_line} ({sample.id})")
            continue
        if sample.level == "page":
            record_id, image_rel = page_id, f"{FOLDERS['page']}/{page_id}.png"
        else:
            base = _SAFE_NAME.sub("_", sample.id).strip(".") or sample.level
            name, k = base, 1
            while name in names:  # ids are unique in a valid file; a broken one must not overwrite
                k += 1
                name = f"{base}~{k}"
            names.add(name)
            record_id, image_rel = f"{page_id}/{name}", f"{FOLDERS[sample.level]}/{page_id}/{name}.png"
        target = work_dir / image_rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic.naming(target):  # a full disk: the error names the crop
            crop.save(target, format="PNG")
        meta = {
            "page": page_id, "region": sample.region, "line": sample.line, "level": sample.level, "bbox": bbox,
            "page_image": page_image, "page_size": [image.width, image.height], "sha256": digest,
        }  # fmt: skip
        result.records.append(Record(id=record_id, image=image_rel, text=sample.text, group=page_id, meta=meta))
