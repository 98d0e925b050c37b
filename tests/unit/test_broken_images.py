"""Broken and unusual images inside otherwise good data sets (issue 18): every reader and the
page importer refuse a broken image clearly (or count it with data.on_error=skip), and accept
the unusual-but-valid ones upright, in RGB, without their ICC profile.

Fixtures are made here with PIL: a truncated file is the first part of a real encoded one. The
reference line image is white with black ink at its left end, so a sideways, mirrored or
black-background result is visible in two pixels.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from ocrft.data import alto, page_xml
from ocrft.data.crops import CropSettings
from ocrft.data.hf_dataset import read_hf_splits
from ocrft.data.images import ImageError, decode_image_bytes, open_image
from ocrft.data.line_folder import read_line_folder_splits
from ocrft.data.lines import import_pages
from ocrft.data.reading import WHOLE
from ocrft.data.readers import read_json_ocr, read_jsonl_vision, read_messages
from ocrft.data.record import DataError
from ocrft.evaluation.html import thumbnail_uri
from tests.files import png_claiming

INK = (4, 4, 16, 16)  # the reference's black box, at the left end of a 60 x 20 line


def reference() -> Image.Image:
    im = Image.new("RGB", (60, 20), "white")
    im.paste((0, 0, 0), INK)
    return im


def encode(im: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


def with_orientation(orientation: int) -> bytes:
    """A JPEG stored turned, whose EXIF orientation turns it back into the reference."""
    stored = reference().transpose({6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())


def sixteen_bit() -> bytes:
    grey = np.asarray(reference().convert("L")).astype(np.uint16) * 257  # full 16-bit range
    return encode(Image.fromarray(grey), "TIFF")


def palette_with_transparency() -> bytes:
    # background index 0 is transparent *black*: dropping transparency would give a black line
    im = Image.new("P", (60, 20), 0)
    im.putpalette([0, 0, 0, 0, 0, 0])
    im.paste(1, INK)
    return encode(im, "PNG", transparency=0)


def big_icc_profile() -> bytes:
    """A valid sRGB profile padded to 1 MB, as some scanners embed."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes() + b"\0" * 1_000_000


UNUSUAL = {
    "cmyk.jpg": lambda: encode(reference().convert("CMYK"), "JPEG", quality=95),
    "cmyk.tif": lambda: encode(reference().convert("CMYK"), "TIFF"),
    "grey16.tif": sixteen_bit,
    "palette_alpha.png": palette_with_transparency,
    "exif6.jpg": lambda: with_orientation(6),
    "exif8.jpg": lambda: with_orientation(8),
    "icc.tif": lambda: encode(reference(), "TIFF", icc_profile=big_icc_profile()),
}


def noisy(fmt: str) -> bytes:
    """An image whose pixel data is most of the file, so cutting it cuts pixels."""
    rng = np.random.default_rng(0)
    return encode(Image.fromarray(rng.integers(0, 255, (80, 200), dtype=np.uint8)), fmt)


BROKEN = {  # name -> (bytes, what the error says, ImageError.kind)
    "cut.png": (lambda: noisy("PNG")[:3000], "truncated", "truncated"),
    "cut.jpg": (lambda: noisy("JPEG")[:4000], "truncated", "truncated"),
    "cut.tif": (lambda: noisy("TIFF")[:9000], "truncated", "truncated"),
    "empty.png": (lambda: b"", "empty (0 bytes)", "empty"),
    "bomb.png": (lambda: png_claiming(50_000, 50_000), "possible decompression bomb", "too_large"),
    "text.png": (lambda: b"not an image at all", "not an image PIL can read", "not_an_image"),
}


def assert_reference(im: Image.Image) -> None:
    """Upright, RGB, white background, the ink at the left, no ICC profile left."""
    assert im.mode == "RGB" and im.size == (60, 20)
    assert max(im.getpixel((10, 10))) < 60, "the ink is not at the left: turned, mirrored or lost"
    assert min(im.getpixel((50, 10))) > 200, "the background is not white"
    assert im.info.get("icc_profile") is None


# --- the decoder ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_each_broken_image_is_an_image_error_naming_it(name):
    data, message, kind = BROKEN[name][0](), BROKEN[name][1], BROKEN[name][2]
    with pytest.raises(ImageError) as exc:
        decode_image_bytes(data, 40_000_000, f"scans/{name}")
    assert isinstance(exc.value, DataError)
    assert str(exc.value).startswith(f"scans/{name}: ") and message in str(exc.value)
    assert exc.value.kind == kind


