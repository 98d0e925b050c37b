"""ALTO import: Tesseract boxes and word spacing, eScriptorium polygons, mm10 units.

Fixtures in tests/assets/exports/alto; expected sizes worked out by hand from their
coordinates (box + 4 px padding each side, scaled to the target height).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from ocrft.data.alto import read_alto
from ocrft.tasks.prepare import run_prepare
from ocrft.runner import RunContext
from ocrft.tracking import NullTracker
from tests.helpers import REPO, compose

ALTO = REPO / "tests" / "assets" / "exports" / "alto"


def prepare(tmp_path: Path, *overrides: str):
    cfg = compose(["task=prepare", "data=alto", "tracking=none", f"run_dir={tmp_path / 'run'}", *overrides])
    return run_prepare(cfg, RunContext(run_dir=tmp_path / "run", tracker=NullTracker()))


def written(out: Path) -> dict[str, dict]:
    return {
        r["id"]: r
        for s in ("train", "val", "test")
        for r in map(json.loads, (out / f"{s}.jsonl").read_text().splitlines())
    }


def test_tesseract_strings_spaces_and_hyphens():
    page = read_alto(ALTO / "tesseract" / "scan1.xml")
    assert page.image_ref == "scan1.png" and page.size == (400, 300) and page.skip_reason is None
    texts = {line.id: line.text for line in page.lines}
    assert texts == {
        "line_0": "Hello world",  # String SP String
        "line_1": "An exam-",  # ... HYP CONTENT="-"
        "line_2": "no gap",  # two Strings without SP: one space
        "line_3": "a  b",  # one space per SP
        "line_4": "zero",
        "line_5": "",  # no String
    }
    assert [line.region for line in page.lines] == ["block_0"] * 2 + ["block_1"] * 4
    assert page.lines[0].points == [(20, 30), (220, 30), (220, 70), (20, 70)]  # from HPOS/VPOS/WIDTH/HEIGHT


def test_escriptorium_polygon_wins_over_the_box():
    page = read_alto(ALTO / "escriptorium" / "page_a.xml")
    assert [line.text for line in page.lines] == ["Рукопис XVII ст.", "Second line"]
    assert page.lines[0].points == [(40, 40), (240, 40), (240, 80), (140, 90), (40, 80)]  # "x y x y"
    assert page.lines[1].points == [(40, 120), (300, 120), (300, 160), (40, 160)]  # "x,y x,y"


def test_alto_folder_import(tmp_path):
    out = tmp_path / "out"
    result = prepare(tmp_path, f"data.input_dir={ALTO}", f"data.output_dir={out}", "data.target_height=32")
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["pages"] == 3
    assert report["pages_skipped"] == {"unsupported_measurement_unit": 1}  # mm10 without a page size
    assert report["lines_skipped"] == {"degenerate_polygon": 1, "no_text": 1, "unsupported_measurement_unit": 1}
    assert result.metrics["prepare/lines_written"] == 7
    rows = written(out)
    # id -> (text, width at height 32, gray at the crop's centre)
    expected = {
        "tesseract/scan1/line_0": ("Hello world", 139, 40),  # 200x40 + pad = 208x48
        "tesseract/scan1/line_1": ("An exam-", 243, 60),  # 288x38
        "tesseract/scan1/line_2": ("no gap", 133, 80),  # 158x38 -> 133.05
        "tesseract/scan1/line_3": ("a  b", 133, 100),
        # polygon box 40..240 x 40..90 + pad = 208x58 (the HPOS box would give 228x78 -> 94)
        "escriptorium/page_a/eSc_line_0f2a9c41": ("Рукопис XVII ст.", 115, 40),
        "escriptorium/page_a/eSc_line_7bd03e55": ("Second line", 179, 60),  # 268x48 -> 178.67
        # mm10 on an 800x600 page, 400x300 image: HPOS 40 VPOS 60 400x80 -> 20,30 200x40 px
        "mm10/page/P1_TL00001": ("Scaled line", 139, 40),
    }
    assert set(rows) == set(expected)
    for line_id, (text, width, gray) in expected.items():
        image = Image.open(out / rows[line_id]["image"])
        assert rows[line_id]["text"] == text
        assert image.size == (width, 32), line_id
        assert image.getpixel((width // 2, 16))[0] == pytest.approx(gray, abs=2)


def test_crops_at_their_own_height_are_not_resampled(tmp_path):
    out = tmp_path / "out"
    prepare(tmp_path, f"data.input_dir={ALTO / 'tesseract'}", f"data.output_dir={out}", "data.target_height=38")
    sizes = {line_id.rsplit("/", 1)[1]: Image.open(out / r["image"]).size for line_id, r in written(out).items()}
    # at height 38 the 38-high crops are not resampled: box width + 8
    assert sizes["line_1"] == (288, 38) and sizes["line_2"] == (158, 38) and sizes["line_3"] == (158, 38)
    assert sizes["line_0"] == (round(208 * 38 / 48), 38)


def test_mask_on_a_polygon_line(tmp_path):
    export = tmp_path / "export"
    shutil.copytree(ALTO / "escriptorium", export)
    out = tmp_path / "out"
    # height 58 = the crop's own height: no resampling, so pixels can be checked exactly
    prepare(tmp_path, f"data.input_dir={export}", f"data.output_dir={out}", "data.target_height=58", "data.mask=true")
    image = Image.open(out / written(out)["page_a/eSc_line_0f2a9c41"]["image"])
    assert image.size == (208, 58)
    assert image.getpixel((0, 0)) == (255, 255, 255)  # inside the gray HPOS box, outside the polygon
    assert image.getpixel((104, 20)) == (40, 40, 40)  # inside the polygon
    assert image.getpixel((200, 55)) == (255, 255, 255)  # below the slanted bottom edge
    prepare(tmp_path, f"data.input_dir={export}", f"data.output_dir={out}", "data.target_height=58")
    image = Image.open(out / written(out)["page_a/eSc_line_0f2a9c41"]["image"])
    assert image.getpixel((0, 0)) == (150, 150, 150) and image.getpixel((200, 55)) == (150, 150, 150)


def test_image_found_by_stem_or_by_the_name_of_an_absolute_path(tmp_path):
    export = tmp_path / "export"
    shutil.copytree(ALTO / "tesseract", export)
    xml = export / "scan1.xml"
    # Tesseract records the path it was given; the export moved since
    xml.write_text(xml.read_text().replace("<fileName>scan1.png</fileName>", "<fileName>/home/someone/scans/scan1.png</fileName>"))
    result = prepare(tmp_path, f"data.input_dir={export}", f"data.output_dir={tmp_path / 'out'}")
    assert result.metrics["prepare/lines_written"] == 4
    xml.write_text(xml.read_text().replace("<fileName>/home/someone/scans/scan1.png</fileName>", ""))
    result = prepare(tmp_path, f"data.input_dir={export}", f"data.output_dir={tmp_path / 'out'}")
    assert result.metrics["prepare/lines_written"] == 4


def test_unknown_unit_and_several_pages_are_skipped(tmp_path):
    export = tmp_path / "export"
    shutil.copytree(ALTO / "tesseract", export)
    text = (export / "scan1.xml").read_text()
    (export / "inch.xml").write_text(text.replace(">pixel<", ">furlong<"))
    two_pages = text.replace("</Layout>", '<Page ID="page_1" WIDTH="400" HEIGHT="300"/></Layout>')
    (export / "two.xml").write_text(two_pages)
    prepare(tmp_path, f"data.input_dir={export}", f"data.output_dir={tmp_path / 'out'}")
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert report["pages_skipped"] == {"multi_page_alto": 1, "unsupported_measurement_unit": 1}
    assert report["lines_written"]["total"] == 4


def test_text_blocks_at_region_level_and_the_whole_page(tmp_path):
    page = read_alto(ALTO / "tesseract" / "scan1.xml")
    assert [(r.id, r.points[0], r.text) for r in page.regions] == [("block_0", (20, 30), ""), ("block_1", (20, 130), "")]
    out = tmp_path / "out"
    prepare(tmp_path, f"data.input_dir={ALTO / 'tesseract'}", f"data.output_dir={out}", "data.level=region")
    rows = written(out)
    # a block's lines joined in document order; line_4's box is degenerate but its text is the block's
    assert {k: (r["text"], r["bbox"], r["line"]) for k, r in rows.items()} == {
        "scan1/block_0": ("Hello world\nAn exam-", [20, 30, 300, 110], None),
        "scan1/block_1": ("no gap\na  b\nzero", [20, 130, 170, 280], None),
    }
    assert Image.open(out / rows["scan1/block_0"]["image"]).size == (288, 88)  # 280x80 + padding, not squeezed
    prepare(tmp_path, f"data.input_dir={ALTO / 'tesseract'}", f"data.output_dir={out}", "data.level=page")
    (row,) = written(out).values()
    assert row["text"] == "Hello world\nAn exam-\nno gap\na  b\nzero" and row["page_size"] == [400, 300]
    assert row["image"] == "pages/scan1.png" and Image.open(out / row["image"]).size == (400, 300)


ALTO_V1 = """<?xml version="1.0" encoding="UTF-8"?>
<alto xmlns="http://schema.ccs-gmbh.com/ALTO">
  <Description>
    <MeasurementUnit>inch1200</MeasurementUnit>
    <sourceImageInformation>
      <fileName>
        \\\\libdpsrv1\\storage\\root\\projects\\NDNP\\batch_1\\ocr\\0070.tif
      </fileName>
    </sourceImageInformation>
  </Description>
  <Layout>
    <Page ID="P1" PHYSICAL_IMG_NR="1" HEIGHT="3600" WIDTH="4800">
      <PrintSpace HEIGHT="3600" WIDTH="4800" HPOS="0" VPOS="0">
        <TextBlock ID="P1_TB00001" HPOS="240" VPOS="360" WIDTH="2400" HEIGHT="480">
          <TextLine HEIGHT="480" WIDTH="2400" HPOS="240" VPOS="360">
            <String STYLEREFS="TXT_0" HEIGHT="480" WIDTH="1000" HPOS="240" VPOS="360" CONTENT="WINCHESTER" WC="0.91"/>
            <SP WIDTH="60" HPOS="1240" VPOS="360"/>
            <String HEIGHT="480" WIDTH="1000" HPOS="1300" VPOS="360" CONTENT="NEWS" WC="0.88"/>
          </TextLine>
        </TextBlock>
      </PrintSpace>
    </Page>
  </Layout>
</alto>
"""


def test_alto_v1_docworks_newspaper_page(tmp_path: Path):
    """ALTO 1.x as the US newspaper programme's docWORKS output writes it: the CCS namespace,
    inch1200 units and a Windows share path as the image name (only its file name helps)."""
    export = tmp_path / "batch"
    export.mkdir()
    (export / "0070.xml").write_text(ALTO_V1)
    Image.new("RGB", (400, 300), "white").save(export / "0070.tif")
    page = read_alto(export / "0070.xml")
    assert page.skip_reason is None and [line.text for line in page.lines] == ["WINCHESTER NEWS"]
    out = tmp_path / "out"
    result = prepare(tmp_path, f"data.input_dir={export}", f"data.output_dir={out}", "data.padding=0")
    assert result.metrics["prepare/lines_written"] == 1
    (row,) = written(out).values()
    # 4800 x 3600 inch1200 on a 400 x 300 image: a factor of 1/12
    assert row["text"] == "WINCHESTER NEWS" and row["bbox"] == [20, 30, 220, 70]
    assert row["page_image"] == "0070.tif"
