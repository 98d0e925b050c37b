"""What one sample of a page is, for each ``data.level``: a line, a region or the page.

A format module reads a page into lines and regions, both in reading order
(:class:`ocrft.data.lines.PageLines`). A sampler turns them into samples to crop:

- ``line``: each line with text. A region whose text exists only at region level (its
  ``TextEquiv`` holds text, none of its lines does, or it has no lines: PRImA's own
  example and much older ground truth) becomes a region sample instead, so that text is
  not lost; its empty lines are counted ``no_text``.
- ``region``: each region, its target its lines' texts joined with "\\n" in reading order,
  or the region's own text when no line has any.
- ``page``: the whole page image, its target every region's target joined with "\\n".

Skips are counted per sample: ``no_text``, ``invalid_coords``; and ``no_region`` for a line
outside every region at region level (the PAGE schema allows none; such lines still count
toward the page's text). A sample whose text holds any line task=predict wrote and nobody
corrected is flagged ``machine`` (ocrft.data.machine_text): the importer leaves it out
while ``data.skip_machine_text=true``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from ocrft.data.page_model import Line, PageLines, Region


@dataclass(frozen=True)
class Sample:
    """One thing to cut out of a page image and write, before cropping."""

    level: str  # line, region or page: decides how the image is cut and scaled
    id: str  # element id (line or region); "" for a page
    region: str  # enclosing region id ("" for a page)
    line: Optional[str]  # the line's element id; None for region and page samples
    text: str
    points: Optional[list[tuple[float, float]]]  # page coordinates; None = the whole page
    source_line: int
    machine: bool = False  # holds text task=predict wrote that nobody has corrected


Skip = tuple[str, int, str]  # (reason, line in the XML file, element id)


def by_region(page: PageLines) -> list[tuple[Optional[Region], list[Line]]]:
    """Regions in reading order, each with its lines; lines outside every region last (None)."""
    lines_of: dict[str, list[Line]] = {r.id: [] for r in page.regions}
    loose: list[Line] = []
    for line in page.lines:
        (lines_of[line.region] if line.region in lines_of else loose).append(line)
    groups: list[tuple[Optional[Region], list[Line]]] = [(r, lines_of[r.id]) for r in page.regions]
    return groups + ([(None, loose)] if loose else [])


def _joined(lines: list[Line]) -> str:
    return "\n".join(line.text for line in lines if line.text)


def _machine(region: Optional[Region], lines: list[Line]) -> bool:
    """Whether the text a region's sample gets (its lines', else its own) holds machine text."""
    if _joined(lines):
        return any(line.machine for line in lines if line.text)
    return bool(region and region.machine)


def _region_sample(region: Region, text: str, machine: bool) -> Sample:
    return Sample("region", region.id, region.id, None, text=text, points=region.points, source_line=region.source_line,
                  machine=machine)  # fmt: skip


def line_samples(page: PageLines) -> tuple[list[Sample], list[Skip]]:
    """Lines with text; region-level text where no line of the region has any."""
    samples, skips = [], []
    for region, lines in by_region(page):
        if region is not None and region.text and not _joined(lines):
            _add(samples, skips, _region_sample(region, region.text, region.machine))
        for line in lines:
            _add(samples, skips, Sample("line", line.id, line.region, line.id, text=line.text, points=line.points,
                                       source_line=line.source_line, machine=line.machine))
    return samples, skips


def region_samples(page: PageLines) -> tuple[list[Sample], list[Skip]]:
    """One sample per region: its lines' texts joined with "\\n", else its own text."""
    samples, skips = [], []
    for region, lines in by_region(page):
        if region is None:
            skips += [("no_region", line.source_line, line.id) for line in lines if line.text]
        else:
            _add(samples, skips, _region_sample(region, _joined(lines) or region.text, _machine(region, lines)))
    return samples, skips


def page_samples(page: PageLines) -> tuple[list[Sample], list[Skip]]:
    """The whole page: every region's target, then any loose lines, joined with "\\n"."""
    groups = by_region(page)
    texts = [_joined(lines) or (region.text if region else "") for region, lines in groups]
    machine = any(_machine(region, lines) for region, lines in groups)
    samples, skips = [], []
    _add(samples, skips, Sample("page", "", "", None, text="\n".join(t for t in texts if t), points=None, source_line=1,
                                machine=machine))  # fmt: skip
    return samples, skips


def _add(samples: list[Sample], skips: list[Skip], sample: Sample) -> None:
    """Keep ``sample`` if it has text and (unless it is the whole page) readable coordinates."""
    if not sample.text:
        skips.append(("no_text", sample.source_line, sample.id or "page"))
    elif sample.points is None and sample.level != "page":
        skips.append(("invalid_coords", sample.source_line, sample.id))
    else:
        samples.append(sample)


SAMPLERS: dict[str, Callable[[PageLines], tuple[list[Sample], list[Skip]]]] = {
    "line": line_samples,
    "region": region_samples,
    "page": page_samples,
}
