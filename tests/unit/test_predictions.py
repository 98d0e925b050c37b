"""model=predictions: another engine's output read and aligned with ground-truth records.

The page cases build records by hand with the meta task=prepare writes for PAGE/ALTO
lines (page, line, bbox, page_image, page_size); the engine files are shaped like what
Tesseract (ALTO: String/SP, HPOS/VPOS boxes, its own line_N ids) and kraken (PAGE, the
ground truth's line ids kept) write.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocrft.data.page_predictions import match_pages
from ocrft.data.matched import MAX_NAMED
from ocrft.data.line_folder import read_line_text
from ocrft.data.predictions import match_predictions
from ocrft.data.record import DataError, Record
from tests.files import PAGE_NS, alto_file, page_file


def gt_line(page: str, line: str, text: str, bbox: list[float], image: str = "", size=(400, 300)) -> Record:
    meta = {"page": page, "region": "r1", "line": line, "bbox": bbox,
            "page_image": image or f"{page}.png", "page_size": list(size)}  # fmt: skip
    return Record(id=f"{page}/{line}", image=f"lines/{page}/{line}.png", text=text, group=page, meta=meta)


# --- JSONL --------------------------------------------------------------------------------


def records(*ids: str) -> list[Record]:
    return [Record(id=i, image=f"{i}.png", text=f"text {i}") for i in ids]


def test_jsonl_missing_and_extra_ids_are_counted_and_named(tmp_path: Path):
    path = tmp_path / "engine.jsonl"
    rows = [{"id": "a", "text": "A read"}, {"id": "c", "text": "C read"}, {"id": "zz", "text": "nobody's"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    matched = match_predictions(records("a", "b", "c"), path)
    assert matched.kind == "jsonl"
    assert matched.texts == ["A read", "", "C read"]  # b: the engine read nothing
    assert matched.unmatched() == {
        "missing_predictions": 1, "missing_ids": ["b"], "extra_predictions": 1, "extra_ids": ["zz"],
    }


def test_unmatched_names_at_most_max_named_ids_but_counts_all(tmp_path: Path):
    path = tmp_path / "engine.jsonl"
    rows = [{"id": "r0", "text": "read"}] + [{"id": f"x{i}", "text": ""} for i in range(MAX_NAMED + 5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    unmatched = match_predictions(records(*[f"r{i}" for i in range(MAX_NAMED + 4)]), path).unmatched()
    assert unmatched["missing_predictions"] == MAX_NAMED + 3 and len(unmatched["missing_ids"]) == MAX_NAMED
    assert unmatched["missing_ids"][:2] == ["r1", "r2"]
    assert unmatched["extra_predictions"] == MAX_NAMED + 5 and unmatched["extra_ids"][:2] == ["x0", "x1"]


def test_predictions_that_match_no_record_at_all_are_refused(tmp_path: Path):
    path = tmp_path / "engine.jsonl"
    path.write_text(json.dumps({"id": "line_0001", "text": "x"}) + "\n")
    with pytest.raises(DataError, match=r"engine.jsonl: no prediction matches any of the 2 records "
                                        r"\(record ids look like \['ocr:0', 'ocr:1'\]; prediction ids .*'line_0001'"):
        match_predictions(records("ocr:0", "ocr:1"), path)


@pytest.mark.parametrize(
    "content, line, message",
    [
        ('{"id": "a", "text": "x"}\n{"id": "b", "text": \n', 2, "malformed JSON"),
        ('{"id": "a", "text": "x"}\n["b", "y"]\n', 2, "expected a JSON object"),
        ('\n{"text": "x"}\n', 2, "'id' must be a non-empty string"),
        ('{"id": "a", "text": null}\n', 1, "'text' must be a string, got NoneType"),
        ('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', 2, "duplicate id 'a'"),
    ],
)
def test_malformed_jsonl_names_file_and_line(tmp_path: Path, content: str, line: int, message: str):
    path = tmp_path / "engine.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message) as err:
        match_predictions(records("a"), path)
    assert str(err.value).startswith(f"{path}:{line}: ")


def test_non_utf8_jsonl_names_the_line(tmp_path: Path):
    path = tmp_path / "engine.jsonl"
    path.write_bytes(b'{"id": "a", "text": "x"}\n{"id": "b", "text": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"engine.jsonl:2: invalid UTF-8 byte 0xe9"):
        match_predictions(records("a", "b"), path)


# --- text files beside .gt.txt ---------------------------------------------------------------


def test_text_files_in_a_parallel_tree_keep_inner_spaces(tmp_path: Path):
    preds = tmp_path / "calamari"
    (preds / "doc1").mkdir(parents=True)
    (preds / "doc1" / "0001.pred.txt").write_text("  two  spaces \n", encoding="utf-8")
    (preds / "doc1" / "0003.pred.txt").write_bytes(b"\xef\xbb\xbfcrlf\r\n")
    (preds / "doc2").mkdir()
    (preds / "doc2" / "0009.pred.txt").write_text("stray\n")
    (preds / "doc1" / "0001.gt.txt").write_text("other files are passed over\n")
    matched = match_predictions(records("doc1/0001", "doc1/0002", "doc1/0003"), preds)
    assert matched.kind == "line_folder"
    # only the final newline goes (the .gt.txt rule); a BOM and a CRLF ending too
    assert matched.texts == ["  two  spaces ", "", "crlf"]
    assert matched.missing_ids == ["doc1/0002"] and matched.extra_ids == ["doc2/0009"]


def test_custom_suffix_and_a_bad_text_file(tmp_path: Path):
    (tmp_path / "l1.txt.tess").write_text("one\nline two\n")
    (tmp_path / "l2.txt.tess").write_bytes(b"ok\n\xff\n")
    with pytest.raises(DataError, match=r"l2.txt.tess:2: invalid UTF-8 byte 0xff"):
        match_predictions(records("l1", "l2"), tmp_path, suffix=".txt.tess")
    assert read_line_text(tmp_path / "l1.txt.tess") == "one\nline two"


def test_a_folder_without_predictions_or_a_missing_path_is_a_data_error(tmp_path: Path):
    (tmp_path / "x.gt.txt").write_text("gt\n")
    with pytest.raises(DataError, match=r"no \*\.pred\.txt files .* and no PAGE/ALTO files"):
        match_predictions(records("x"), tmp_path)
    with pytest.raises(DataError, match="predictions not found"):
        match_predictions(records("x"), tmp_path / "nope")


# --- PAGE / ALTO ------------------------------------------------------------------------------


def scan_records() -> list[Record]:
    """Three ground-truth lines of page Doc/0001 (image 0001.png, 400x300), eScriptorium ids."""
    return [
        gt_line("Doc/0001", "eSc_line_a", "Hello world", [20, 30, 220, 70], image="Doc/0001.png"),
        gt_line("Doc/0001", "eSc_line_b", "An exam-", [20, 80, 300, 110], image="Doc/0001.png"),
        gt_line("Doc/0001", "eSc_line_c", "no gap", [20, 130, 170, 160], image="Doc/0001.png"),
    ]


def test_tesseract_alto_is_matched_by_position_scaled_to_the_page(tmp_path: Path):
    # Tesseract ran on a 2x upscaled scan: its boxes are in 800x600 page pixels, its own ids,
    # its lines in another order, one GT line not found and one stray line (a stain).
    alto_file(tmp_path / "tess" / "0001.xml", "/tmp/ocr/0001.png", (800, 600), [
        ("line_1", (44, 164, 300, 56), ["An", "exam-"]),
        ("line_0", (36, 56, 410, 90), ["Hel1o", "world"]),
        ("line_2", (600, 500, 100, 40), ["~"]),
        ("line_3", (40, 400, 100, 40), []),  # a line found, nothing read in it: no extra prediction
    ])  # fmt: skip
    matched = match_predictions(scan_records(), tmp_path / "tess")
    assert matched.kind == "pages"
    assert matched.texts == ["Hel1o world", "An exam-", ""]
    assert matched.missing_ids == ["Doc/0001/eSc_line_c"]
    assert matched.extra_ids == ["0001.xml#line_2"]
    assert dict(matched.matched_by) == {"position": 2}


def test_kraken_page_is_matched_by_id_even_where_boxes_moved(tmp_path: Path):
    # kraken keeps the layout's ids; its polygons are its own (shifted here), text differs
    page_file(tmp_path / "kraken" / "page" / "0001.xml", "0001.png", (400, 300), [
        ("eSc_line_c", "20,300 170,300 170,330 20,330", "no gap!"),
        ("eSc_line_a", "22,32 218,32 218,68 22,68", "Hello world"),
    ])  # fmt: skip
    matched = match_predictions(scan_records(), tmp_path / "kraken", match="id")
    assert matched.texts == ["Hello world", "", "no gap!"]
    assert dict(matched.matched_by) == {"id": 2} and matched.missing_ids == ["Doc/0001/eSc_line_b"]
    # auto trusts an id only where the boxes agree: the moved line_c goes by position, finds none
    auto = match_predictions(scan_records(), tmp_path / "kraken", match="auto")
    assert auto.texts == ["Hello world", "", ""] and dict(auto.matched_by) == {"id": 1}
    assert auto.extra_ids == ["page/0001.xml#eSc_line_c"]


def test_auto_does_not_trust_ids_that_merely_coincide(tmp_path: Path):
    # GT numbered line_0/line_1 like Tesseract does, but in the other order on the page
    gt = [gt_line("s", "line_0", "first", [0, 0, 100, 20]), gt_line("s", "line_1", "second", [0, 30, 100, 50])]
    alto_file(tmp_path / "s.xml", "s.png", (400, 300), [
        ("line_0", (0, 30, 100, 20), ["SECOND"]), ("line_1", (0, 0, 100, 20), ["FIRST"]),
    ])  # fmt: skip
    assert match_predictions(gt, tmp_path / "s.xml", match="auto").texts == ["FIRST", "SECOND"]
    assert match_predictions(gt, tmp_path / "s.xml", match="id").texts == ["SECOND", "FIRST"]
    assert match_predictions(gt, tmp_path / "s.xml", match="position").texts == ["FIRST", "SECOND"]


def test_neighbouring_lines_are_not_taken_for_each_other(tmp_path: Path):
    gt = [gt_line("s", "a", "upper", [0, 0, 100, 20])]
    # the engine found only the next line down, which overlaps by descenders (6 of 20 px)
    alto_file(tmp_path / "s.xml", "s.png", (400, 300), [("l", (0, 14, 100, 20), ["lower"])])
    matched = match_pages(gt, tmp_path / "s.xml", match="position")
    assert matched.texts == [""] and matched.missing_ids == ["s/a"] and matched.extra_ids == ["s.xml#l"]


def test_pages_are_found_by_image_name_then_parallel_path_then_stem(tmp_path: Path):
    gt = [
        gt_line("A/0001", "l", "a1", [0, 0, 100, 20], image="A/0001.png"),
        gt_line("B/0001", "l", "b1", [0, 0, 100, 20], image="B/0001.png"),
        gt_line("B/0002", "l", "b2", [0, 0, 100, 20], image="B/scan_0002.tif"),
    ]
    line = [("l", "0,0 100,0 100,20 0,20", "")]
    # 0001.png names two GT pages: the parallel path decides (Transkribus keeps XML in page/)
    page_file(tmp_path / "A" / "page" / "0001.xml", "0001.png", (400, 300), [("l", line[0][1], "from A")])
    page_file(tmp_path / "B" / "0001.xml", "0001.png", (400, 300), [("l", line[0][1], "from B")])
    # another folder layout, but the image name is unique
    page_file(tmp_path / "flat" / "x.xml", "C:\\scans\\scan_0002.tif", (400, 300), [("l", line[0][1], "b2!")])
    page_file(tmp_path / "flat" / "unknown.xml", "unknown.png", (400, 300), [("l", line[0][1], "?")])
    matched = match_predictions(gt, tmp_path)
    assert matched.texts == ["from A", "from B", "b2!"]
    assert matched.extra_ids == ["flat/unknown.xml#l"] and not matched.missing_ids



def test_pages_named_like_dinglehopper_and_ocrd_match_by_base_name(tmp_path: Path):
    """X.gt.page.xml ground truth, Tesseract's X.ocr.tesseract.alto.xml with an empty fileName
    (as in dinglehopper's own test data): only the base name up to the first dot connects them."""
    gt = [gt_line("lorem.gt.page", "l1", "Lorem ipsum", [10, 10, 200, 40], image="lorem.tif"),
          gt_line("other.gt.page", "l1", "dolor", [10, 10, 200, 40], image="other.tif")]
    alto_file(tmp_path / "lorem.ocr.tesseract.alto.xml", "", (400, 300), [("line_0", (10, 12, 190, 28), ["Lorem", "ipsvm"])])
    matched = match_predictions(gt, tmp_path)
    assert matched.texts == ["Lorem ipsvm", ""] and matched.missing_ids == ["other.gt.page/l1"]
    assert not matched.extra_ids

def test_page_predictions_need_page_ground_truth(tmp_path: Path):
    page_file(tmp_path / "p.xml", "p.png", (400, 300), [("l", "0,0 10,0 10,10 0,10", "x")])
    with pytest.raises(DataError, match="record 'x' has no page and bbox meta.*task=prepare data=page_xml"):
        match_predictions(records("x"), tmp_path)
    # matching by id needs no boxes
    no_box = Record(id="p/l", image="l.png", text="x", meta={"page": "p", "line": "l"})
    assert match_pages([no_box], tmp_path, match="id").texts == ["x"]


def test_malformed_prediction_xml_names_file_and_line(tmp_path: Path):
    path = tmp_path / "bad.xml"
    path.write_text(f'<?xml version="1.0"?>\n<PcGts xmlns="{PAGE_NS}">\n<Page>\n</PcGts>\n')
    with pytest.raises(DataError, match=r"bad.xml:4: malformed XML"):
        match_predictions(scan_records(), tmp_path)


def test_region_and_page_samples_join_the_lines_inside_them(tmp_path: Path):
    def block(page: str, rid: str, level: str, text: str, bbox: list[float]) -> Record:
        meta = {"page": page, "region": rid, "line": None, "level": level, "bbox": bbox,
                "page_image": f"{page}.png", "page_size": [400, 300]}  # fmt: skip
        return Record(id=f"{page}/{rid}" if rid else page, image="x.png", text=text, group=page, meta=meta)

    gt = [block("p", "left", "region", "a\nb", [0, 0, 190, 300]), block("p", "right", "region", "c", [200, 0, 400, 300]),
          block("q", "", "page", "x\ny", [0, 0, 400, 300])]  # fmt: skip
    alto_file(tmp_path / "p.xml", "p.png", (400, 300), [
        ("l1", (10, 10, 150, 20), ["a"]), ("l2", (210, 10, 150, 20), ["c"]), ("l3", (10, 40, 150, 20), ["b"]),
    ])  # fmt: skip
    alto_file(tmp_path / "q.xml", "q.png", (800, 600), [("m1", (10, 10, 150, 20), ["x"]), ("m2", (10, 40, 150, 20), ["y"])])
    matched = match_predictions(gt, tmp_path, match="position")
    assert matched.texts == ["a\nb", "c", "x\ny"]
    assert dict(matched.matched_by) == {"region": 2, "page": 1} and not matched.extra_ids
