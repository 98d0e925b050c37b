"""A model's readings written into an ALTO file (v1-v4): each TextLine's text.

A line read gets one ``String`` holding its whole text in ``CONTENT`` (spaces included, as
eScriptorium writes lines), ``WC`` = the reading's confidence (0..1), and the line's box
(HPOS/VPOS/WIDTH/HEIGHT) when the line has one: the model reads lines, not words, so there
are no word boxes to give. A line with text keeps it unless ``overwrite``; when it is
overwritten, its String, SP and HYP elements give way to the new String (a Shape stays).

ALTO has no comments attribute; the mark (ocrft.data.machine_text) is a tag instead: the
String's ``TAGREFS`` names an ``OtherTag`` with ID ``ocrft.<hash>`` (``LABEL="ocrft"``) in the
file's ``Tags``, one per distinct text. The processing step is an ``OCRProcessing`` element
in ``Description`` (every ALTO version has it) naming ocrft, the model and the run.
"""

from __future__ import annotations

from pathlib import Path

from ocrft.data import writeback as xml
from ocrft.data.machine_text import text_hash
from ocrft.data.writeback import Filled, Reading, Step

_TEXT = ("String", "SP", "HYP")
_BOX = ("HPOS", "VPOS", "WIDTH", "HEIGHT")


def fill_alto(path: Path, lines: dict[str, Reading], *, overwrite: bool, step: Step) -> Filled:
    """The bytes of ``path`` with ``lines`` (line id, or ``line<N>`` for a line without an
    ID, N its line in the file -> reading) written in."""
    root, original = xml.parse(path)
    by_id = {}
    for el in root.iter("{*}TextLine"):
        by_id[el.get("ID") or f"line{el.sourceline}"] = el
    filled = Filled(data=b"")
    tags: dict[str, str] = {}  # tag id -> text, for the OtherTags to add
    for line_id, reading in lines.items():
        el = by_id.get(line_id)
        if el is None:
            filled.missing.append(line_id)
            continue
        if _has_text(el) and not overwrite:
            filled.lines_kept += 1
            continue
        tag = f"ocrft.{text_hash(reading.text)}"
        tags[tag] = reading.text
        _set_text(el, reading, tag)
        filled.lines_written += 1
    if filled.lines_written:
        _add_tags(root, tags)
        _add_step(root, step)
    filled.data = xml.serialize(root, original)
    return filled


def _has_text(line) -> bool:
    return any((s.get("CONTENT") or "").strip() for s in xml.children(line, "String"))


def _set_text(line, reading: Reading, tag: str) -> None:
    string = xml.element(line, "String")
    for key in _BOX:
        if line.get(key) is not None:
            string.set(key, line.get(key))
    string.set("CONTENT", reading.text)
    if reading.conf is not None:
        string.set("WC", xml.conf_text(reading.conf))
    string.set("TAGREFS", tag)
    old = xml.children(line, *_TEXT)
    if old:
        xml.replace(old[0], string)
        for extra in old[1:]:
            xml.remove(extra)
    else:
        xml.insert(line, string)  # after a Shape, the only other child a TextLine has


def _add_tags(root, tags: dict[str, str]) -> None:
    """One OtherTag per new mark, in the file's Tags (made before Layout when it has none)."""
    found = xml.children(root, "Tags")
    if found:
        container = found[0]
    else:
        container = xml.element(root, "Tags")
        xml.insert(root, container, before=("Layout",))
    present = {el.get("ID") for el in container}
    for tag, text in tags.items():
        if tag not in present:
            description = "text written by ocrft and not corrected since, while it still hashes to this id"
            xml.insert(container, xml.element(root, "OtherTag", {"ID": tag, "LABEL": "ocrft", "DESCRIPTION": description}))


def _add_step(root, step: Step) -> None:
    description = xml.children(root, "Description")
    if not description:
        return
    description = description[0]
    ids = {el.get("ID") for el in root.iter() if isinstance(el.tag, str)}
    n = 1
    while f"OCRFT_{n}" in ids:
        n += 1
    processing = xml.element(description, "OCRProcessing", {"ID": f"OCRFT_{n}"})
    stage = xml.element(description, "ocrProcessingStep")
    stage.append(xml.element(description, "processingDateTime", text=step.when))
    stage.append(xml.element(description, "processingStepSettings", text=f"model={step.model}; run={step.run}"))
    software = xml.element(description, "processingSoftware")
    software.append(xml.element(description, "softwareName", text=step.software))
    stage.append(software)
    processing.append(stage)
    # after the OCRProcessing already there (ALTO v4's Processing elements come after them)
    xml.insert(description, processing, before=("Processing",))