def test_bomb_message_gives_the_declared_size_and_the_limit():
    with pytest.raises(ImageError, match=r"declared 5000x4000 = 20000000 pixels, over the limit of 1000000 "
                                         r"\(possible decompression bomb\)"):
        decode_image_bytes(png_claiming(5000, 4000), 1_000_000, "x.png")


@pytest.mark.parametrize("name", sorted(UNUSUAL))
def test_each_unusual_image_decodes_upright_rgb_without_profile(name):
    assert_reference(decode_image_bytes(UNUSUAL[name](), 40_000_000, name))


def test_16_bit_grey_is_scaled_by_the_depth_its_values_use():
    full = Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.uint16))
    twelve = Image.fromarray(np.array([[0, 2048, 4095]], dtype=np.uint16))  # a 12-bit camera in 16-bit words
    for im in (full, twelve):
        out = decode_image_bytes(encode(im, "TIFF"), 100, "g.tif")
        assert [out.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


# --- every reader -----------------------------------------------------------------------------


def _good_and_bad(tmp_path: Path, bad: bytes, bad_name: str) -> None:
    tmp_path.joinpath("good.png").write_bytes(encode(reference(), "PNG"))
    tmp_path.joinpath(bad_name).write_bytes(bad)


def _json_ocr(tmp_path, bad, bad_name):
    _good_and_bad(tmp_path, bad, bad_name)
    rows = [{"img_path": "good.png", "ocr_results": "a"}, {"img_path": bad_name, "ocr_results": "b"}]
    (tmp_path / "d.json").write_text("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n")
    return lambda on_error: read_json_ocr(tmp_path / "d.json", on_error), f"d.json:3: record [1]: {tmp_path / bad_name}"


def _jsonl_vision(tmp_path, bad, bad_name):
    _good_and_bad(tmp_path, bad, bad_name)
    rows = [{"image": "good.png", "response": "a"}, {"image": bad_name, "response": "b"}]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return lambda on_error: read_jsonl_vision(tmp_path / "d.jsonl", on_error), f"d.jsonl:2: {tmp_path / bad_name}"


def _messages(tmp_path, bad, bad_name):
    _good_and_bad(tmp_path, bad, bad_name)
    url = "data:image/png;base64," + base64.b64encode(bad).decode()

    def row(image: str, text: str) -> str:
        user = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": image}}]}
        return json.dumps({"messages": [user, {"role": "assistant", "content": text}]}) + "\n"

    (tmp_path / "m.jsonl").write_text(row("good.png", "a") + row(url, "b"))
    return lambda on_error: read_messages(tmp_path / "m.jsonl", on_error, tmp_path / "cache"), "m.jsonl:2: "


def _line_folder(tmp_path, bad, bad_name):
    folder = tmp_path / "lines"
    folder.mkdir()
    _good_and_bad(folder, bad, bad_name)
    (folder / "good.gt.txt").write_text("a\n")
    (folder / f"{bad_name.split('.')[0]}.gt.txt").write_text("b\n")
    return lambda on_error: read_line_folder_splits(folder, on_error)[WHOLE], str(folder / bad_name)


def _hf_dataset(tmp_path, bad, bad_name):
    import pyarrow as pa
    import pyarrow.parquet as pq

    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    cells = [{"bytes": encode(reference(), "PNG"), "path": "good.png"}, {"bytes": bad, "path": bad_name}]
    pq.write_table(pa.table({"image": pa.array(cells, image_type), "text": ["a", "b"]}), tmp_path / "d.parquet")
    read = lambda on_error: read_hf_splits(tmp_path / "d.parquet", on_error, tmp_path / "cache")[WHOLE]  # noqa: E731
    return read, f"row 1: embedded image '{bad_name}'"


READERS = {"json_ocr": _json_ocr, "jsonl_vision": _jsonl_vision, "messages": _messages,
           "line_folder": _line_folder, "hf_dataset": _hf_dataset}


@pytest.mark.parametrize("bad_name", ["cut.jpg", "empty.png"])
@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_reader_names_a_broken_image_or_counts_it_skipped(tmp_path, reader, bad_name):
    data, message, _ = BROKEN[bad_name]
    read, where = READERS[reader](tmp_path, data(), bad_name)
    with pytest.raises(DataError) as exc:
        read("raise")
    assert where in str(exc.value) and message in str(exc.value)
    result = read("skip")
    assert [r.text for r in result.records] == ["a"]
    assert dict(result.skipped) == {"unreadable_image": 1}
    assert message in result.errors[0]
    assert_reference(open_image(result.records[0].image))


def test_line_folder_accepts_every_unusual_image_upright(tmp_path):
    for name, make in UNUSUAL.items():
        stem, ext = name.rsplit(".", 1)  # cmyk.jpg and cmyk.tif: two lines, two stems
        (tmp_path / f"{stem}_{ext}.{ext}").write_bytes(make())
        (tmp_path / f"{stem}_{ext}.gt.txt").write_text(name + "\n")
    records = read_line_folder_splits(tmp_path)[WHOLE].records
    assert sorted(r.text for r in records) == sorted(UNUSUAL)
    for r in records:
        assert_reference(open_image(r.image))


def test_hf_dataset_accepts_every_unusual_embedded_image_upright(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    cells = [{"bytes": make(), "path": name} for name, make in UNUSUAL.items()]
    pq.write_table(pa.table({"image": pa.array(cells, image_type), "text": list(UNUSUAL)}), tmp_path / "d.parquet")
    result = read_hf_splits(tmp_path / "d.parquet", "raise", tmp_path / "cache")[WHOLE]
    assert sorted(r.text for r in result.records) == sorted(UNUSUAL) and not result.skipped
    for r in result.records:
        assert_reference(open_image(r.image))


# --- page exports: the crop path ----------------------------------------------------------------

NS2019 = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"
# The upright page: 200 x 100, one line band (20..180, 40..60) with black ink at its left end.
LINE_BOX = (20, 40, 180, 60)


def upright_page() -> Image.Image:
    im = Image.new("RGB", (200, 100), "white")
    im.paste((210, 210, 210), LINE_BOX)
    im.paste((0, 0, 0), (24, 42, 40, 58))
    return im


def page_xml_file(image: str, size: tuple[int, int], points: str) -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<PcGts xmlns="{NS2019}"><Page imageFilename="{image}" '
            f'imageWidth="{size[0]}" imageHeight="{size[1]}"><TextRegion id="r1"><TextLine id="l1">'
            f'<Coords points="{points}"/><TextEquiv><Unicode>ink</Unicode></TextEquiv></TextLine></TextRegion>'
            "</Page></PcGts>\n")


def alto_file(image: str) -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<alto xmlns="http://www.loc.gov/standards/alto/ns-v4#">'
            f"<Description><MeasurementUnit>pixel</MeasurementUnit><sourceImageInformation><fileName>{image}"
            '</fileName></sourceImageInformation></Description><Layout><Page WIDTH="200" HEIGHT="100"><PrintSpace>'
            '<TextBlock ID="b1" HPOS="0" VPOS="0" WIDTH="200" HEIGHT="100"><TextLine ID="l1" HPOS="20" VPOS="40" '
            'WIDTH="160" HEIGHT="20"><String CONTENT="ink"/></TextLine></TextBlock></PrintSpace></Page></Layout></alto>\n')


