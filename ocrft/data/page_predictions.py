"""An engine's PAGE-XML / ALTO output matched line by line to prepared page ground truth.

The ground truth is what ``task=prepare data=page_xml|alto`` wrote: one record per line
whose meta holds ``page`` (page id), ``line`` (the original element id), ``bbox``
``[x0, y0, x1, y1]`` in page-image pixels, ``page_image`` (relative to the export root) and
``page_size`` ``[w, h]``. The engine's files are read with the same readers
(:func:`ocrft.data.page_xml.read_page_xml`, :func:`ocrft.data.alto.read_alto`).

1. Pages: a prediction file belongs to the ground-truth page whose image has the same
   file name (the name it declares, ``imageFilename`` / ``sourceImageInformation``), else
   the same place in a parallel tree (its path without suffix is the page id), else the
   same stem (image stem or file stem against image stem or the page id's last part), else
   the same base name up to the first dot (``X.gt.page.xml`` with ``X.ocr.tesseract.alto.xml``
   and ``X.tif``, as dinglehopper's and OCR-D's examples are named). A
   key two ground-truth pages share decides nothing.
2. Lines (``model.predictions_match``):
   - ``id``: a prediction line belongs to the ground-truth line with its id (kraken and
     Transkribus HTR keep the ids of the layout they were given);
   - ``position``: by box overlap, one-to-one, best intersection-over-union first. The
     prediction's box is scaled from the page size it declares to the ground truth's, and
     a pair counts only when the overlap covers at least ``MIN_OVERLAP`` of the smaller box,
     so a neighbour touched by ascenders is never taken for the line;
   - ``auto``: by id where the ids agree and the boxes (when both have one) overlap, the
     rest by position. Tesseract numbers its own lines (``line_1``...), so an id that
     happens to exist in the ground truth is not trusted without the boxes agreeing.
3. Region and page samples (``data.level=region|page``, or a region whose text exists only
   at region level): the prediction lines not matched to a line, whose box centre lies in
   the sample's box (every line for a page), joined with "\n" in the engine's order.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Optional, Sequence

from ocrft.data import alto, page_xml
from ocrft.data.lines import sniff
from ocrft.data.page_model import Line, PageLines
from ocrft.data.matched import Matched
from ocrft.data.record import DataError, Record

log = logging.getLogger(__name__)

MIN_OVERLAP = 0.5  # of the smaller box: adjacent lines share far less than half a line's height
Box = tuple[float, float, float, float]
_READERS = ((page_xml.MARKERS, page_xml.read_page_xml), (alto.MARKERS, alto.read_alto))


@dataclass
class _GtPage:
    """One ground-truth page: its names, its lines (record index, line id, box) and its
    region and page samples (record index, level, box)."""

    page_id: str
    image: str
    size: Optional[tuple[float, float]]
    lines: list[tuple[int, str, Optional[Box]]] = field(default_factory=list)
    blocks: list[tuple[int, str, Optional[Box]]] = field(default_factory=list)


def is_page_file(path: Path) -> bool:
    """Whether ``path`` looks like a PAGE-XML or ALTO file (its namespace near the top)."""
    return any(sniff(path, markers) for markers, _ in _READERS)


def read_prediction_page(path: Path) -> Optional[PageLines]:
    """Read one engine file with the PAGE or ALTO reader; None for other XML."""
    for markers, read in _READERS:
        if sniff(path, markers):
            return read(path)
    return None


def match_pages(records: Sequence[Record], source: Path, match: str = "auto") -> Matched:
    """Align the lines of the PAGE/ALTO files under ``source`` (or the one file) with ``records``.

    Raises:
        DataError: a record without page meta (the ground truth was not prepared from
            PAGE/ALTO), or a prediction file that is malformed XML (file and line named).
    """
    pages = _gt_pages(records, need_boxes=match != "id")
    index = _page_index(pages)
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.suffix.lower() == ".xml")
    matched = Matched(texts=[""] * len(records))
    found = [False] * len(records)
    claimed: dict[str, Path] = {}
    for path in files:
        rel = path.name if path == source else path.relative_to(source).as_posix()
        page = read_prediction_page(path) if path.is_file() else None
        if page is None:
            continue
        gt = _find_page(rel, page, index, pages)
        if gt is not None and gt.page_id in claimed:
            log.warning("%s and %s both match ground-truth page %s: keeping the first", claimed[gt.page_id], rel,
                        gt.page_id)
            gt = None
        if gt is None or page.skip_reason:
            if page.skip_reason:
                log.warning("%s cannot be read (%s): its lines count as unmatched", rel, page.skip_reason)
            else:
                log.warning("%s matches no ground-truth page by image name or file name", rel)
            matched.extra_ids += [f"{rel}#{line.id}" for line in page.lines if line.text]
            continue
        claimed[gt.page_id] = path
        pairs, extra = _match_lines(gt, page, match)
        for i, text, how in pairs:
            matched.texts[i], found[i] = text, True
            matched.matched_by[how] += 1
        # a line the engine found but read nothing in adds no text: not an extra prediction
        matched.extra_ids += [f"{rel}#{line.id}" for line in extra if line.text]
    matched.missing_ids = [r.id for r, ok in zip(records, found) if not ok]
    return matched


def _gt_pages(records: Sequence[Record], need_boxes: bool) -> dict[str, _GtPage]:
    pages: dict[str, _GtPage] = {}
    for i, r in enumerate(records):
        meta = r.meta
        if not meta.get("page") or (need_boxes and not meta.get("bbox")):
            wanted = "page and bbox" if need_boxes else "page"
            raise DataError(
                f"record {r.id!r} has no {wanted} meta: PAGE/ALTO predictions are scored against ground truth "
                "prepared by task=prepare data=page_xml|alto (read back with data=page_xml|alto data.path=OUT)"
            )
        page_id = str(meta["page"])
        size = meta.get("page_size")
        gt = pages.setdefault(page_id, _GtPage(page_id, str(meta.get("page_image") or ""),
                                               tuple(size) if size else None))  # fmt: skip
        # the element id; before prepare recorded it, the line name ends the record id
        line_id = str(meta.get("line") or r.id.rsplit("/", 1)[-1])
        box = tuple(float(v) for v in meta["bbox"]) if meta.get("bbox") else None
        level = meta.get("level") or "line"
        if level == "line":
            gt.lines.append((i, line_id, box))
        else:
            gt.blocks.append((i, level, box))
    return pages


def _name(ref: str) -> str:
    # Tesseract writes the input path it was given: absolute, Windows or a URL
    return ref.strip().replace("\\", "/").rsplit("/", 1)[-1]


def _stem(name: str) -> str:
    return PurePosixPath(name).stem


def _base(name: str) -> str:
    # dinglehopper's and OCR-D's naming: X.gt.page.xml, X.ocr.tesseract.alto.xml, X.tif
    return PurePosixPath(name).name.split(".", 1)[0]


def _page_key(rel: str) -> str:
    """A prediction file's place as a page id (``Doc/page/0001.xml`` -> ``Doc/0001``), as
    task=prepare names the pages of an export."""
    parts = list(PurePosixPath(rel).with_suffix("").parts)
    if len(parts) > 1 and parts[-2] == "page":  # Transkribus keeps XML in page/
        del parts[-2]
    return "/".join(parts)


def _page_index(pages: dict[str, _GtPage]) -> list[dict[str, set[str]]]:
    """Lookup tables, most specific first: image name, page id, stems, base names (up to
    the first dot)."""
    tiers: list[dict[str, set[str]]] = [defaultdict(set) for _ in range(4)]
    for page_id, gt in pages.items():
        name, last = _name(gt.image), page_id.rsplit("/", 1)[-1]
        if name:
            tiers[0][name].add(page_id)
            tiers[2][_stem(name)].add(page_id)
            tiers[3][_base(name)].add(page_id)
        tiers[1][page_id].add(page_id)
        tiers[2][last].add(page_id)
        tiers[3][_base(last)].add(page_id)
    return tiers


def _find_page(rel: str, page: PageLines, index, pages: dict[str, _GtPage]) -> Optional[_GtPage]:
    name = _name(page.image_ref or "")
    keys = (
        [name] if name else [],
        [_page_key(rel)],
        ([_stem(name)] if name else []) + [_stem(rel)],
        ([_base(name)] if name else []) + [_base(rel)],
    )
    for tier, candidates in zip(index, keys):
        for key in candidates:
            hits = tier.get(key, set())
            if len(hits) == 1:
                return pages[next(iter(hits))]
    return None


def _box(line: Line, scale: tuple[float, float]) -> Optional[Box]:
    if not line.points:
        return None
    xs, ys = [x * scale[0] for x, _ in line.points], [y * scale[1] for _, y in line.points]
    return (min(xs), min(ys), max(xs), max(ys))


def _area(b: Box) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _overlap(a: Optional[Box], b: Optional[Box]) -> tuple[float, float]:
    """(intersection over union, intersection over the smaller box's area); 0 without boxes."""
    if a is None or b is None:
        return 0.0, 0.0
    inter = _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    if not inter:
        return 0.0, 0.0
    return inter / (_area(a) + _area(b) - inter), inter / min(_area(a), _area(b))


def _centre_in(a: Optional[Box], b: Optional[Box]) -> bool:
    if a is None or b is None:
        return False
    x, y = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
    return b[0] <= x <= b[2] and b[1] <= y <= b[3]


def _match_lines(gt: _GtPage, page: PageLines, mode: str) -> tuple[list[tuple[int, str, str]], list[Line]]:
    """Pair ground-truth samples with prediction lines; returns ((record index, text, how), unpaired lines)."""
    scale = (gt.size[0] / page.size[0], gt.size[1] / page.size[1]) if gt.size and page.size else (1.0, 1.0)
    boxes = [_box(line, scale) for line in page.lines]
    pairs: list[tuple[int, Line, str]] = []
    used_gt: set[int] = set()
    used_pred: set[int] = set()
    if mode in ("id", "auto"):
        by_id: dict[str, int] = {}
        for j, line in enumerate(page.lines):
            by_id.setdefault(line.id, j)
        for k, (i, line_id, box) in enumerate(gt.lines):
            j = by_id.get(line_id)
            if j is None or j in used_pred:
                continue
            if mode == "auto" and box is not None and boxes[j] is not None and not _overlap(box, boxes[j])[1]:
                continue  # same id, another place: numbering that merely coincides
            pairs.append((i, page.lines[j].text, "id"))
            used_gt.add(k)
            used_pred.add(j)
    if mode in ("position", "auto"):
        candidates = sorted(
            (-iou, k, j)
            for k, (_, _, box) in enumerate(gt.lines) if k not in used_gt
            for j, pbox in enumerate(boxes) if j not in used_pred
            for iou, covered in [_overlap(box, pbox)] if covered >= MIN_OVERLAP
        )
        for _, k, j in candidates:
            if k not in used_gt and j not in used_pred:
                pairs.append((gt.lines[k][0], page.lines[j].text, "position"))
                used_gt.add(k)
                used_pred.add(j)
    for i, level, box in gt.blocks:
        inside = [j for j, pbox in enumerate(boxes) if j not in used_pred and (level == "page" or _centre_in(pbox, box))]
        pairs.append((i, "\n".join(page.lines[j].text for j in inside if page.lines[j].text), level))
        used_pred.update(inside)
    return pairs, [line for j, line in enumerate(page.lines) if j not in used_pred]
