"""ocrft.data.images: every bad image becomes a DataError naming the file."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from ocrft.data import images
from ocrft.data.images import check_image, open_image
from ocrft.data.record import DataError

BAD = Path(__file__).resolve().parents[1] / "assets" / "bad_input"


def test_good_png_opens_as_loaded_rgb():
    im = open_image(BAD / "good.png")
    assert im.mode == "RGB"
    assert im.size == check_image(BAD / "good.png")
    assert im.getpixel((0, 0)) == (255, 255, 255)  # white margin: really decoded


def test_content_decides_the_format_not_the_extension():
    im = open_image(BAD / "jpeg_named.png")
    assert im.mode == "RGB"
    assert check_image(BAD / "jpeg_named.png") == im.size


@pytest.mark.parametrize(
    "name, message",
    [
        ("missing.png", "not found"),
        ("empty.png", "empty (0 bytes)"),
        ("truncated.png", "truncated"),
        ("not_an_image.png", "unreadable image"),
        ("bomb.png", "7000x7000"),
    ],
)
@pytest.mark.parametrize("fn", [open_image, check_image])
def test_bad_images_raise_data_error_naming_the_file(fn, name, message):
    with pytest.raises(DataError) as exc:
        fn(BAD / name)
    assert name in str(exc.value)
    assert message in str(exc.value)
    assert exc.value.path == BAD / name


def test_pixel_limit_is_the_module_constant(monkeypatch, tmp_path):
    path = tmp_path / "big.png"
    Image.new("L", (20, 10), 255).save(path)
    assert check_image(path) == (20, 10)
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 199)
    with pytest.raises(DataError, match="200 pixels, over the limit of 199"):
        open_image(path)


def test_pil_decompression_bomb_error_becomes_data_error(monkeypatch, tmp_path):
    # PIL's own (global) limit, raised inside Image.open, is also turned into a DataError
    path = tmp_path / "pil_bomb.png"
    Image.new("L", (100, 100), 255).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DataError, match="decompression bomb") as exc:
        open_image(path)
    assert "pil_bomb.png" in str(exc.value)


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    Image.new("RGB", (40, 20), (200, 10, 10)).save(path, exif=exif.tobytes())
    assert check_image(path) == (40, 20)  # stored size
    assert open_image(path).size == (20, 40)  # displayed size


def test_transparent_background_becomes_white(tmp_path):
    path = tmp_path / "alpha.png"
    im = Image.new("RGBA", (4, 4), (0, 0, 0, 0))  # transparent black
    im.putpixel((1, 1), (0, 0, 0, 255))  # one opaque black "ink" pixel
    im.save(path)
    rgb = open_image(path)
    assert rgb.getpixel((0, 0)) == (255, 255, 255)
    assert rgb.getpixel((1, 1)) == (0, 0, 0)


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(DataError, match="not found"):
        open_image(tmp_path)


def test_corrupt_png_crc_is_caught_by_check(tmp_path):
    buf = io.BytesIO()
    Image.new("L", (30, 10), 255).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[-20] ^= 0xFF  # flip a byte inside the IDAT chunk: CRC no longer matches
    path = tmp_path / "crc.png"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError) as exc:
        check_image(path)
    assert "crc.png" in str(exc.value)


def test_pil_bomb_warning_range_is_refused_too(monkeypatch, tmp_path):
    # between PIL's warning and error thresholds PIL only warns; our limit still refuses
    path = tmp_path / "warn_bomb.png"
    Image.new("L", (100, 100), 255).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6000)  # warns above 6000, raises above 12000
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 5000)
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(DataError, match="over the limit of 5000"):
        check_image(path)
