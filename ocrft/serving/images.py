"""The image of a served request: a base64 data URL decoded to an RGB PIL image, refusing
remote URLs (no server-side fetching, no SSRF), undecodable files and decompression bombs."""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

from ocrft.serving.protocol import RequestError

# Decoders a request may reach; PIL's others (EPS runs Ghostscript, ...) stay out of reach.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")


def decode_data_url(url: str) -> bytes:
    """The bytes of a ``data:<mime>;base64,<data>`` URL; remote URLs are refused."""
    if url.startswith(("http://", "https://")):
        raise RequestError(400, "remote image URLs are not fetched; send the image inline as a data URL "
                                "(data:image/png;base64,...)", "remote_url_refused")
    header, sep, data = url.partition(",")
    if not header.startswith("data:") or not sep or not header.endswith(";base64"):
        raise RequestError(400, "image_url must be a base64 data URL (data:image/png;base64,...)")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, "image data URL is not valid base64") from None


def decode_image(data: bytes, max_pixels: int) -> Any:
    """An RGB PIL image from encoded bytes, prepared as ocrft.data.images.open_image does
    (EXIF orientation, transparency onto white) so served and local results agree.

    The pixel count is read from the header and refused (413) before any decoding.
    """
    from PIL import Image, ImageOps

    from ocrft.data.images import flatten_to_rgb

    if not data:
        raise RequestError(400, "image is empty (0 bytes)", "invalid_image")
    try:
        im = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError:
        raise RequestError(413, f"image is larger than {max_pixels} pixels", "image_too_large") from None
    except (OSError, SyntaxError, ValueError):
        raise RequestError(400, f"image is not a decodable {'/'.join(IMAGE_FORMATS)} file", "invalid_image") from None
    if im.width * im.height > max_pixels:
        raise RequestError(413, f"image is {im.width}x{im.height}, over {max_pixels} pixels", "image_too_large")
    try:
        im.load()
        return flatten_to_rgb(ImageOps.exif_transpose(im))
    except (OSError, SyntaxError, ValueError):
        raise RequestError(400, "image is truncated or corrupt", "invalid_image") from None
