"""task=predict on a PAGE-XML or ALTO export: the model's reading written back into a copy.

    python -m ocrft task=predict model.path=RUN predict.input=EXPORT predict.output_dir=FILLED predict.rank=true

1. Every page file under ``predict.input`` is read with the format's reader (PAGE of any
   version, ALTO v1-v4); its image is found and opened as task=prepare does
   (ocrft.data.crops), and cut by ``predict.level``: each line (scaled to
   ``data.target_height``, as the model was trained), or each region whole (within
   ``data.max_pixels``). Without ``predict.overwrite`` only lines without text are read
   (a region: when any of its lines has none).
2. The predictor reads the crops (``predict.samples`` more times, sampled, with
   ``predict.rank``); crops are kept in ``<run>/crops`` for the ranking and the studio.
3. A region's reading is split at its newlines; when the parts are as many as the region's
   lines they go to the lines in reading order, else the region's own text gets the reading
   and its lines are left as they were (counted ``predict/regions_unsplit``).
4. The export is copied to ``predict.output_dir`` (default ``<run>/export``) and each page
   file is filled there (ocrft.data.page_writeback, alto_writeback); a line's ``conf`` is
   exp(mean token log-probability) (ocrft.evaluation.ranking). A page that cannot be filled
   (a PAGE version before 2013, a missing image) is copied as it was and counted.
"""

from __future__ import annotations

import io
import logging
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from ocrft import atomic
from ocrft.config import ConfigError
from ocrft.data import alto, alto_writeback, page_writeback, page_xml
from ocrft.data.crops import CropSettings, PageSkipped, crop_line, crop_region, find_page_image, open_page_image
from ocrft.data.lines import sniff
from ocrft.data.page_model import PageLines
from ocrft.data.page_samples import by_region
from ocrft.data.record import DataError, Record
from ocrft.data.writeback import Filled, Reading, Step, xml_text
from ocrft.evaluation.ranking import RankedLine, confidence, disagreement, rank, rank_line, write_ranking

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Format:
    """A page format task=predict can fill: how to read it and how to write into it."""

    read: Callable[[Path], Optional[PageLines]]
    markers: tuple[bytes, ...]
    fill: Callable[..., Filled]  # (path, line readings, regions, *, overwrite, step, region_readings)


def _fill_alto(path, lines, regions, *, overwrite, step, region_readings) -> Filled:
    if region_readings:  # ALTO TextBlocks hold no text of their own: such a reading has nowhere to go
        log.warning("%s: %d region readings not split by line are not written (ALTO blocks have no text)",
                    path, len(region_readings))  # fmt: skip
    return alto_writeback.fill_alto(path, lines, overwrite=overwrite, step=step)


FORMATS = {
    "page_xml": Format(page_xml.read_page_xml, page_xml.MARKERS, page_writeback.fill_page),
    "alto": Format(alto.read_alto, alto.MARKERS, _fill_alto),
}


@dataclass
class _Unit:
    """One crop to read: a line, or a region read whole."""

    page: str  # page file relative to the export
    id: str  # the line's (or region's) element id
    region: str
    lines: list[str]  # the lines it fills (one for a line; the region's lines in order)
    record: Record


@dataclass
class _Page:
    path: Path
    rel: str
    fmt: Format
    regions: dict[str, list[str]] = field(default_factory=dict)  # region id -> line ids in reading order
    units: list[_Unit] = field(default_factory=list)


def find_pages(source: Path) -> list[tuple[Path, Format]]:
    """The PAGE and ALTO files under ``source`` (none: it is not an export)."""
    if not source.is_dir():
        return []
    found = []
    for path in sorted(p for p in source.rglob("*") if p.suffix.lower() == ".xml" and p.is_file()):
        fmt = next((f for f in FORMATS.values() if sniff(path, f.markers)), None)
        if fmt is not None:
            found.append((path, fmt))
    return found


def predict_export(cfg, *, source: Path, run_dir: Path) -> tuple[dict, dict]:
    """Fill a copy of the export ``source``; returns (metrics, paths written)."""
    from ocrft import __version__
    from ocrft.evaluation.predictor import build_predictor

    target = Path(cfg.predict.output_dir or run_dir / "export").expanduser().resolve()
    _check_target(target, source.resolve())
    crops = run_dir / "crops"
    pages, skipped = _cut(cfg, source=source.resolve(), crops=crops)
    units = [u for page in pages for u in page.units]
    predictor = build_predictor(cfg, task="predict", run_dir=run_dir)
    try:
        log.info("reading %d %s(s) of %d page(s) with %s", len(units), cfg.predict.level, len(pages),
                 predictor.describe()["name"])  # fmt: skip
        outputs = predictor.predict([u.record for u in units]) if units else []
        sampled = [predictor.sample([u.record for u in units], seed=k, temperature=cfg.predict.temperature)
                   for k in range(1, cfg.predict.samples + 1)] if units else []  # fmt: skip
        model = predictor.describe()["name"]
    finally:
        predictor.close()
    step = Step(software=f"ocrft {__version__}", model=str(model), run=str(run_dir),
                when=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))  # fmt: skip
    # conf only where the backend records token log-probabilities (an endpoint does not)
    readings = {id(u): Reading(xml_text(o.text), confidence(o) if o.num_tokens else None) for u, o in zip(units, outputs)}
    shutil.copytree(source, target, dirs_exist_ok=True)  # an empty target folder may exist
    counts = {"pages": len(pages), "pages_skipped": skipped, "read": len(units), "lines_written": 0, "lines_kept": 0,
              "regions_written": 0, "regions_unsplit": 0, "words_cleared": 0}  # fmt: skip
    for page in pages:
        _fill(page, readings, target=target, step=step, overwrite=cfg.predict.overwrite, counts=counts)
    metrics = {f"predict/{k}": v for k, v in counts.items()}
    confs = [r.conf for r in readings.values() if r.text and r.conf is not None]
    if confs:
        metrics["predict/mean_confidence"] = sum(confs) / len(confs)
    paths = {"export": str(target)}
    if cfg.predict.rank:
        lines = [_ranked(u, o, [s[i].text for s in sampled]) for i, (u, o) in enumerate(zip(units, outputs))]
        out = Path(cfg.predict.output).expanduser() if cfg.predict.output else run_dir
        csv_path, jsonl_path = write_ranking(rank(lines), out)
        paths.update(ranking_csv=str(csv_path), ranking_jsonl=str(jsonl_path))
    return metrics, paths


