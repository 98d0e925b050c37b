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
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".jp2", ".webp", ".bmp")
# With preserve_aspect_ratio=false every line is stretched to this width:height, about
# the shape of a short manuscript line, so batches of fixed-size images can be built.
FIXED_ASPECT = 4
Box = tuple[int, int, int, int]


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


def open_page_image(path: Path, size: Optional[tuple[float, float]]):
    """Load a page image and the factors that turn page coordinates into its pixels.

    When the page size the XML declares differs from the image, the image was rotated by
    its EXIF tag (the XML then matches the rotated size) or rescaled after export, or the
    unit is not pixels (ALTO mm10/inch1200): coordinates are scaled to fit.

    Returns:
        (image, (x factor, y factor), SHA-256 of the file's bytes)

    Raises:
        PageSkipped: ``image_too_large`` past PIL's decompression-bomb limit,
            ``image_unreadable`` for anything PIL cannot decode.
    """
    from PIL import Image, ImageOps

    data = path.read_bytes()
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Image.DecompressionBombError as e:
        raise PageSkipped("image_too_large", str(e)) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise PageSkipped("image_unreadable", f"{path.name}: {e}") from None
    if size and image.size != tuple(round(v) for v in size):
        turned = ImageOps.exif_transpose(image)
        if turned.size == tuple(round(v) for v in size):
            image = turned
    scale = (image.width / size[0], image.height / size[1]) if size else (1.0, 1.0)
    return image, scale, hashlib.sha256(data).hexdigest()


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
