"""Readings written into PAGE-XML (ocrft.data.page_writeback) on export shapes of Transkribus
(PAGE 2013, lines with Words and a Transkribus Metadata element) and OCR-D (PAGE 2019, Words
and Glyphs, MetadataItems, a pc: prefix): a stripped export is filled, the output validates
against the PAGE 2019 XSD (2013: that schema's rules for what is written, see
tests/assets/xsd/README.md), all but the written text is as it was, existing text is kept
without overwrite, and task=prepare brings corrected lines back as ground truth."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from lxml import etree

from ocrft.data.machine_text import is_machine_text, mark, text_hash
from ocrft.data.page_writeback import fill_page
from ocrft.data.page_xml import read_page_xml
from ocrft.data.record import DataError
from ocrft.data.writeback import Reading, Step
from tests.xml_canonical import canonical
from tests.helpers import REPO, prepare

EXPORTS = REPO / "tests" / "assets" / "exports"
XSD_2019 = REPO / "tests" / "assets" / "xsd" / "page-2019-07-15.xsd"
OCRD = "ocrd_2019/OCR-D-SEG-WORD/OCR-D-SEG-WORD_0001.xml"
TRANSKRIBUS = "transkribus/Doc_A/page/0001_p1.xml"
STEP = Step(software="ocrft 0.1.0", model="tiny:qwen2_vl", run="outputs/run1", when="2026-12-07T12:00:00")


def _regions(path: Path) -> dict[str, list[str]]:
    from ocrft.data.page_samples import by_region

    return {r.id: [ln.id for ln in lines] for r, lines in by_region(read_page_xml(path)) if r is not None}


def _fill(path: Path, lines: dict[str, str], **kw):
    readings = {k: Reading(v, 0.8) for k, v in lines.items()}
    return fill_page(path, readings, _regions(path), overwrite=kw.pop("overwrite", False), step=STEP, **kw)


def _written(tmp_path: Path, path: Path, data: bytes) -> Path:
    out = tmp_path / "out" / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out


def _strip(src: Path, dst: Path, keep: tuple[str, ...] = ()) -> Path:
    """A copy of ``src`` without TextEquivs, as layout analysis leaves a page (``keep``: ids
    of lines whose text stays)."""
    tree = etree.parse(str(src))
    for equiv in list(tree.iter("{*}TextEquiv")):
        if equiv.getparent().get("id") not in keep:
            equiv.getparent().remove(equiv)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(etree.tostring(tree, xml_declaration=True, encoding="UTF-8", standalone=True))
    return dst


def _canonical(data: bytes) -> bytes:
    """The file without what a write-back may change: TextEquivs, ocrft marks, ocrft's step."""
    return canonical(data, mark="comments", written=lambda el, name: name in ("TextEquiv", "Comments") or (
        name == "MetadataItem" and el.get("name") == "ocrft"))


def _check_2013(root) -> None:
    """PAGE 2013-07-15's rules for what the write-back writes (its XSD: TextLineType,
    TextRegionType, TextEquivType, MetadataType)."""
    for el in root.iter("{*}TextLine", "{*}TextRegion", "{*}Word", "{*}Glyph"):
        kids = [etree.QName(c).localname for c in el]
        assert kids.count("TextEquiv") <= 1, el.get("id")
        if "TextEquiv" in kids:  # after Coords, Baseline, Words, TextLines and nested regions; before TextStyle
            after = kids[kids.index("TextEquiv") + 1:]
            assert set(after) <= {"TextStyle"}, (el.get("id"), kids)
    for equiv in root.iter("{*}TextEquiv"):
        assert set(equiv.attrib) <= {"conf"} and 0 <= float(equiv.get("conf", 0)) <= 1
        assert [etree.QName(c).localname for c in equiv] in (["Unicode"], ["PlainText", "Unicode"])
    metadata = [etree.QName(c).localname for c in root.find("{*}Metadata")]
    known = [n for n in metadata if n in ("Creator", "Created", "LastChange", "Comments")]
    assert known[:3] == ["Creator", "Created", "LastChange"] and known[3:] in ([], ["Comments"])