def _check_target(target: Path, source: Path) -> None:
    if target == source or source in target.parents or target in source.parents:
        raise ConfigError(f"predict.output_dir={target} overlaps predict.input={source}: the filled copy goes "
                          "to a folder of its own, beside the export")  # fmt: skip
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"predict.output_dir={target} exists and is not empty: name a new folder")


def _cut(cfg, *, source: Path, crops: Path) -> tuple[list[_Page], int]:
    """Read every page file and cut what ``predict.level`` reads out of its image."""
    data = cfg.data
    settings = CropSettings(data.target_height, data.preserve_aspect_ratio, data.padding, data.mask,
                            max_pixels=data.max_pixels)  # fmt: skip
    pages, skipped = [], 0
    for n, (path, fmt) in enumerate(find_pages(source)):
        rel = path.relative_to(source).as_posix()
        layout = fmt.read(path)
        if layout is None:
            continue
        page = _Page(path=path, rel=rel, fmt=fmt)
        page.regions = {r.id: [ln.id for ln in lines] for r, lines in by_region(layout) if r is not None}
        try:
            if layout.skip_reason:
                raise PageSkipped(layout.skip_reason)
            image, frame, _ = open_page_image(find_page_image(path, layout.image_ref, source), layout.size)
        except PageSkipped as e:
            log.warning("page %s is copied as it is: %s", rel, e)
            skipped += 1
            pages.append(page)
            continue
        todo = _todo(layout, level=cfg.predict.level, overwrite=cfg.predict.overwrite)
        for k, (unit_id, points, members, cut) in enumerate(todo):
            if not points or len(points) < 3:
                continue
            try:
                crop = cut(image, frame.to_pixels(points), settings)
            except PageSkipped:  # a degenerate polygon: nothing to read
                continue
            target = crops / f"{n:05d}" / f"{k:04d}_{_safe(unit_id)}.png"  # k: two ids may look alike once safe
            target.parent.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            crop.save(buf, format="PNG")
            atomic.write_bytes(target, buf.getvalue())  # a kill never leaves half a crop
            record = Record(id=f"{rel}#{unit_id}", image=str(target), text="", group=rel)
            region = next((r for r, ids in page.regions.items() if members[0] in ids or r == unit_id), "")
            page.units.append(_Unit(page=rel, id=unit_id, region=region, lines=members, record=record))
        pages.append(page)
    return pages, skipped


def _todo(layout: PageLines, *, level: str, overwrite: bool):
    """(id, points, the lines it fills, how to cut it) for each crop to read on a page."""
    for region, lines in by_region(layout):
        if level == "region" and region is not None and lines:
            if overwrite or not all(ln.text for ln in lines):
                yield region.id, region.points, [ln.id for ln in lines], crop_region
        else:
            yield from ((ln.id, ln.points, [ln.id], crop_line) for ln in lines if overwrite or not ln.text)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".") or "unit"


def _fill(page: _Page, readings: dict[int, Reading], *, target: Path, step: Step, overwrite: bool, counts: dict) -> None:
    lines: dict[str, Reading] = {}
    whole: dict[str, Reading] = {}
    for unit in page.units:
        reading = readings[id(unit)]
        if not reading.text:
            continue
        if unit.lines == [unit.id]:
            lines[unit.id] = reading
            continue
        parts = reading.text.split("\n")
        if len(parts) == len(unit.lines):
            lines.update((ln, Reading(part.strip(), reading.conf)) for ln, part in zip(unit.lines, parts) if part.strip())
        else:
            whole[unit.id] = reading
            counts["regions_unsplit"] += 1
    if not lines and not whole:
        return
    try:
        filled = page.fmt.fill(page.path, lines, page.regions, overwrite=overwrite, step=step, region_readings=whole)
    except DataError as e:
        log.warning("page %s is copied as it is: %s", page.rel, e)
        counts["pages_skipped"] += 1
        return
    atomic.write_bytes(target / page.rel, filled.data)
    for key in ("lines_written", "lines_kept", "regions_written", "words_cleared"):
        counts[key] += getattr(filled, key)


def _ranked(unit: _Unit, output, samples: list[str]) -> RankedLine:
    return rank_line(RankedLine(
        page=unit.page, line=unit.id, region=unit.region, text=output.text.strip(), image=unit.record.image,
        confidence=confidence(output), mean_logprob=output.mean_logprob, min_logprob=output.min_logprob,
        disagreement=disagreement([output.text.strip(), *[s.strip() for s in samples]]) if samples else None,
        num_tokens=output.num_tokens, looped=output.looped,
    ))  # fmt: skip
