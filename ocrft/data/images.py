"""Opening images safely: every failure becomes a DataError that names the file.

Readers call :func:`check_image` once per record at load time (header + integrity check,
no full decode) so a bad file is reported with its record's line before training starts;
training and evaluation call :func:`open_image` to get the pixels.
"""

from __future__ import annotations

import os
from pathlib import Path

from ocrft.data.record import DataError

# Largest image we agree to decode. PIL's own default (~89M pixels) is global state shared
# with every other library in the process; ours is checked explicitly from the header, so a
# 40M-pixel bomb (e.g. a 2x2 px PNG claiming 8000x8000) is refused before any decoding.
MAX_IMAGE_PIXELS = 40_000_000


def _bomb_message(width: int, height: int) -> str:
    return (
        f"image is {width}x{height} = {width * height} pixels, over the limit of "
        f"{MAX_IMAGE_PIXELS} (possible decompression bomb)"
    )


def _open_checked(path: Path):
    """Open ``path`` lazily (header only) after the checks every caller needs."""
    from PIL import Image

    if not path.is_file():
        raise DataError("image file not found", path)
    if path.stat().st_size == 0:
        raise DataError("image file is empty (0 bytes)", path)
    # PIL raises past twice its own limit and only warns below; our lower limit, checked
    # right after, refuses both. (Not warnings.catch_warnings: it is process-global and
    # images are opened from several threads.) The warning class is caught for -W error.
    try:
        im = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DataError(f"image is too large (possible decompression bomb): {e}", path) from e
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"unreadable image: {e}", path) from e
    if im.width * im.height > MAX_IMAGE_PIXELS:
        im.close()
        raise DataError(_bomb_message(im.width, im.height), path)
    return im


def check_image(path: str | os.PathLike) -> tuple[int, int]:
    """Cheaply verify that ``path`` is a readable image and return its ``(width, height)``.

    Reads the header and runs PIL's integrity check (chunk CRCs for PNG) without decoding
    the pixels, so a truncated or corrupt file is caught at load time.

    Raises:
        DataError: naming the file, if it is missing, empty, not an image, corrupt, or
            larger than ``MAX_IMAGE_PIXELS``.
    """
    path = Path(path)
    im = _open_checked(path)
    try:
        size = im.size
        im.verify()
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"corrupt or truncated image: {e}", path) from e
    finally:
        im.close()
    return size


def open_image(path: str | os.PathLike):
    """Open ``path`` as a fully loaded RGB ``PIL.Image.Image``.

    The format is detected from the content, not the extension (a JPEG named ``.png``
    opens fine). EXIF orientation is applied, and transparent pixels are composited onto
    white, because scans exported with alpha usually have a transparent background behind
    dark text, and dropping alpha would turn it black.

    Raises:
        DataError: naming the file, if it is missing, empty, not an image, truncated, or
            larger than ``MAX_IMAGE_PIXELS``.
    """
    from PIL import ImageOps

    path = Path(path)
    im = _open_checked(path)
    try:
        with im:
            im.load()
            return flatten_to_rgb(ImageOps.exif_transpose(im))
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"corrupt or truncated image: {e}", path) from e


def flatten_to_rgb(im):
    """``im`` as RGB, its transparent pixels composited onto white.

    Scans exported with alpha usually have a transparent background behind dark text:
    dropping the alpha channel would turn that background black.
    """
    from PIL import Image

    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return im.convert("RGB")
