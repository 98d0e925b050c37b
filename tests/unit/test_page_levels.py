"""data.level=line|region|page for PAGE-XML imports, and the meta every prepared row carries.

Expected sizes are worked out by hand from the fixture coordinates (tests/assets/exports):
a box of w x h page pixels plus ``padding`` (4) on each side, clipped to the page; region
and page images shrunk by sqrt(max_pixels / (w * h)), each side rounded down.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
from PIL import Image

from ocrft.data.crops import fit_pixels
from ocrft.data.page_samples import SAMPLERS
from ocrft.data.page_xml import read_page_xml
from ocrft.data.readers import get_reader
from ocrft.tasks.prepare import run_prepare
from ocrft.runner import RunContext
from ocrft.tracking import NullTracker
from tests.helpers import REPO, compose

EXPORTS = REPO / "tests" / "assets" / "exports"
# what every prepared row of a page export holds (documented in ocrft/tasks/prepare.py)
ROW_KEYS = {
    "image", "text", "id", "page", "region",  # read by data=page_xml as record fields + group
    "line", "level", "bbox", "page_image", "page_size",  # kept in the record's meta
}  # fmt: skip
DOC_A_PAGE_2 = "Третій рядок\nдва кути\nпласка лінія\nпоза сторінкою\nКрай сторінки\nзламані координати"


def prepare(tmp_path: Path, export: str, *overrides: str, fmt: str = "page_xml") -> tuple[dict, list[dict]]:
    """Prepare ``EXPORTS/export`` into tmp_path/out; returns the report and every row (split order)."""
    out = tmp_path / "out"
    cfg = compose([
        "task=prepare", f"data={fmt}", "tracking=none", f"run_dir={tmp_path / 'run'}",
        f"data.input_dir={EXPORTS / export}", f"data.output_dir={out}", *overrides,
    ])  # fmt: skip
    run_prepare(cfg, RunContext(run_dir=tmp_path / "run", tracker=NullTracker()))
    rows = [json.loads(x) for s in ("train", "val", "test") for x in (out / f"{s}.jsonl").read_text().splitlines()]
    return json.loads((out / "prepare_report.json").read_text()), rows


def image(tmp_path: Path, row: dict) -> Image.Image:
    return Image.open(tmp_path / "out" / row["image"])


def test_line_rows_carry_what_matching_another_engine_needs(tmp_path):
    report, rows = prepare(tmp_path, "transkribus", "data.target_height=32")
    assert report["level"] == "line" and report["settings"]["level"] == "line"
    assert all(set(r) == ROW_KEYS for r in rows)
    by_id = {r["id"]: r for r in rows}
    first = by_id["Doc_A/0001_p1/r1l1"]
    assert (first["line"], first["region"], first["level"]) == ("r1l1", "r1", "line")
    assert first["bbox"] == [20, 30, 220, 70]  # the polygon's box, without the crop's padding
    assert first["page_image"] == "Doc_A/0001_p1.png" and first["page_size"] == [400, 300]
    # lg reaches x=450 on a 400 px page: its box is clipped to the image
    assert by_id["Doc_A/0002_p2/lg"]["bbox"] == [350, 140, 400, 190]


def test_bbox_is_in_image_pixels_when_the_xml_describes_a_bigger_scan(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    Image.new("L", (100, 60), 255).save(export / "p.png")
    ns = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"
    (export / "p.xml").write_text(  # the XML describes the 200x120 original; the image is halved
        f'<PcGts xmlns="{ns}"><Page imageFilename="p.png" imageWidth="200" imageHeight="120">'
        '<TextRegion id="r"><Coords points="0,0 200,0 200,120 0,120"/><TextLine id="l">'
        '<Coords points="40,20 140,20 140,60 40,60"/><TextEquiv><Unicode>half</Unicode></TextEquiv>'
        "</TextLine></TextRegion></Page></PcGts>"
    )
    _, (row,) = prepare(tmp_path, str(export))
    assert row["bbox"] == [20, 10, 70, 30] and row["page_size"] == [100, 60]


def test_text_only_at_region_level_becomes_region_samples(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="ocrft"):
        report, rows = prepare(tmp_path, "prima_2017", "data.target_height=32")
    # r0's only line is empty, r1 has no lines, the table's cells are TextRegions with text;
    # the GraphicRegion is no sample and no skip. Reading order: r0, r1, then the rest.
    assert [(r["id"], r["level"], r["line"], r["text"]) for r in rows] == [
        ("SimplePage/r0", "region", None, "A Simple Page"),
        ("SimplePage/r1", "region", None, "Text kept only at\nregion level, over\nthree lines."),
        ("SimplePage/r5", "region", None, "Column 1"),
        ("SimplePage/r6", "region", None, "Column 2"),
    ]
    assert report["lines_skipped"] == {"no_text": 1}  # the empty line l0
    assert report["skipped_examples"]["no_text"] == ["SimplePage.xml:14 (l0)"]
    r0, r1 = rows[0], rows[1]
    assert r0["image"] == "regions/SimplePage/r0.png" and r0["bbox"] == [20, 20, 220, 50]
    # a region keeps its shape (box + 4 px padding), whatever data.target_height says
    assert image(tmp_path, r0).size == (208, 38) and image(tmp_path, r1).size == (188, 128)
    assert image(tmp_path, r1).getpixel((94, 64))[0] == 60  # r1's own fill
    # a one-page export: one warning that names the fix
    assert "the val and test splits are empty: the export has one page" in caplog.text
    assert caplog.text.count("data.split_by_line=true") == 1


def test_an_outer_region_repeating_its_inner_text_is_not_read_twice(tmp_path):
    ns = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"
    box = '<Coords points="1,1 9,1 9,9 1,9"/>'
    (tmp_path / "p.xml").write_text(
        f'<PcGts xmlns="{ns}"><Page imageFilename="p.png" imageWidth="10" imageHeight="10">'
        f'<TextRegion id="outer">{box}'
        f'<TextRegion id="inner">{box}<TextEquiv><Unicode>inner text</Unicode></TextEquiv></TextRegion>'
        "<TextEquiv><Unicode>inner text</Unicode></TextEquiv></TextRegion>"
        f'<TextRegion id="alone">{box}<TextLine id="l">{box}</TextLine>'
        "<TextEquiv><Unicode>only here</Unicode></TextEquiv></TextRegion></Page></PcGts>"
    )
    page = read_page_xml(tmp_path / "p.xml")
    assert [(r.id, r.text) for r in page.regions] == [("outer", ""), ("inner", "inner text"), ("alone", "only here")]
    samples, skips = SAMPLERS["line"](page)
    assert [(s.level, s.id, s.text) for s in samples] == [("region", "inner", "inner text"), ("region", "alone", "only here")]
    assert skips == [("no_text", 1, "l")]


def test_level_region_joins_lines_in_reading_order_within_max_pixels(tmp_path):
    report, rows = prepare(tmp_path, "transkribus", "data.level=region", "data.max_pixels=8000", "data.target_height=32")
    assert [(r["id"], r["text"]) for r in rows if r["page"] == "Doc_A/0001_p1"] == [
        ("Doc_A/0001_p1/r2", "прим. 1"),  # ReadingOrder: the margin note first
        ("Doc_A/0001_p1/r1", "Перший рядок тексту\nдругий рядок"),  # r1l1 before r1l2 (custom index)
    ]
    # page 2: every line with text, whatever its geometry; the empty ones add nothing
    assert {r["id"]: r["text"] for r in rows}["Doc_A/0002_p2/r1"] == DOC_A_PAGE_2
    assert report["level"] == "region" and report["settings"]["max_pixels"] == 8000
    assert report["lines_written"]["total"] == 3 and report["lines_skipped"] == {}
    by_id = {r["id"]: r for r in rows}
    r1, r2 = by_id["Doc_A/0001_p1/r1"], by_id["Doc_A/0001_p1/r2"]
    assert (r1["line"], r1["level"], r1["bbox"], r1["image"]) == (None, "region", [10, 20, 310, 120], "regions/Doc_A/0001_p1/r1.png")
    # r2: 80x40 + padding = 88x48 = 4224 px, within the budget: unchanged, not enlarged
    assert image(tmp_path, r2).size == (88, 48)
    # r1: 308x108 = 33264 px > 8000: x sqrt(8000/33264) -> 151x52, the same shape
    width, height = image(tmp_path, r1).size
    assert (width, height) == (151, 52) and width * height <= 8000
    assert width / height == pytest.approx(308 / 108, rel=0.02)


def test_level_page_is_one_sample_with_every_line(tmp_path):
    report, rows = prepare(tmp_path, "transkribus", "data.level=page", "data.max_pixels=8000")
    assert [(r["id"], r["text"]) for r in sorted(rows, key=lambda r: r["id"])] == [
        ("Doc_A/0001_p1", "прим. 1\nПерший рядок тексту\nдругий рядок"),
        ("Doc_A/0002_p2", DOC_A_PAGE_2),
    ]
    page = next(r for r in rows if r["id"] == "Doc_A/0001_p1")
    assert (page["image"], page["region"], page["line"], page["level"]) == ("pages/Doc_A/0001_p1.png", "", None, "page")
    assert page["bbox"] == [0, 0, 400, 300] and page["page_size"] == [400, 300]
    assert image(tmp_path, page).size == (103, 77)  # 400x300 x sqrt(8000/120000)
    assert report["pages_per_split"]["train"] + report["pages_per_split"]["val"] + report["pages_per_split"]["test"] == 2


def test_page_2010_at_region_and_page_level(tmp_path):
    _, rows = prepare(tmp_path, "prima_2010", "data.level=region")
    assert [(r["region"], r["text"], r["bbox"]) for r in rows] == [
        ("r1", "Of the \ufb01rst Page\nin its 2010 form", [20, 20, 280, 80]),  # Point children
        ("r2", "Second region", [20, 100, 280, 180]),
    ]
    assert image(tmp_path, rows[0]).size == (268, 68)
    _, (page,) = prepare(tmp_path, "prima_2010", "data.level=page")
    assert page["text"] == "Of the \ufb01rst Page\nin its 2010 form\nSecond region"
    assert image(tmp_path, page).size == (300, 200)  # 60000 px, within the default budget


def test_prepared_region_rows_read_back_with_their_meta(tmp_path):
    prepare(tmp_path, "transkribus", "data.level=region")
    records = [r for s in ("train", "val", "test") for r in get_reader("page_xml").read(tmp_path / "out" / f"{s}.jsonl").records]
    assert len(records) == 3 and all(Path(r.image).is_file() for r in records)
    r1 = next(r for r in records if r.id == "Doc_A/0001_p1/r1")
    assert r1.text == "Перший рядок тексту\nдругий рядок" and r1.group == "Doc_A/0001_p1"
    assert r1.meta["level"] == "region" and r1.meta["bbox"] == [10, 20, 310, 120] and r1.meta["line"] is None


@pytest.mark.parametrize("size", [(4000, 3000), (30, 9000), (1000, 1000), (2, 2)])
def test_fit_pixels_only_shrinks_and_keeps_the_shape(size):
    budget = 1_003_520
    fitted = fit_pixels(Image.new("L", size), budget)
    assert fitted.mode == "RGB" and fitted.width * fitted.height <= budget
    if size[0] * size[1] <= budget:
        assert fitted.size == size
    else:
        assert fitted.width / fitted.height == pytest.approx(size[0] / size[1], rel=0.01)
        assert fitted.width * fitted.height > budget * 0.99  # as big as the budget allows
    assert math.isclose(fit_pixels(Image.new("L", (3, 3)), 1).width, 1)
