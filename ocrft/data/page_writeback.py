"""A model's readings written into a PAGE-XML file: the TextLines' and their regions' text.

Each line read gets one TextEquiv (``conf`` = the reading's confidence, 0..1) with its text
in ``Unicode``; the region holding it gets its lines' texts joined with "\\n" in reading
order, ``conf`` the mean of its new lines'. A line or region that has text already keeps it
unless ``overwrite``; when it is overwritten, its TextEquivs give way to the one new. Word
(and their Glyph) text that the new line text contradicts (the words, joined with spaces,
read otherwise) is removed; the Words themselves and their coordinates stay.

What the schema versions allow decides the rest (:class:`Dialect`):

- the mark (ocrft.data.machine_text): since 2016-07-15 on the TextEquiv itself
  (``comments="ocrft:<hash>"``); in 2013-07-15, whose TextEquiv has only ``conf``, on the
  TextLine's or region's own ``comments`` attribute;
- the processing step: since 2018-07-15 a ``MetadataItem type="processingStep" name="ocrft"``
  with the model and the run as Labels; before, a line appended to ``Metadata/Comments``.

Files older than 2013-07-15 (TextEquiv needs PlainText there and elements have no
``comments``) are not written: :func:`fill_page` refuses them with a DataError.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from statistics import fmean

from ocrft.data import writeback as xml
from ocrft.data.machine_text import mark, with_mark
from ocrft.data.record import DataError
from ocrft.data.writeback import Filled, Reading, Step

OLDEST = "2013-07-15"
_LINE_AFTER = ("TextStyle", "UserDefined", "Labels")  # what follows TextEquiv in a TextLine
_REGION_AFTER = ("TextStyle",)  # in a TextRegion (its UserDefined and Labels come first)


@dataclass(frozen=True)
class Dialect:
    """What one PAGE version allows that the write-back uses."""

    mark_on_equiv: bool  # TextEquiv@comments (2016-07-15 and later)
    metadata_item: bool  # Metadata/MetadataItem (2018-07-15 and later)

    @classmethod
    def of(cls, version: str) -> "Dialect":
        if version < OLDEST:
            raise ValueError(version)
        return cls(mark_on_equiv=version >= "2016-07-15", metadata_item=version >= "2018-07-15")


def fill_page(path: Path, lines: dict[str, Reading], regions: dict[str, list[str]], *, overwrite: bool,
              step: Step, region_readings: dict[str, Reading] | None = None) -> Filled:  # fmt: skip
    """The bytes of ``path`` with ``lines`` (line id -> reading) written in.

    Args:
        regions: region id -> the ids of its lines in reading order (ocrft.data.page_samples
            ``by_region``): which region texts to rebuild, and in which order to join.
        region_readings: regions read whole whose reading could not be split by line: their
            own TextEquiv gets the reading.
    """
    root, original = xml.parse(path)
    version = root.tag[1:].partition("}")[0].rpartition("/")[2]
    try:
        dialect = Dialect.of(version)
    except ValueError:
        raise DataError(f"PAGE {version} is older than {OLDEST}: ocrft writes text into {OLDEST} and later", path) from None
    by_id = {el.get("id"): el for el in root.iter() if isinstance(el.tag, str) and el.get("id")}
    by_id.update({f"line{el.sourceline}": el for el in root.iter("{*}TextLine") if not el.get("id")})
    filled = Filled(data=b"")
    written: dict[str, float | None] = {}  # line id -> conf of what was written
    for line_id, reading in lines.items():
        el = by_id.get(line_id)
        if el is None:
            filled.missing.append(line_id)
        elif _text(el) and not overwrite:
            filled.lines_kept += 1
        else:
            _set_text(el, reading, dialect, after=_LINE_AFTER)
            filled.words_cleared += _clear_words(el, reading.text)
            filled.lines_written += 1
            written[line_id] = reading.conf
    for region_id, line_ids in regions.items():
        el = by_id.get(region_id)
        whole = (region_readings or {}).get(region_id)
        if el is None or not (whole or any(i in written for i in line_ids)) or (_text(el) and not overwrite):
            continue
        texts = [_text(by_id[i]) for i in line_ids if i in by_id]
        confs = [written[i] for i in line_ids if written.get(i) is not None]
        reading = whole or Reading("\n".join(t for t in texts if t), fmean(confs) if confs else None)
        _set_text(el, reading, dialect, after=_REGION_AFTER)
        filled.regions_written += 1
    if filled.lines_written or filled.regions_written:
        _add_step(root, step, dialect)
    filled.data = xml.serialize(root, original)
    return filled


def _text(el) -> str:
    """The element's main TextEquiv text (lowest index, else the first), stripped."""
    equivs = xml.children(el, "TextEquiv")
    if not equivs:
        return ""
    main = min(equivs, key=lambda e: int(e.get("index", "")) if e.get("index", "").isdigit() else float("inf"))
    unicode = xml.children(main, "Unicode")
    return (unicode[0].text or "").strip() if unicode else ""


def _set_text(el, reading: Reading, dialect: Dialect, *, after: tuple[str, ...]) -> None:
    """Replace ``el``'s TextEquivs with one holding ``reading``, marked as the dialect allows."""
    equiv = xml.element(el, "TextEquiv", {"conf": xml.conf_text(reading.conf)} if reading.conf is not None else {})
    if dialect.mark_on_equiv:
        equiv.set("comments", mark(reading.text))
    else:
        el.set("comments", with_mark(el.get("comments"), reading.text))
    equiv.append(xml.element(el, "Unicode", text=reading.text))
    old = xml.children(el, "TextEquiv")
    if old:
        xml.replace(old[0], equiv)
        for extra in old[1:]:
            xml.remove(extra)
    else:
        xml.insert(el, equiv, before=after)


def _clear_words(line, text: str) -> int:
    """Remove the TextEquivs of the line's Words and everything below them (Glyphs,
    Graphemes) when the words, joined with spaces, no longer read ``text``."""
    words = xml.children(line, "Word")
    if not words or " ".join(_text(w) for w in words).split() == text.split():
        return 0
    cleared = 0
    for word in words:
        equivs = [e for e in word.iter("{*}TextEquiv")]
        for equiv in equivs:
            xml.remove(equiv)
        cleared += bool(equivs)
    return cleared


def _add_step(root, step: Step, dialect: Dialect) -> None:
    metadata = xml.children(root, "Metadata")
    if not metadata:  # required by every version; a file without it is left as it is
        return
    metadata = metadata[0]
    if dialect.metadata_item:
        item = xml.element(metadata, "MetadataItem", {"type": "processingStep", "name": "ocrft",
                                                      "value": step.software, "date": step.when})  # fmt: skip
        labels = xml.element(metadata, "Labels")
        for kind, value in (("model", step.model), ("run", step.run)):
            labels.append(xml.element(metadata, "Label", {"type": kind, "value": value}))
        item.append(labels)
        xml.insert(metadata, item)  # MetadataItems come last
        return
    note = f"{step.software} wrote line text read by {step.model} (run {step.run}) on {step.when}"
    comments = xml.children(metadata, "Comments")
    if comments:
        comments[0].text = f"{comments[0].text}\n{note}" if comments[0].text else note
    else:  # Comments follows LastChange, whatever a producer put after it (TranskribusMetadata)
        last = xml.children(metadata, "LastChange")
        following = last[0].getnext() if last else None
        before = (xml.local(following),) if following is not None else ()
        xml.insert(metadata, xml.element(metadata, "Comments", text=note), before=before)
