"""Opening images safely: one set of rules, every failure a DataError that names the file.

:func:`decode_image_bytes` is the one implementation. :func:`open_image` (training,
evaluation, the studio), :func:`check_image` (readers, at load time), the page importer's
``crops.open_page_image`` and task=serve all go through it, so an image is accepted or
refused the same way everywhere. It:

- refuses an empty file, anything PIL cannot identify, and an image whose *declared* size is
  over the decode limit (checked from the header, before any pixel is decoded: a 2 KB PNG can
  declare 50000x50000);
- decodes every pixel, so a truncated file fails here (``ImageFile.LOAD_TRUNCATED_IMAGES`` is
  never set: it would hand the model a half-grey page);
- applies the EXIF orientation (a phone photo tagged "rotate 90" must reach the model upright);
- converts every mode to RGB without losing the text: 16-bit and 32-bit grey are scaled to
  8 bits by the bit depth their values use (not clipped to white), transparency is flattened
  onto white (not black), CMYK goes through its embedded ICC profile to sRGB when PIL has
  littlecms;
- drops the ICC profile, so a 1 MB scanner profile is not copied into every crop written.

``MAX_IMAGE_PIXELS`` (the decode limit) is not ``data.max_pixels``: the latter is the size
region and page samples are *shrunk* to, while a legitimate 300-dpi A4 scan (8.7 M pixels) is
far above it and must still be read (see docs/data.md).
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any, Callable, Optional

from ocrft.data.record import DataError

log = logging.getLogger(__name__)

# Largest image we agree to decode. PIL's own default (~89M pixels) is global state shared
# with every other library in the process; ours is checked explicitly from the header, so a
# 40M-pixel bomb (e.g. a 2x2 px PNG claiming 8000x8000) is refused before any decoding.
MAX_IMAGE_PIXELS = 40_000_000
# Bit depths a high-bit grey image's values are scaled from: a 12-bit camera stored in 16-bit
# words (max 4095) divided by 257 would come out black, so the smallest depth that holds the
# brightest value is used.
_BIT_DEPTHS = (8, 10, 12, 14, 16)
# Warning: PIL warns on some truncated TIFF headers, which -W error turns into exceptions
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, Warning)


class ImageError(DataError):
    """A DataError about one image, with ``kind`` (a key of ``KINDS``) for callers that map it
    (task=serve: ``too_large`` is HTTP 413, the rest 400; the page importer: skip reasons)."""

    def __init__(self, kind: str, message: str, name: Any):
        super().__init__(message, name)
        self.kind = kind


KINDS = ("missing", "empty", "not_an_image", "too_large", "truncated", "orientation", "mode")


def decode_image_bytes(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS, name: Any = "image",
                       formats: Optional[tuple[str, ...]] = None, draft: Optional[tuple[int, int]] = None):
    """Decode an encoded image into a fully loaded, upright RGB ``PIL.Image.Image``.

    Args:
        data: the file's bytes (PNG, JPEG, TIFF, WebP, ... whatever PIL reads).
        max_pixels: the decode limit; an image declaring more pixels is refused unread.
        name: what the error names (a path, or a label such as ``request image``).
        formats: PIL format names to accept (None: every format PIL knows), for task=serve.
        draft: for thumbnails, a size JPEG may be decoded down to (DCT scaling; every byte is
            still read, so truncation is still found).

    Raises:
        ImageError: (a DataError) naming ``name``: an empty file (0 bytes), not an image PIL
            can read, a declared size over ``max_pixels`` (possible decompression bomb),
            truncated or corrupt pixel data, unreadable EXIF metadata, or a mode with no RGB
            conversion.
    """
    from PIL import Image

    if not data:
        raise ImageError("empty", "image file is empty (0 bytes)", name)
    # PIL raises past twice its own limit and only warns below; our limit, checked right
    # after, refuses both. (Not warnings.catch_warnings: it is process-global and images are
    # opened from several threads.) The warning class is caught for -W error.
    try:
        im = Image.open(io.BytesIO(data), formats=formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError("too_large", f"image is too large (possible decompression bomb): {e}", name) from e
    except Image.UnidentifiedImageError:
        raise ImageError("not_an_image", "unreadable image: not an image PIL can read", name) from None
    except _DECODE_ERRORS as e:  # identified, but its header is cut short or broken
        raise ImageError("truncated", f"unreadable image: truncated or corrupt header ({e})", name) from e
    width, height = im.size
    if width * height > max_pixels:
        raise ImageError("too_large", f"declared {width}x{height} = {width * height} pixels, over the limit "
                                      f"of {max_pixels} (possible decompression bomb)", name)
    if draft is not None:
        im.draft("RGB", draft)
    try:
        im.load()
    except _DECODE_ERRORS as e:
        raise ImageError("truncated", f"truncated or corrupt image data ({e})", name) from e
    try:
        from PIL import ImageOps

        ImageOps.exif_transpose(im, in_place=True)
    except _DECODE_ERRORS as e:  # orientation unknown: a sideways line is worse than a refusal
        raise ImageError("orientation", f"unreadable EXIF metadata, orientation unknown ({e})", name) from e
    try:
        rgb = to_rgb(im)
    except (ValueError, OSError) as e:
        raise ImageError("mode", f"image mode {im.mode} cannot be converted to RGB ({e})", name) from e
    rgb.info.pop("icc_profile", None)  # PNG/JPEG writers would copy it into every crop
    return rgb


def _open_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise ImageError("missing", "image file not found", path)
    try:
        return path.read_bytes()
    except OSError as e:  # unreadable permissions, a file vanishing under a sync tool
        raise ImageError("missing", f"image file cannot be read ({e.strerror})", path) from e


def open_image(path: str | os.PathLike):
    """Open ``path`` as a fully loaded, upright RGB image (see :func:`decode_image_bytes`).

    The format is detected from the content, not the extension (a JPEG named ``.png``
    opens fine).

    Raises:
        DataError: naming the file, if it is missing, empty, not an image, truncated, or
            larger than ``MAX_IMAGE_PIXELS``.
    """
    path = Path(path)
    return decode_image_bytes(_open_bytes(path), MAX_IMAGE_PIXELS, path)


def check_image(path: str | os.PathLike) -> tuple[int, int]:
    """Verify that ``path`` decodes completely (the rules of :func:`decode_image_bytes`) and
    return its stored ``(width, height)`` (before EXIF rotation).

    Readers call this once per record, so a truncated file is reported with its record when
    the data is read, never at training step 500. The full decode costs about as much as
    the header check it replaced plus one decode (measured in docs/data.md).

    Raises:
        DataError: naming the file, if it is missing, empty, not an image, truncated, or
            larger than ``MAX_IMAGE_PIXELS``.
    """
    from PIL import Image

    path = Path(path)
    data = _open_bytes(path)
    decode_image_bytes(data, MAX_IMAGE_PIXELS, path)
    with Image.open(io.BytesIO(data)) as im:  # header only: it decoded above
        return im.size


# --- modes -> RGB ------------------------------------------------------------------------


def _grey_to_l(im):
    """16-bit, 32-bit integer or float grey -> 8-bit L, scaled rather than clipped."""
    import numpy as np
    from PIL import Image

    values = np.asarray(im).astype(np.float64)
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if im.mode == "F" and 0.0 <= lo and hi <= 1.0:
        scaled = values * 255.0  # float images in [0, 1]
    elif lo >= 0 and hi <= 2**16 - 1 and im.mode != "F":
        depth = next(d for d in _BIT_DEPTHS if hi <= 2**d - 1)
        scaled = values * (255.0 / (2**depth - 1))
    else:  # negative or huge values: no depth to read them in, stretch what is there
        scaled = (values - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(values)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")


def _cmyk_to_rgb(im):
    """CMYK through its embedded ICC profile to sRGB (littlecms, when PIL has it): PIL's plain
    CMYK -> RGB formula ignores the ink model and can shift colours far. RGB and grey images
    keep their values and only lose the profile: a colour transform costs ~40 ms per
    megapixel and changes nothing an OCR model reads."""
    icc = im.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms
        except ImportError:  # PIL built without littlecms
            return im.convert("RGB")
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(im, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as e:  # a broken profile: the plain formula
            log.debug("ICC profile not applied (%s): plain CMYK -> RGB conversion", e)
    return im.convert("RGB")


# mode -> converter to RGB; other modes go through flatten_to_rgb (PIL's convert, alpha onto white)
_TO_RGB: dict[str, Callable[[Any], Any]] = {
    **{mode: lambda im: _grey_to_l(im).convert("RGB") for mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")},
    "CMYK": _cmyk_to_rgb,
}


def to_rgb(im):
    """``im`` (any mode) as RGB: see :data:`_TO_RGB` and :func:`flatten_to_rgb`."""
    return _TO_RGB.get(im.mode, flatten_to_rgb)(im)


def flatten_to_rgb(im):
    """``im`` as RGB, its transparent pixels composited onto white.

    Scans exported with alpha usually have a transparent background behind dark text:
    dropping the alpha channel would turn that background black.
    """
    from PIL import Image

    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode in ("P", "L", "RGB") and "transparency" in im.info):
        rgba = im.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return im.convert("RGB")
