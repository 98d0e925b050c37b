"""task=predict on PAGE/ALTO exports end to end with the tiny offline model (docs/archive.md):
the filled copy, its ranking, predict.level=region, the round trip through task=prepare, and
the config errors."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import pytest
from lxml import etree

from ocrft.data.alto import read_alto
from ocrft.data.page_xml import read_page_xml
from tests.helpers import REPO, run

pytestmark = [pytest.mark.slow, pytest.mark.integration]

EXPORTS = REPO / "tests" / "assets" / "exports"
XSD_2019 = REPO / "tests" / "assets" / "xsd" / "page-2019-07-15.xsd"
OCRD_PAGE = "OCR-D-SEG-WORD/OCR-D-SEG-WORD_0001.xml"
TINY = ["model=tiny_qwen2_vl", "eval.max_new_tokens=6", "eval.batch_size=4"]


def test_fill_and_rank_an_ocrd_export(tmp_path):
    export, filled = EXPORTS / "ocrd_2019", tmp_path / "filled"
    record = run(["task=predict", *TINY, f"predict.input={export}", f"predict.output_dir={filled}",
                  "predict.rank=true", "predict.samples=2"], tmp_path / "run")  # fmt: skip
    m = record["metrics"]
    assert (m["predict/pages"], m["predict/read"], m["predict/lines_kept"]) == (1, 2, 0)  # line0003 had text: not read
    out = filled / OCRD_PAGE
    assert etree.XMLSchema(etree.parse(str(XSD_2019))).validate(etree.parse(str(out)))
    lines = {ln.id: ln for ln in read_page_xml(out).lines}
    assert lines["line0003"].text == "Erſtes Capitel." and not lines["line0003"].machine
    written = [ln for ln in lines.values() if ln.machine]
    assert m["predict/lines_written"] == len(written) and all(ln.text for ln in written)
    assert (filled / "OCR-D-IMG" / "OCR-D-IMG_0001.png").read_bytes() == (export / "OCR-D-IMG" / "OCR-D-IMG_0001.png").read_bytes()
    rows = list(csv.DictReader((tmp_path / "run" / "ranking.csv").open(encoding="utf-8")))
    assert sorted(r["line"] for r in rows) == ["line0001", "line0002"]
    certainties = [float(r["certainty"]) for r in rows]
    assert certainties == sorted(certainties) and all(0 <= c <= 1 for c in certainties)
    for r in rows:  # certainty = confidence * (1 - disagreement between the greedy and 2 sampled readings)
        assert 0 <= float(r["disagreement"]) <= 1
        assert float(r["certainty"]) == pytest.approx(float(r["confidence"]) * (1 - float(r["disagreement"])), abs=1e-5)
        assert (tmp_path / "run" / "crops").exists() and r["image"].endswith(".png")
    pages = [json.loads(line) for line in (tmp_path / "run" / "ranking.jsonl").open(encoding="utf-8")]
    assert [p["page"] for p in pages] == [OCRD_PAGE] and len(pages[0]["lines"]) == 2


def test_alto_and_region_level(tmp_path):
    export = tmp_path / "export"
    shutil.copytree(EXPORTS / "alto" / "tesseract", export / "alto")
    shutil.copytree(EXPORTS / "ocrd_2019", export / "page")
    record = run(["task=predict", *TINY, f"predict.input={export}", "predict.level=region", "predict.overwrite=true"],
                 tmp_path / "run")  # fmt: skip
    filled = tmp_path / "run" / "export"
    assert record["metrics"]["predict/pages"] == 2
    assert etree.XMLSchema(etree.parse(str(XSD_2019))).validate(etree.parse(str(filled / "page" / OCRD_PAGE)))
    root = etree.parse(str(filled / "page" / OCRD_PAGE)).getroot()
    # every region was read whole; one its lines could not take is the region's own text
    assert all(r.find("{*}TextEquiv") is not None for r in root.iter("{*}TextRegion"))
    assert read_alto(filled / "alto" / "scan1.xml") is not None


def test_round_trip_through_prepare(tmp_path):
    """Pre-fill a stripped Transkribus export, correct one line by hand, prepare: the
    corrected line is ground truth and the uncorrected machine lines are left out."""
    export = tmp_path / "export"
    shutil.copytree(EXPORTS / "transkribus", export)
    for page in (export / "Doc_A" / "page").glob("*.xml"):
        tree = etree.parse(str(page))
        for equiv in list(tree.iter("{*}TextEquiv")):
            equiv.getparent().remove(equiv)
        page.write_bytes(etree.tostring(tree, xml_declaration=True, encoding="UTF-8", standalone=True))
    run(["task=predict", *TINY, f"predict.input={export}", f"predict.output_dir={tmp_path / 'filled'}"],
        tmp_path / "run")  # fmt: skip
    page = tmp_path / "filled" / "Doc_A" / "page" / "0001_p1.xml"
    tree = etree.parse(str(page))
    line = tree.find(".//{*}TextLine[@id='r1l1']")
    line.find("{*}TextEquiv/{*}Unicode").text = "Перший рядок тексту"  # what a person typed
    page.write_bytes(etree.tostring(tree, xml_declaration=True, encoding="UTF-8", standalone=True))
    machine = [ln.id for p in (tmp_path / "filled" / "Doc_A" / "page").glob("*.xml")
               for ln in read_page_xml(p).lines if ln.machine]  # fmt: skip
    assert "r1l1" not in machine and machine
    prepared = tmp_path / "prepared"
    record = run(["task=prepare", "data=page_xml", f"data.input_dir={tmp_path / 'filled'}",
                  f"data.output_dir={prepared}", "data.train_ratio=1", "data.val_ratio=0"], tmp_path / "prep")  # fmt: skip
    rows = [json.loads(r) for r in (prepared / "train.jsonl").open(encoding="utf-8")]
    assert [(r["line"], r["text"]) for r in rows] == [("r1l1", "Перший рядок тексту")]
    report = json.loads((prepared / "prepare_report.json").read_text())
    assert report["lines_skipped"]["machine_text"] == len(machine) and record["metrics"]["prepare/lines_written"] == 1


@pytest.mark.parametrize("args, key", [
    (["predict.samples=2"], "predict.samples"),  # sampled readings only feed the ranking
    (["predict.level=page", "predict.rank=true"], "predict.level"),
    (["predict.output_dir={export}/copy"], "predict.output_dir"),  # inside the export
])  # fmt: skip
def test_bad_export_config_is_one_line_exit_2(tmp_path, args, key):
    export = EXPORTS / "ocrd_2019"
    args = [a.format(export=export) for a in args]
    proc = subprocess.run([sys.executable, "-m", "ocrft", "task=predict", "tracking=none", "model=tiny_qwen2_vl",
                           f"run_dir={tmp_path}", f"predict.input={export}", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ocrft: error:")]
    assert proc.returncode == 2 and len(errors) == 1 and key in errors[0], proc.stderr[-2000:]


def test_rank_on_a_folder_of_images_is_refused(tmp_path):
    images = REPO / "tests" / "assets" / "tiny_ocr"
    proc = subprocess.run([sys.executable, "-m", "ocrft", "task=predict", "tracking=none", "model=tiny_qwen2_vl",
                           f"run_dir={tmp_path}", f"predict.input={images}", "predict.rank=true"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ocrft: error:")]
    assert proc.returncode == 2 and errors and "predict.rank" in errors[0], proc.stderr[-2000:]