def test_ocrd_2019_stripped_lines_filled_valid_and_unchanged_elsewhere(tmp_path):
    src = EXPORTS / OCRD
    filled = _fill(src, {"line0001": "Jn ſeiner", "line0002": "der Gelehrte", "line0003": "Erstes Kapitel"})
    out = _written(tmp_path, src, filled.data)
    schema = etree.XMLSchema(etree.parse(str(XSD_2019)))
    assert schema.validate(etree.parse(str(src))), "the fixture itself is valid"
    assert schema.validate(etree.parse(str(out))), schema.error_log
    page = read_page_xml(out)
    texts = {ln.id: ln.text for ln in page.lines}
    # line0003 had text: kept without overwrite; the region texts are joined in reading order
    assert texts == {"line0001": "Jn ſeiner", "line0002": "der Gelehrte", "line0003": "Erſtes Capitel."}
    assert (filled.lines_written, filled.lines_kept, filled.regions_written) == (2, 1, 1)
    root = etree.parse(str(out)).getroot()
    region = root.find(".//{*}TextRegion[@id='region0001']/{*}TextEquiv")
    assert region.findtext("{*}Unicode") == "Jn ſeiner\nder Gelehrte" and region.get("conf") == "0.8000"
    assert root.find(".//{*}TextRegion[@id='region0002']/{*}TextEquiv") is None  # no line of it was written
    line = root.find(".//{*}TextLine[@id='line0001']")
    equiv = line.find("{*}TextEquiv")
    assert equiv.get("conf") == "0.8000" and equiv.get("comments") == mark("Jn ſeiner")
    assert [ln.machine for ln in page.lines] == [False, True, True]
    # the words of line0002 read "dcr Gclehrte": contradicted, so their text (and the glyph's) is gone
    assert filled.words_cleared == 2 and not root.findall(".//{*}Word//{*}TextEquiv")
    assert len(root.findall(".//{*}Word")) == 4 and root.find(".//{*}Glyph") is not None
    item = root.findall("{*}Metadata/{*}MetadataItem")[-1]
    assert (item.get("type"), item.get("name"), item.get("value")) == ("processingStep", "ocrft", "ocrft 0.1.0")
    assert {lb.get("type"): lb.get("value") for lb in item.iter("{*}Label")} == {"model": "tiny:qwen2_vl",
                                                                                "run": "outputs/run1"}
    # all else: coordinates, baselines, reading order, metadata, the pc: prefix, as they were
    assert _canonical(out.read_bytes()) == _canonical(src.read_bytes())
    assert out.read_bytes().startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<pc:PcGts xmlns:pc=')
    assert b"<pc:TextEquiv" in out.read_bytes() and b"ns0:" not in out.read_bytes()


def test_word_text_that_agrees_with_the_new_line_is_kept(tmp_path):
    src = EXPORTS / OCRD
    filled = _fill(src, {"line0002": "dcr  Gclehrte"})
    assert filled.words_cleared == 0
    assert len(etree.fromstring(filled.data).findall(".//{*}Word/{*}TextEquiv")) == 2


def test_overwrite_replaces_existing_text_and_every_textequiv(tmp_path):
    src = EXPORTS / OCRD
    filled = _fill(src, {"line0003": "Erstes Kapitel"}, overwrite=True)
    root = etree.fromstring(filled.data)
    equivs = root.findall(".//{*}TextLine[@id='line0003']/{*}TextEquiv")
    assert len(equivs) == 1 and equivs[0].findtext("{*}Unicode") == "Erstes Kapitel"
    assert root.find(".//{*}TextRegion[@id='region0002']/{*}TextEquiv").findtext("{*}Unicode") == "Erstes Kapitel"


