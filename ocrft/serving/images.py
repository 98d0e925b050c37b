"""The image of a served request: a base64 data URL decoded to an RGB PIL image, refusing
remote URLs (no server-side fetching, no SSRF), undecodable files and decompression bombs."""

from __future__ import annotations

import base64
import binascii
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
    """An RGB PIL image from encoded bytes, decoded by the rules every ocrft image follows
    (ocrft.data.images.decode_image_bytes: EXIF orientation, CMYK, 16-bit, transparency
    onto white, ICC dropped) so served and local results agree.

    Raises:
        RequestError: 413 for an image declaring more than ``max_pixels`` pixels (refused
            from its header, before any decoding), 400 naming the reason for an empty,
            undecodable, truncated or corrupt one.
    """
    from ocrft.data.images import ImageError, decode_image_bytes

    try:
        return decode_image_bytes(data, max_pixels, "request image", formats=IMAGE_FORMATS)
    except ImageError as e:
        if e.kind == "too_large":
            raise RequestError(413, str(e), "image_too_large") from None
        raise RequestError(400, str(e), "invalid_image") from None
