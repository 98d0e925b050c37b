"""What a page file (PAGE-XML, ALTO) holds, as the format readers return it: its lines and
regions with their coordinates, before any cropping. Plain types, imported by the readers
(page_xml, alto, page_predictions), the samplers (page_samples) and the importer (lines)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class Line:
    """One text line found in a page file, before cropping.

    ``points`` are in the page file's coordinates (see :attr:`PageLines.size`); ``region``
    is the id of the innermost region holding the line ("" when none does).
    """

    id: str
    region: str
    text: str  # already stripped; "" = no text
    points: Optional[list[tuple[float, float]]]  # None = coordinates could not be parsed
    source_line: int  # line of the TextLine element in the XML file
    machine: bool = False  # text task=predict wrote, unchanged since (ocrft.data.machine_text)


@dataclass(frozen=True)
class Region:
    """A text region (PAGE TextRegion or TableCell, ALTO TextBlock), before cropping."""

    id: str
    text: str  # the region's own text (PAGE region TextEquiv), stripped; "" = none
    points: Optional[list[tuple[float, float]]]  # None = coordinates could not be parsed
    source_line: int
    machine: bool = False  # text task=predict wrote, unchanged since (ocrft.data.machine_text)


@dataclass
class PageLines:
    """What a format module reads from one page file.

    To put ``points`` on the image: multiply x by ``image.width / size[0]`` and y by
    ``image.height / size[1]`` (they differ for a rescaled image or ALTO's mm10 unit).
    """

    image_ref: Optional[str]  # the image as the file names it; None = look for a same-stem image
    size: Optional[tuple[float, float]]  # page size the coordinates refer to; None = image's
    lines: list[Line] = field(default_factory=list)  # in reading order
    skip_reason: Optional[str] = None  # the whole page cannot be imported (e.g. unknown unit)
    regions: list[Region] = field(default_factory=list)  # in reading order; every line's region is here
