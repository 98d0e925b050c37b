"""PAGE-XML import: reading order, line text, cropping, and every kind of bad input.

Expected sizes are worked out by hand from the fixture coordinates: a line box of w x h
page pixels plus ``padding`` on each side, clipped to the page, scaled to the target
height. Fixture images fill each line with its own gray, so a crop's pixels say which
polygon was cut.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from PIL import Image

from ocrft.data.crops import CropSettings, PageSkipped, crop_line, find_page_image
from ocrft.data.page_xml import read_page_xml
from ocrft.data.record import DataError
from ocrft.tasks.prepare import run_prepare
from ocrft.runner import RunContext
from ocrft.tracking import NullTracker
from tests.helpers import REPO, compose

EXPORTS = REPO / "tests" / "assets" / "exports"
DOC_A = EXPORTS / "transkribus" / "Doc_A"
NS2019 = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"


def prepare(tmp_path: Path, *overrides: str, fmt: str = "page_xml"):
    cfg = compose(["task=prepare", f"data={fmt}", "tracking=none", f"run_dir={tmp_path / 'run'}", *overrides])
    return run_prepare(cfg, RunContext(run_dir=tmp_path / "run", tracker=NullTracker()))


def rows(out: Path) -> dict[str, list[dict]]:
    return {s: [json.loads(line) for line in (out / f"{s}.jsonl").read_text().splitlines()] for s in ("train", "val", "test")}


def page(image: str, lines: list[tuple[str, str, str]], size=(100, 60), ns: str = NS2019) -> str:
    """A minimal PAGE file: one region holding (id, points, text) lines."""
    body = "".join(
        f'<TextLine id="{lid}"><Coords points="{pts}"/><TextEquiv><Unicode>{text}</Unicode></TextEquiv></TextLine>'
        for lid, pts, text in lines
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<PcGts xmlns="{ns}">'
        f'<Page imageFilename="{image}" imageWidth="{size[0]}" imageHeight="{size[1]}">'
        f'<TextRegion id="r1"><Coords points="0,0 {size[0]},0 {size[0]},{size[1]}"/>{body}</TextRegion>'
        "</Page></PcGts>\n"
    )


def write_image(path: Path, size=(100, 60), box=(20, 10, 70, 30), gray: int = 30) -> Path:
    image = Image.new("L", size, 255)
    image.paste(gray, box)
    image.save(path)
    return path


# --- reading one file --------------------------------------------------------------------


def test_transkribus_page_follows_reading_order_and_uses_line_text():
    page = read_page_xml(DOC_A / "page" / "0001_p1.xml")
    # ReadingOrder puts the marginal region r2 first; in r1, custom readingOrder puts r1l1
    # (written second) before r1l2
    assert [line.id for line in page.lines] == ["r2l1", "r1l1", "r1l2"]
    assert [line.region for line in page.lines] == ["r2", "r1", "r1"]
    # the line's own TextEquiv, not its Words' ("Перщий" is only on a Word)
    assert [line.text for line in page.lines] == ["прим. 1", "Перший рядок тексту", "другий рядок"]
    assert page.image_ref == "0001_p1.png" and page.size == (400, 300)
    assert page.lines[1].points == [(20, 30), (220, 30), (220, 70), (20, 70)]


def test_lowest_textequiv_index_wins_and_partial_line_indices_are_ignored():
    page = read_page_xml(DOC_A / "page" / "0002_p2.xml")
    # only lg has a custom index, so the region keeps document order
    assert [line.id for line in page.lines] == ["la", "lb", "lc", "ld", "le", "lf", "lg", "lh"]
    texts = {line.id: line.text for line in page.lines}
    assert texts["la"] == "Третій рядок"  # index="1", written after index="2"
    assert texts["lb"] == ""  # only its Word has text
    assert texts["lc"] == ""
    assert {line.id: line.points for line in page.lines}["lh"] is None  # "a,b c,d e,f"


def test_region_order_from_custom_attributes_nested_groups_and_table_cells(tmp_path):
    line = '<TextLine id="{0}"><Coords points="1,1 9,1 9,9"/><TextEquiv><Unicode>{0}</Unicode></TextEquiv></TextLine>'
    # no ReadingOrder: the regions' custom index decides (b before a); c has none, so last
    xml = (
        f'<PcGts xmlns="{NS2019}"><Page imageFilename="p.png" imageWidth="10" imageHeight="10">'
        f'<TextRegion id="c">{line.format("c1")}</TextRegion>'
        f'<TextRegion id="a" custom="readingOrder {{index:1;}}">{line.format("a1")}</TextRegion>'
        f'<TextRegion id="b" custom="readingOrder {{index:0;}}">{line.format("b1")}</TextRegion>'
        "</Page></PcGts>"
    )
    (tmp_path / "custom.xml").write_text(xml)
    assert [x.id for x in read_page_xml(tmp_path / "custom.xml").lines] == ["b1", "a1", "c1"]

    # nested groups: t (a table whose cells hold lines), then the unordered group {b}, then a
    xml = (
        f'<PcGts xmlns="{NS2019}"><Page imageFilename="p.png" imageWidth="10" imageHeight="10">'
        '<ReadingOrder><OrderedGroup id="g0">'
        '<RegionRefIndexed index="2" regionRef="a"/>'
        '<UnorderedGroupIndexed id="g1" index="1"><RegionRef regionRef="b"/></UnorderedGroupIndexed>'
        '<RegionRefIndexed index="0" regionRef="t"/>'
        "</OrderedGroup></ReadingOrder>"
        f'<TextRegion id="a">{line.format("a1")}</TextRegion>'
        f'<TextRegion id="b">{line.format("b1")}{line.format("b2")}</TextRegion>'
        f'<TableRegion id="t"><TableCell id="t_0_0" row="0" col="0">{line.format("t1")}</TableCell>'
        f'<TableCell id="t_0_1" row="0" col="1">{line.format("t2")}</TableCell></TableRegion>'
        "</Page></PcGts>"
    )
    (tmp_path / "nested.xml").write_text(xml)
    lines = read_page_xml(tmp_path / "nested.xml").lines
    assert [x.id for x in lines] == ["t1", "t2", "b1", "b2", "a1"]
    assert [x.region for x in lines][:2] == ["t_0_0", "t_0_1"]


def test_other_xml_is_not_a_page(tmp_path):
    assert read_page_xml(DOC_A / "mets.xml") is None


# --- cropping ------------------------------------------------------------------------------


def test_mask_whites_out_pixels_outside_the_polygon():
    page = Image.new("L", (60, 40), 0)  # all ink
    triangle = [(10, 10), (50, 10), (10, 30)]  # box 40 x 20
    plain = crop_line(page, triangle, CropSettings(target_height=20, padding=0, mask=False))
    masked = crop_line(page, triangle, CropSettings(target_height=20, padding=0, mask=True))
    assert plain.size == masked.size == (40, 20)  # 20 high already: no resampling
    assert plain.getpixel((38, 18)) == (0, 0, 0)
    assert masked.getpixel((38, 18)) == (255, 255, 255)  # page (48, 28): outside the triangle
    assert masked.getpixel((2, 2)) == (0, 0, 0)  # page (12, 12): inside


def test_crop_sizes_padding_clipping_and_fixed_aspect():
    page = Image.new("L", (100, 60), 255)
    box = [(20, 10), (70, 10), (70, 30), (20, 30)]  # 50 x 20
    # padding 5 -> 60 x 30, scaled to height 15 -> 30 x 15
    assert crop_line(page, box, CropSettings(target_height=15, padding=5)).size == (30, 15)
    # partly off the page: x 80..120 clipped at 100, padding 2 -> 78..100 x 8..32 = 22 x 24
    off = [(80, 10), (120, 10), (120, 30), (80, 30)]
    assert crop_line(page, off, CropSettings(target_height=24, padding=2)).size == (22, 24)
    stretched = crop_line(page, box, CropSettings(target_height=16, preserve_aspect_ratio=False))
    assert stretched.size == (64, 16)


@pytest.mark.parametrize(
    "points, reason",
    [
        ([(5, 5), (100, 5)], "degenerate_polygon"),  # two points
        ([(5, 5), (5, 5), (9, 9), (9, 9)], "degenerate_polygon"),  # two distinct points
        ([(10, 20), (50, 20), (90, 20)], "degenerate_polygon"),  # zero height
        ([(200, 10), (300, 10), (300, 40)], "outside_image"),
        ([(-50, -40), (-10, -40), (-10, -5)], "outside_image"),
    ],
)
def test_unusable_polygons_are_skipped_with_a_reason(points, reason):
    with pytest.raises(PageSkipped) as err:
        crop_line(Image.new("L", (100, 60), 255), points, CropSettings())
    assert err.value.reason == reason


# --- importing exports ---------------------------------------------------------------------


def test_transkribus_export_becomes_line_images(tmp_path):
    out = tmp_path / "out"
    result = prepare(tmp_path, f"data.input_dir={EXPORTS / 'transkribus'}", f"data.output_dir={out}", "data.target_height=32")
    assert result.metrics["prepare/pages"] == 2  # mets.xml and metadata.xml are passed over
    assert result.metrics["prepare/lines_written"] == 5
    assert result.paths == {"output_dir": str(out), "prepare_report": str(out / "prepare_report.json")}
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["lines_skipped"] == {"no_text": 2, "degenerate_polygon": 2, "outside_image": 1, "invalid_coords": 1}
    assert report["settings"]["target_height"] == 32
    written = {r["id"]: r for split in rows(out).values() for r in split}
    # (text, region, crop width at height 32, the line's fill gray)
    expected = {
        "Doc_A/0001_p1/r2l1": ("прим. 1", "r2", 66, 80),  # 70x30 box + 4 pad = 78x38
        "Doc_A/0001_p1/r1l1": ("Перший рядок тексту", "r1", 139, 40),  # 208x48
        "Doc_A/0001_p1/r1l2": ("другий рядок", "r1", 243, 60),  # 288x38
        "Doc_A/0002_p2/la": ("Третій рядок", "r1", 139, 50),  # 208x48
        "Doc_A/0002_p2/lg": ("Край сторінки", "r1", 30, 90),  # x 346..400 (clipped), y 136..194: 54x58
    }
    assert set(written) == set(expected)
    for line_id, (text, region, width, gray) in expected.items():
        row = written[line_id]
        assert (row["text"], row["region"], row["page"]) == (text, region, line_id.rsplit("/", 1)[0])
        image = Image.open(out / row["image"])
        assert image.size == (width, 32)
        assert image.getpixel((width // 2, 16))[0] == pytest.approx(gray, abs=2)
    # lines of one page stay in file order within the split they landed in
    page1 = [r["id"] for split in rows(out).values() for r in split if r["page"] == "Doc_A/0001_p1"]
    assert page1 == ["Doc_A/0001_p1/r2l1", "Doc_A/0001_p1/r1l1", "Doc_A/0001_p1/r1l2"]


def test_escriptorium_page_2019_default_height(tmp_path):
    out = tmp_path / "out"
    prepare(tmp_path, f"data.input_dir={EXPORTS / 'escriptorium_page'}", f"data.output_dir={out}")
    written = [r for split in rows(out).values() for r in split]
    assert sorted((r["id"], r["text"]) for r in written) == [
        ("folio_1/eSc_line_a1", "Lorem ipsum"),
        ("folio_1/eSc_line_a2", "dolor sit"),
    ]
    sizes = {r["id"]: Image.open(out / r["image"]).size for r in written}
    # default height 128, padding 4: 248x48 -> 661 wide; 178x48 -> 475 wide
    assert sizes == {"folio_1/eSc_line_a1": (661, 128), "folio_1/eSc_line_a2": (475, 128)}


def test_declared_page_size_scales_coordinates_to_a_smaller_image(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    write_image(export / "p.png", size=(100, 60), box=(20, 10, 70, 30), gray=30)
    # the XML describes the original 200x120 scan; the image was halved after export
    (export / "p.xml").write_text(page("p.png", [("l1", "40,20 140,20 140,60 40,60", "half")], size=(200, 120)))
    out = tmp_path / "out"
    prepare(tmp_path, f"data.input_dir={export}", f"data.output_dir={out}", "data.target_height=28")
    (row,) = [r for split in rows(out).values() for r in split]
    image = Image.open(out / row["image"])
    assert image.size == (58, 28)  # (20..70 x 10..30) + 4 pad = 58 x 28, not resampled
    assert image.getpixel((4, 4))[0] == 30 and image.getpixel((2, 2))[0] == 255


def test_malformed_xml_names_file_and_line(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    write_image(export / "good.png")
    (export / "good.xml").write_text(page("good.png", [("l1", "20,10 70,10 70,30 20,30", "good")]))
    (export / "broken.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<PcGts xmlns="{NS2019}">\n'
        '  <Page imageFilename="good.png" imageWidth="100" imageHeight="60">\n'
        '    <TextRegion id="r1">\n'
        '      <TextLine id="l1">\n'
        "    </TextRegion>\n"  # line 6: closes the wrong element
    )
    with pytest.raises(DataError, match=r"broken\.xml:6: malformed XML: mismatched tag"):
        prepare(tmp_path, f"data.input_dir={export}", f"data.output_dir={tmp_path / 'out'}")
    assert not (tmp_path / "out").exists()
    result = prepare(tmp_path, f"data.input_dir={export}", f"data.output_dir={tmp_path / 'out'}", "data.on_error=skip")
    assert result.metrics["prepare/pages"] == 1 and result.metrics["prepare/pages_skipped"] == 1
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert report["pages_skipped"] == {"xml_error": 1}


def test_doctype_with_entities_is_refused(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    (export / "lolz.xml").write_text(
        '<?xml version="1.0"?>\n'
        '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>\n'
        f'<PcGts xmlns="{NS2019}"><Page imageFilename="x.png" imageWidth="1" imageHeight="1">&lol2;</Page></PcGts>\n'
    )
    with pytest.raises(DataError, match=r"lolz\.xml:2: a DOCTYPE is not allowed"):
        read_page_xml(export / "lolz.xml")


def test_image_paths_leaving_the_export_are_refused(tmp_path, caplog):
    export = tmp_path / "export"
    export.mkdir()
    outside = write_image(tmp_path / "outside.png")
    write_image(export / "good.png")
    line = [("l1", "20,10 70,10 70,30 20,30", "text")]
    (export / "good.xml").write_text(page("good.png", line))
    (export / "dotdot.xml").write_text(page("../../etc/x.png", line))
    (export / "absolute.xml").write_text(page(str(outside), line))
    (export / "link.png").symlink_to(outside)
    (export / "link.xml").write_text(page("link.png", line))
    with caplog.at_level(logging.WARNING, logger="ocrft"):
        result = prepare(tmp_path, f"data.input_dir={export}", f"data.output_dir={tmp_path / 'out'}")
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert report["pages_skipped"] == {"image_outside_export": 3}
    assert report["lines_skipped"] == {"image_outside_export": 3}
    assert result.metrics["prepare/lines_written"] == 1
    warned = [r.getMessage() for r in caplog.records if "outside the export" in r.getMessage()]
    assert len(warned) == 3 and any("dotdot.xml" in m for m in warned)


def test_where_page_images_are_looked_for(tmp_path):
    root = tmp_path / "export"
    (root / "Doc" / "page").mkdir(parents=True)
    xml = root / "Doc" / "page" / "0001_a.xml"
    image = write_image(root / "Doc" / "0001_a.jpg")  # Transkribus: one folder above page/
    assert find_page_image(xml, "0001_a.jpg", root) == image
    assert find_page_image(xml, "C:\\Users\\me\\scans\\0001_a.jpg", root) == image  # only the name helps
    assert find_page_image(xml, None, root) == image  # same stem
    for ref, reason in [("../../../x.png", "image_outside_export"), ("other.png", "missing_image")]:
        with pytest.raises(PageSkipped) as err:
            find_page_image(xml, ref, root)
        assert err.value.reason == reason


def test_missing_and_oversized_images_are_skipped(tmp_path, monkeypatch):
    export = tmp_path / "export"
    export.mkdir()
    lines = [("l1", "20,10 70,10 70,30 20,30", "a"), ("l2", "20,35 70,35 70,55 20,55", "b")]
    write_image(export / "good.png")
    (export / "good.xml").write_text(page("good.png", lines))
    (export / "gone.xml").write_text(page("gone.png", lines))
    write_image(export / "huge.png", size=(300, 200))
    (export / "huge.xml").write_text(page("huge.png", lines, size=(300, 200)))
    # PIL refuses images over twice its limit: 300x200 = 60000 > 2 * 10000 >= 100x60
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10000)
    # a bomb is a broken export: an error naming the page and its image, unless skipping
    with pytest.raises(DataError, match=r"huge\.xml: page image: huge\.png: .*decompression bomb"):
        prepare(tmp_path, f"data.input_dir={export}", f"data.output_dir={tmp_path / 'out'}")
    result = prepare(tmp_path, f"data.input_dir={export}", f"data.output_dir={tmp_path / 'out'}", "data.on_error=skip")
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert report["pages_skipped"] == {"image_too_large": 1, "missing_image": 1}
    assert report["lines_skipped"] == {"image_too_large": 2, "missing_image": 2}
    assert result.metrics["prepare/pages"] == 1 and result.metrics["prepare/lines_written"] == 2


def test_the_same_scan_under_two_names_is_imported_once(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    write_image(export / "p1.png")
    shutil.copy(export / "p1.png", export / "p2.png")
    (export / "p1.xml").write_text(page("p1.png", [("l1", "20,10 70,10 70,30 20,30", "first")]))
    (export / "p2.xml").write_text(page("p2.png", [("l1", "20,10 70,10 70,30 20,30", "second"), ("l2", "1,1 9,1 9,9", "x")]))
    result = prepare(tmp_path, f"data.input_dir={export}", f"data.output_dir={tmp_path / 'out'}")
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert result.metrics["prepare/lines_written"] == 1 and result.metrics["prepare/duplicates_removed"] == 2
    assert report["pages_skipped"] == {"duplicate_page": 1}
    assert report["duplicates"] == [{"page": "p2", "same_as": "p1", "removed": 2}]


def test_a_page_namespace_without_a_version_is_counted_unsupported(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    write_image(export / "new.png")
    write_image(export / "draft.png", gray=31)
    (export / "new.xml").write_text(page("new.png", [("l1", "20,10 70,10 70,30 20,30", "ok")]))
    draft_ns = "http://schema.primaresearch.org/PAGE/gts/pagecontent/draft"
    (export / "draft.xml").write_text(page("draft.png", [("l1", "20,10 70,10 70,30 20,30", "draft")], ns=draft_ns))
    prepare(tmp_path, f"data.input_dir={export}", f"data.output_dir={tmp_path / 'out'}")
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert report["pages"] == 1 and report["pages_skipped"] == {"unsupported_schema": 1}
    assert report["lines_skipped"] == {}  # its lines were never read


# --- every PAGE version -------------------------------------------------------------------


def test_page_2010_with_point_children_reads_unicode_in_reading_order():
    page = read_page_xml(EXPORTS / "prima_2010" / "pc-00000123.xml")
    # r2 is written first; ReadingOrder puts r1 first. Unicode, not PlainText ("fi"), is the text.
    assert [(x.id, x.region, x.text) for x in page.lines] == [
        ("r1l1", "r1", "Of the \ufb01rst Page"),
        ("r1l2", "r1", "in its 2010 form"),
        ("r2l1", "r2", "Second region"),
    ]
    assert page.lines[0].points == [(30, 25), (270, 25), (270, 45), (30, 45)]  # from <Point x= y=>
    # the GraphicRegion holds no text: not a region sample
    assert [(r.id, r.points[0]) for r in page.regions] == [("r1", (20, 20)), ("r2", (20, 100))]
    # the regions' own TextEquivs repeat their lines: the lines' text is what counts
    assert [r.text for r in page.regions] == ["", ""]


@pytest.mark.parametrize("version", ["2009-03-16", "2010-01-12", "2016-07-15", "2017-07-15", "2018-07-15", "2024-07-15"])
@pytest.mark.parametrize("scheme", ["http", "https"])  # kraken writes https://schema.primaresearch.org/...
def test_every_dated_page_namespace_is_read(tmp_path, version, scheme):
    ns = f"{scheme}://schema.primaresearch.org/PAGE/gts/pagecontent/{version}"
    (tmp_path / "p.xml").write_text(page("p.png", [("l1", "20,10 70,10 70,30 20,30", "text")], ns=ns))
    read = read_page_xml(tmp_path / "p.xml")
    assert read.skip_reason is None and [(x.id, x.text, len(x.points)) for x in read.lines] == [("l1", "text", 4)]


def test_pc_prefix_and_ocrd_workspace_layout(tmp_path):
    xml = EXPORTS / "ocrd_2018" / "OCR-D-GT-SEG-LINE" / "OCR-D-GT-SEG-LINE_0001.xml"
    page = read_page_xml(xml)  # <pc:PcGts xmlns:pc=".../2018-07-15">
    assert [x.text for x in page.lines] == ["Jn \u017feiner Stube \u017fa\u00df", "der Gelehrte."]  # \u017f = long s, kept
    assert page.image_ref == "OCR-D-IMG/OCR-D-IMG_0001.png"  # relative to the workspace, not the XML
    out = tmp_path / "out"
    prepare(tmp_path, f"data.input_dir={EXPORTS / 'ocrd_2018'}", f"data.output_dir={out}", "data.target_height=38")
    written = sorted((r["id"], r["text"], r["page_image"]) for split in rows(out).values() for r in split)
    assert written == [  # mets.xml beside the pages is passed over
        ("OCR-D-GT-SEG-LINE/OCR-D-GT-SEG-LINE_0001/line0001", "Jn \u017feiner Stube \u017fa\u00df", "OCR-D-IMG/OCR-D-IMG_0001.png"),
        ("OCR-D-GT-SEG-LINE/OCR-D-GT-SEG-LINE_0001/line0002", "der Gelehrte.", "OCR-D-IMG/OCR-D-IMG_0001.png"),
    ]


def test_a_default_namespace_and_a_prefix_read_the_same(tmp_path):
    plain = page("p.png", [("l1", "20,10 70,10 70,30 20,30", "same")])
    prefixed = plain.replace("<PcGts xmlns=", "<pc:PcGts xmlns:pc=").replace("</PcGts>", "</pc:PcGts>")
    for tag in ("Page", "TextRegion", "TextLine", "Coords", "TextEquiv", "Unicode"):
        prefixed = prefixed.replace(f"<{tag}", f"<pc:{tag}").replace(f"</{tag}>", f"</pc:{tag}>")
    assert "<pc:Unicode>same</pc:Unicode>" in prefixed
    (tmp_path / "plain.xml").write_text(plain)
    (tmp_path / "prefixed.xml").write_text(prefixed)
    assert read_page_xml(tmp_path / "plain.xml") == read_page_xml(tmp_path / "prefixed.xml")


def test_broken_point_coordinates_are_invalid_coords(tmp_path):
    ns = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2010-03-19"
    line = '<TextLine id="{}"><Coords>{}</Coords><TextEquiv><Unicode>t</Unicode></TextEquiv></TextLine>'
    good = '<Point x="1" y="1"/><Point x="9" y="1"/><Point x="9" y="5"/>'
    body = line.format("ok", good) + line.format("no_y", '<Point x="1"/>' + good) + line.format("nan", good.replace('"9"', '"nan"', 1))
    (tmp_path / "p.xml").write_text(
        f'<PcGts xmlns="{ns}"><Page imageFilename="p.png" imageWidth="10" imageHeight="10">'
        f'<TextRegion id="r1"><Coords/>{body}</TextRegion></Page></PcGts>'
    )
    read = read_page_xml(tmp_path / "p.xml")
    assert {x.id: x.points for x in read.lines} == {"ok": [(1, 1), (9, 1), (9, 5)], "no_y": None, "nan": None}
    assert read.regions[0].points == []  # <Coords/> with no Point: no polygon (degenerate when cropped)


@pytest.mark.parametrize(
    "xml, message",
    [
        # a PAGE-namespace file whose root is the Page itself (a fragment cut out of a PcGts)
        (f'<Page xmlns="{NS2019}" imageFilename="p.png" imageWidth="100" imageHeight="60"/>', "root element is <Page>, not <PcGts>"),
        # a PcGts outside the PAGE namespace that still points at PAGE's schema
        ('<PcGts xmlns="http://example.com/page" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
         f'xsi:schemaLocation="http://example.com/page {NS2019}/pagecontent.xsd"><Page/></PcGts>',
         "<PcGts> is in namespace 'http://example.com/page', not PAGE's"),
    ],
)  # fmt: skip
def test_a_page_marked_file_that_is_not_page_is_an_error_naming_it(tmp_path, xml, message):
    export = tmp_path / "export"
    export.mkdir()
    write_image(export / "good.png")
    (export / "good.xml").write_text(page("good.png", [("l1", "20,10 70,10 70,30 20,30", "good")]))
    (export / "odd.xml").write_text('<?xml version="1.0" encoding="UTF-8"?>\n' + xml)
    with pytest.raises(DataError, match=rf"odd\.xml:2: .*{message}.*data\.on_error=skip"):
        prepare(tmp_path, f"data.input_dir={export}", f"data.output_dir={tmp_path / 'out'}")
    result = prepare(tmp_path, f"data.input_dir={export}", f"data.output_dir={tmp_path / 'out'}", "data.on_error=skip")
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert report["pages_skipped"] == {"xml_error": 1} and result.metrics["prepare/lines_written"] == 1
