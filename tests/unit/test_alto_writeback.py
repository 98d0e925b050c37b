"""Readings written into ALTO (ocrft.data.alto_writeback) on the shape Tesseract writes
(ALTO v3, ComposedBlock/TextBlock/TextLine with String, SP and HYP, an OCRProcessing step):
a layout-only copy is filled, all but the lines' text is as it was, existing text is kept
without overwrite, and task=prepare brings corrected lines back as ground truth."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lxml import etree

from ocrft.data.alto import read_alto
from ocrft.data.alto_writeback import fill_alto
from ocrft.data.machine_text import text_hash
from ocrft.data.writeback import Reading, Step
from tests.xml_canonical import canonical
from tests.helpers import REPO, prepare

TESSERACT = REPO / "tests" / "assets" / "exports" / "alto" / "tesseract"
STEP = Step(software="ocrft 0.1.0", model="tiny:qwen2_vl", run="outputs/run1", when="2026-12-07T12:00:00")
TEXT = ("String", "SP", "HYP")


def _strip(dst: Path, keep: tuple[str, ...] = ("line_0",)) -> Path:
    """The Tesseract page with its lines' text gone but ``keep``'s (what a layout-only run leaves)."""
    shutil.copytree(TESSERACT, dst)
    page = dst / "scan1.xml"
    tree = etree.parse(str(page))
    for line in tree.iter("{*}TextLine"):
        if line.get("ID") not in keep:
            for el in [c for c in line if etree.QName(c).localname in TEXT]:
                line.remove(el)
    page.write_bytes(etree.tostring(tree, xml_declaration=True, encoding="UTF-8"))
    return page


def _canonical(data: bytes) -> bytes:
    """The file without what a write-back may change: the text, the tags, ocrft's processing step."""
    return canonical(data, written=lambda el, name: name in (*TEXT, "Tags") or (
        name == "OCRProcessing" and el.get("ID", "").startswith("OCRFT")))


def test_tesseract_alto_filled_and_unchanged_elsewhere(tmp_path):
    page = _strip(tmp_path / "export")
    readings = {"line_0": Reading("Hi there", 0.9), "line_1": Reading("An example", 0.75), "line_2": Reading("no gap", 0.5)}
    filled = fill_alto(page, readings, overwrite=False, step=STEP)
    out = tmp_path / "scan1.xml"
    out.write_bytes(filled.data)
    assert (filled.lines_written, filled.lines_kept) == (2, 1)
    texts = {ln.id: ln.text for ln in read_alto(out).lines}
    assert texts["line_0"] == "Hello world" and texts["line_1"] == "An example" and texts["line_2"] == "no gap"
    root = etree.parse(str(out)).getroot()
    string = root.find(".//{*}TextLine[@ID='line_1']/{*}String")
    # the line's box, the reading and its confidence, the mark naming a tag that exists
    assert {k: string.get(k) for k in ("HPOS", "VPOS", "WIDTH", "HEIGHT", "CONTENT", "WC")} == {
        "HPOS": "20", "VPOS": "80", "WIDTH": "280", "HEIGHT": "30", "CONTENT": "An example", "WC": "0.7500"}
    tag = root.find(f".//{{*}}Tags/{{*}}OtherTag[@ID='{string.get('TAGREFS')}']")
    assert tag is not None and tag.get("ID") == f"ocrft.{text_hash('An example')}" and tag.get("LABEL") == "ocrft"
    assert [etree.QName(c).localname for c in root] == ["Description", "Tags", "Layout"]
    step = root.findall("{*}Description/{*}OCRProcessing")[-1]
    assert step.get("ID") == "OCRFT_1" and step.findtext(".//{*}softwareName") == "ocrft 0.1.0"
    assert "tiny:qwen2_vl" in step.findtext(".//{*}processingStepSettings")
    assert {ln.id: ln.machine for ln in read_alto(out).lines if ln.text} == {"line_0": False, "line_1": True,
                                                                             "line_2": True}  # fmt: skip
    assert _canonical(out.read_bytes()) == _canonical(page.read_bytes())


def test_overwrite_replaces_strings_spaces_and_hyphens(tmp_path):
    filled = fill_alto(TESSERACT / "scan1.xml", {"line_1": Reading("An exam-", 0.6)}, overwrite=True, step=STEP)
    line = etree.fromstring(filled.data).find(".//{*}TextLine[@ID='line_1']")
    assert [etree.QName(c).localname for c in line] == ["String"] and line[0].get("CONTENT") == "An exam-"


def test_round_trip_on_alto(tmp_path):
    page = _strip(tmp_path / "export")
    readings = {"line_1": Reading("An exampel", 0.6), "line_2": Reading("no gap", 0.5), "line_3": Reading("a b", 0.4)}
    page.write_bytes(fill_alto(page, readings, overwrite=False, step=STEP).data)
    page.write_text(page.read_text(encoding="utf-8").replace('CONTENT="An exampel"', 'CONTENT="An example"'),
                    encoding="utf-8")  # fmt: skip
    prepare(tmp_path, "alto", f"data.input_dir={tmp_path / 'export'}", f"data.output_dir={tmp_path / 'prepared'}",
            "data.split_by_line=true", "data.train_ratio=1", "data.val_ratio=0")  # fmt: skip
    rows = [json.loads(line) for line in (tmp_path / "prepared" / "train.jsonl").open(encoding="utf-8")]
    assert {r["line"]: r["text"] for r in rows} == {"line_0": "Hello world", "line_1": "An example"}
