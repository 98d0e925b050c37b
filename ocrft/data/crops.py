"""Page images of an export: finding them safely, opening them, and cutting samples out.

A line image is the polygon's bounding box plus ``padding`` page pixels on each side
(clipped to the page; with ``mask`` everything outside the polygon is white), scaled to
``target_height`` with its aspect ratio kept, or with ``preserve_aspect_ratio=false``
stretched to ``FIXED_ASPECT * target_height`` x ``target_height``.

A region image is cut the same way but never squeezed to a line height: it keeps its
aspect ratio and is only shrunk, to fit within ``max_pixels`` (width x height), as is a
whole page. Vision-language processors resize by a pixel budget (Qwen2.5-VL's
``max_pixels``), so an image already within it reaches the model unchanged.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".jp2", ".webp", ".bmp")
# With preserve_aspect_ratio=false every line is stretched to this width:height, about
# the shape of a short manuscript line, so batches of fixed-size images can be built.
FIXED_ASPECT = 4
Box = tuple[int, int, int, int]
log = logging.getLogger(__name__)


class PageSkipped(Exception):
    """A page (or sample) that cannot be imported; ``reason`` is the counted skip reason."""

    def __init__(self, reason: str, message: str = ""):
        super().__init__(message or reason)
        self.reason = reason


@dataclass(frozen=True)
class CropSettings:
    """How a polygon becomes a sample image (the ``data.*`` crop keys)."""

    target_height: int = 128  # lines
    preserve_aspect_ratio: bool = True  # lines
    padding: int = 4  # page pixels added around the box, clipped to the page
    mask: bool = False  # white out pixels outside the polygon
    max_pixels: int = 1_003_520  # regions and pages: shrunk to fit, never enlarged


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root)


def find_page_image(xml_path: Path, ref: Optional[str], root: Path) -> Path:
    """Find the image a page file names, never outside ``root`` (the export folder).

    A relative name is looked up beside the XML, then one folder up (Transkribus keeps
    XML in ``page/`` beside the images). An absolute path or URL, as Tesseract and some
    tools write, is used when it lies inside the export; otherwise its file name is
    looked up the same way. Without a name, an image with the XML's stem is used.

    Raises:
        PageSkipped: ``image_outside_export`` for a name that leads out of the export
            (``../../x.png``, a symlink out), ``missing_image`` when nothing is found.
    """
    folders = [xml_path.parent] + ([xml_path.parent.parent] if xml_path.parent != root else [])
    if ref:
        ref = ref.strip().replace("\\", "/")
        foreign = "://" in ref or re.match(r"[A-Za-z]:/", ref)  # a URL or Windows path: only its name helps
        if foreign or Path(ref).is_absolute():
            absolute = None if foreign else Path(ref)
            if absolute and absolute.is_file() and _inside(absolute, root):
                return absolute
            names = [ref.rsplit("/", 1)[-1]]
            outside = bool(absolute and absolute.is_file())
        else:
            if not _inside(xml_path.parent / ref, root):
                raise PageSkipped("image_outside_export", f"image {ref!r} lies outside the export folder")
            names, outside = [ref], False
    else:
        names = [xml_path.stem + s for s in IMAGE_SUFFIXES]
        outside = False
    for folder in folders:
        for name in names:
            candidate = folder / name
            if candidate.is_file():
                if not _inside(candidate, root):
                    raise PageSkipped("image_outside_export", f"image {candidate} links outside the export folder")
                return candidate
    if outside:
        raise PageSkipped("image_outside_export", f"image {ref!r} lies outside the export folder")
    raise PageSkipped("missing_image", f"no image {ref or xml_path.stem + '.*'!r} beside {xml_path.name}")


# EXIF orientation -> where a point (x, y) of the stored w x h image lands in the upright
# image (what ImageOps.exif_transpose turns it into: 6 = ROTATE_270, 8 = ROTATE_90, ...)
_TURNS: dict[int, Callable[[float, float, float, float], tuple[float, float]]] = {
    1: lambda x, y, w, h: (x, y),
    2: lambda x, y, w, h: (w - x, y),
    3: lambda x, y, w, h: (w - x, h - y),
    4: lambda x, y, w, h: (x, h - y),
    5: lambda x, y, w, h: (y, x),
    6: lambda x, y, w, h: (h - y, x),
    7: lambda x, y, w, h: (h - y, w - x),
    8: lambda x, y, w, h: (y, w - x),
}


@dataclass(frozen=True)
class PageFrame:
    """How a page file's coordinates land on the upright page image.

    Attributes:
        scale: page-file units -> pixels of the frame the coordinates are in.
        turn: the EXIF orientation still to apply to them (1: they are upright already).
        stored: the stored (unturned) image size, which ``turn`` works in.
    """

    scale: tuple[float, float] = (1.0, 1.0)
    turn: int = 1
    stored: tuple[int, int] = (0, 0)

    def to_pixels(self, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        """Page-file points -> pixels of the upright image."""
        (sx, sy), (w, h), turn = self.scale, self.stored, _TURNS[self.turn]
        return [turn(x * sx, y * sy, w, h) for x, y in points]


def _aspect_gap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return abs(math.log(a[0] / a[1]) - math.log(b[0] / b[1]))


def page_frame(size: Optional[tuple[float, float]], stored: tuple[int, int], orientation: int) -> PageFrame:
    """Which frame a page file's coordinates are in, for an image stored ``stored`` big with
    EXIF ``orientation``.

    The XML's page size decides: coordinates are in the upright frame when the size has the
    upright image's shape (a turn of 90 degrees swaps width and height), else in the stored
    frame, as kraken and Tesseract write them (they read pixels without applying EXIF); they
    are then turned with the image, so crops come out upright either way. A 180-degree turn
    or a mirror keeps the shape: those coordinates are taken as stored-frame ones.
    """
    orientation = orientation if orientation in _TURNS else 1
    upright = stored if orientation <= 4 else (stored[1], stored[0])
    if orientation == 1 or (size and orientation > 4 and _aspect_gap(size, upright) < _aspect_gap(size, stored)):
        return PageFrame((upright[0] / size[0], upright[1] / size[1]) if size else (1.0, 1.0), 1, upright)
    scale = (stored[0] / size[0], stored[1] / size[1]) if size else (1.0, 1.0)
    return PageFrame(scale, orientation, stored)


def open_page_image(path: Path, size: Optional[tuple[float, float]]):
    """Load a page image upright (``ocrft.data.images`` rules) and how page coordinates map
    onto it.

    When the page size the XML declares differs from the image, the image was rescaled
    after export, or the unit is not pixels (ALTO mm10/inch1200): coordinates are scaled to
    fit. An EXIF orientation is applied to the image and, when the coordinates were
    written for the stored image, to them too (:func:`page_frame`).

    Returns:
        (upright RGB image without ICC profile, :class:`PageFrame`, SHA-256 of the file's bytes)

    Raises:
        PageSkipped: ``image_too_large`` over ``ocrft.data.images.MAX_IMAGE_PIXELS``,
            ``image_unreadable`` for anything else that does not decode (empty, truncated, ...).
    """
    from PIL import Image

    from ocrft.data.images import MAX_IMAGE_PIXELS, ImageError, decode_image_bytes

    data = path.read_bytes()
    try:
        image = decode_image_bytes(data, MAX_IMAGE_PIXELS, path.name)
    except ImageError as e:
        raise PageSkipped("image_too_large" if e.kind == "too_large" else "image_unreadable", str(e)) from None
    with Image.open(io.BytesIO(data)) as header:  # it decoded: reading the header again is safe
        stored, orientation = header.size, header.getexif().get(0x0112, 1)
    frame = page_frame(size, stored, orientation)
    if frame.turn != 1:
        log.info("%s: EXIF orientation %d: coordinates read on the stored image, turned upright with it",
                 path.name, orientation)
    return image, frame, hashlib.sha256(data).hexdigest()


def pixel_box(points: list[tuple[float, float]], image_size: tuple[int, int]) -> Box:
    """The polygon's bounding box in whole pixels, clipped to the image: ``(x0, y0, x1, y1)``.

    Raises:
        PageSkipped: ``degenerate_polygon`` (fewer than 3 distinct points or a zero-area
            box) or ``outside_image`` (the box misses the image entirely).
    """
    if len(set(points)) < 3:
        raise PageSkipped("degenerate_polygon")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    box = (math.floor(min(xs)), math.floor(min(ys)), math.ceil(max(xs)), math.ceil(max(ys)))
    if box[2] <= box[0] or box[3] <= box[1]:
        raise PageSkipped("degenerate_polygon")
    width, height = image_size
    if box[2] <= 0 or box[3] <= 0 or box[0] >= width or box[1] >= height:
        raise PageSkipped("outside_image")
    return max(0, box[0]), max(0, box[1]), min(width, box[2]), min(height, box[3])


def _cut(image, points: list[tuple[float, float]], settings: CropSettings):
    """The polygon's box plus padding, clipped to the image, masked if asked."""
    from PIL import Image, ImageDraw

    box, pad = pixel_box(points, image.size), settings.padding
    x0, y0 = max(0, box[0] - pad), max(0, box[1] - pad)
    x1, y1 = min(image.width, box[2] + pad), min(image.height, box[3] + pad)
    crop = image.crop((x0, y0, x1, y1)).convert("RGB")
    if settings.mask:
        inside = Image.new("L", crop.size, 0)
        ImageDraw.Draw(inside).polygon([(x - x0, y - y0) for x, y in points], fill=255)
        crop = Image.composite(crop, Image.new("RGB", crop.size, (255, 255, 255)), inside)
    return crop


def crop_line(image, points: list[tuple[float, float]], settings: CropSettings):
    """Crop one line's polygon out of a page image and resize it to the target height.

    Raises:
        PageSkipped: see :func:`pixel_box`.
    """
    from PIL import Image

    crop = _cut(image, points, settings)
    height = settings.target_height
    if settings.preserve_aspect_ratio:
        width = max(1, round(crop.width * height / crop.height))
    else:
        width = FIXED_ASPECT * height
    return crop.resize((width, height), Image.Resampling.LANCZOS)


def crop_region(image, points: list[tuple[float, float]], settings: CropSettings):
    """Crop a region's polygon (box + padding, masked if asked), shrunk to fit ``max_pixels``.

    Raises:
        PageSkipped: see :func:`pixel_box`.
    """
    return fit_pixels(_cut(image, points, settings), settings.max_pixels)


def fit_pixels(image, max_pixels: int):
    """``image`` as RGB, shrunk with its aspect ratio kept until width x height <= ``max_pixels``;
    an image already within the budget is returned at its size (never enlarged)."""
    from PIL import Image

    image = image.convert("RGB")
    if image.width * image.height <= max_pixels:
        return image
    factor = math.sqrt(max_pixels / (image.width * image.height))
    width, height = max(1, math.floor(image.width * factor)), max(1, math.floor(image.height * factor))
    while width * height > max_pixels:  # a side of 1 px can push the product over: shave the longer
        if width >= height:
            width -= 1
        else:
            height -= 1
    return image.resize((width, height), Image.Resampling.LANCZOS)