def test_transkribus_2013_stripped_export_filled_within_the_2013_schema(tmp_path):
    src = _strip(EXPORTS / TRANSKRIBUS, tmp_path / "in" / "0001_p1.xml", keep=("r2l1",))
    filled = _fill(src, {"r1l1": "Перший рядок", "r1l2": "другий рядок", "r2l1": "інше"})
    out = _written(tmp_path, src, filled.data)
    root = etree.parse(str(out)).getroot()
    _check_2013(root)
    page = read_page_xml(out)
    assert {ln.id: ln.text for ln in page.lines} == {"r1l1": "Перший рядок", "r1l2": "другий рядок", "r2l1": "прим. 1"}
    # 2013's TextEquiv has no comments: the mark is on the line's (and region's) own
    line = root.find(".//{*}TextLine[@id='r1l1']")
    assert line.get("comments") == mark("Перший рядок") and line.get("custom") == "readingOrder {index:0;}"
    assert root.find(".//{*}TextRegion[@id='r1']/{*}TextEquiv").findtext("{*}Unicode") == "Перший рядок\nдругий рядок"
    assert {ln.id: ln.machine for ln in page.lines} == {"r1l1": True, "r1l2": True, "r2l1": False}
    comments = root.find("{*}Metadata/{*}Comments")
    assert "tiny:qwen2_vl" in comments.text and comments.getprevious().tag.endswith("LastChange")
    assert root.find("{*}Metadata/{*}TranskribusMetadata") is not None
    assert _canonical(out.read_bytes()) == _canonical(src.read_bytes())
    assert out.read_bytes().startswith(b"<?xml version='1.0' encoding='UTF-8' standalone='yes'?>\n<PcGts xmlns=")


def test_pages_before_2013_are_refused(tmp_path):
    src = EXPORTS / "prima_2010" / "pc-00000123.xml"
    with pytest.raises(DataError, match="older than 2013-07-15"):
        _fill(src, {"r1": "x"})


def test_a_region_read_whole_that_does_not_split_by_line_gets_the_text(tmp_path):
    src = EXPORTS / OCRD
    filled = fill_page(src, {}, _regions(src), overwrite=False, step=STEP,
                       region_readings={"region0001": Reading("one line only", 0.5)})  # fmt: skip
    root = etree.fromstring(filled.data)
    assert root.find(".//{*}TextRegion[@id='region0001']/{*}TextEquiv").findtext("{*}Unicode") == "one line only"
    assert filled.regions_written == 1 and filled.lines_written == 0


@pytest.mark.parametrize("skip, expected", [(True, {"line0001": "Jn ſeiner Stube"}),
                                            (False, {"line0001": "Jn ſeiner Stube", "line0002": "der Gelehrte"})])
def test_round_trip_corrected_lines_come_back_as_ground_truth(tmp_path, skip, expected):
    """Write back, correct one line as a person would (its text only), prepare again: the
    corrected line is ground truth, the untouched machine line is left out (or kept with
    data.skip_machine_text=false), and the human line is always there."""
    export = tmp_path / "export"
    shutil.copytree(EXPORTS / "ocrd_2019", export)
    page = export / "OCR-D-SEG-WORD" / "OCR-D-SEG-WORD_0001.xml"
    page.write_bytes(_fill(page, {"line0001": "Jn ſeinor", "line0002": "der Gelehrte"}).data)
    corrected = page.read_text(encoding="utf-8").replace(">Jn ſeinor<", ">Jn ſeiner Stube<")
    page.write_text(corrected, encoding="utf-8")
    assert is_machine_text("Jn ſeinor", f"ocrft:{text_hash('Jn ſeinor')}") and not is_machine_text("Jn ſeiner Stube", mark("Jn ſeinor"))
    result = prepare(tmp_path, "page_xml", f"data.input_dir={export}", f"data.output_dir={tmp_path / 'prepared'}",
                     "data.split_by_line=true", "data.train_ratio=1", "data.val_ratio=0",
                     f"data.skip_machine_text={str(skip).lower()}")  # fmt: skip
    rows = [json.loads(line) for line in (tmp_path / "prepared" / "train.jsonl").open(encoding="utf-8")]
    got = {r["line"]: r["text"] for r in rows}
    assert got == {**expected, "line0003": "Erſtes Capitel."}
    report = json.loads(Path(result.paths["prepare_report"]).read_text())
    assert report["lines_skipped"].get("machine_text", 0) == (1 if skip else 0)


def test_a_reading_without_confidence_writes_no_conf(tmp_path):
    """An endpoint records no token log-probabilities: its text goes in without conf / WC."""
    src = EXPORTS / OCRD
    filled = fill_page(src, {"line0001": Reading("Jn ſeiner", None)}, _regions(src), overwrite=False, step=STEP)
    root = etree.fromstring(filled.data)
    assert root.find(".//{*}TextLine[@id='line0001']/{*}TextEquiv").get("conf") is None
    assert root.find(".//{*}TextRegion[@id='region0001']/{*}TextEquiv").get("conf") is None
    assert etree.XMLSchema(etree.parse(str(XSD_2019))).validate(root.getroottree())