def import_export(export: Path, fmt: str = "page_xml", level: str = "line", skip: bool = False):
    module = {"page_xml": (page_xml.read_page_xml, page_xml.MARKERS), "alto": (alto.read_alto, alto.MARKERS)}[fmt]
    work = export.parent / f"{export.name}_out"
    return import_pages(export, work, *module, settings=CropSettings(target_height=20), skip_bad_xml=skip, level=level), work


def assert_upright_line(crop: Image.Image) -> None:
    """A line crop: wider than high, the ink at its left end, its right end light."""
    crop = crop.convert("L")
    assert crop.width > 4 * crop.height, f"a sideways crop: {crop.size}"
    left = crop.crop((0, 0, crop.width // 8, crop.height))
    right = crop.crop((crop.width * 7 // 8, 0, crop.width, crop.height))
    assert min(left.getdata()) < 40 and min(right.getdata()) > 150


@pytest.mark.parametrize("orientation", [6, 8])
@pytest.mark.parametrize("frame", ["stored", "upright"])
def test_exif_rotated_page_gives_upright_line_crops(tmp_path, orientation, frame):
    """Coordinates written on the stored (turned) image, as kraken and Tesseract write them,
    or on the upright image (the XML then declares the upright size): the crop is upright."""
    turn = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    export = tmp_path / "export"
    export.mkdir()
    upright_page().transpose(turn).save(export / "p.jpg", quality=95, exif=exif.tobytes())
    if frame == "upright":
        xml = page_xml_file("p.jpg", (200, 100), "20,40 180,40 180,60 20,60")
    else:  # the line box, in the coordinates of the 100 x 200 stored image
        x0, y0, x1, y1 = LINE_BOX
        corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        to_stored = {6: lambda x, y: (y, 200 - x), 8: lambda x, y: (100 - y, x)}[orientation]
        xml = page_xml_file("p.jpg", (100, 200), " ".join("%d,%d" % to_stored(x, y) for x, y in corners))
    (export / "p.xml").write_text(xml)
    result, work = import_export(export)
    assert [r.text for r in result.records] == ["ink"] and not result.lines_skipped
    assert_upright_line(Image.open(work / result.records[0].image))
    meta = result.records[0].meta  # in the upright image's pixels
    assert meta["bbox"] == list(LINE_BOX) and meta["page_size"] == [200, 100]


@pytest.mark.parametrize("level", ["line", "page"])
def test_a_large_icc_profile_is_not_copied_into_crops(tmp_path, level):
    export = tmp_path / "export"
    export.mkdir()
    upright_page().save(export / "p.tif", icc_profile=big_icc_profile())
    assert (export / "p.tif").stat().st_size > 1_000_000
    (export / "p.xml").write_text(page_xml_file("p.tif", (200, 100), "20,40 180,40 180,60 20,60"))
    result, work = import_export(export, level=level)
    crop_file = work / result.records[0].image
    with Image.open(crop_file) as crop:
        assert crop.info.get("icc_profile") is None
        if level == "line":
            assert_upright_line(crop)
    assert crop_file.stat().st_size < 20_000


@pytest.mark.parametrize("bad_name", ["cut.png", "empty.png", "bomb.png"])
@pytest.mark.parametrize("fmt", ["page_xml", "alto"])
def test_a_broken_page_image_is_an_error_or_a_counted_skip_naming_it(tmp_path, caplog, fmt, bad_name):
    export = tmp_path / "export"
    export.mkdir()
    upright_page().save(export / "good.png")
    (export / bad_name).write_bytes(BROKEN[bad_name][0]())
    for stem, image in (("good", "good.png"), ("bad", bad_name)):
        text = alto_file(image) if fmt == "alto" else page_xml_file(image, (200, 100), "20,40 180,40 180,60 20,60")
        (export / f"{stem}.xml").write_text(text)
    with pytest.raises(DataError, match=rf"bad\.xml: page image: .*{bad_name}"):
        import_export(export, fmt)  # data.on_error=raise
    with caplog.at_level(logging.WARNING, logger="ocrft.data.lines"):
        result, work = import_export(export, fmt, skip=True)
    reason = "image_too_large" if bad_name == "bomb.png" else "image_unreadable"
    assert dict(result.pages_skipped) == {reason: 1} and dict(result.lines_skipped) == {reason: 1}
    assert [r.group for r in result.records] == ["good"]
    assert bad_name in caplog.text and BROKEN[bad_name][1] in caplog.text


# --- the report's thumbnails ------------------------------------------------------------------------


def test_report_thumbnails_follow_the_same_rules(tmp_path):
    (tmp_path / "exif6.jpg").write_bytes(with_orientation(6))
    (tmp_path / "grey16.tif").write_bytes(sixteen_bit())
    (tmp_path / "cut.jpg").write_bytes(BROKEN["cut.jpg"][0]())
    for name in ("exif6.jpg", "grey16.tif"):
        uri = thumbnail_uri(tmp_path / name)
        thumb = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")
        assert thumb.width > thumb.height  # upright
        assert max(thumb.getpixel((thumb.width // 6, thumb.height // 2))) < 80  # ink, not a white-clipped 16-bit
    assert thumbnail_uri(tmp_path / "cut.jpg") is None
