"""PDFs made offline for the tests: pages from PIL images, a truncated copy, and one encrypted
with a user password (PDF 1.7's standard security handler, revision 2: RC4 with a 40-bit key,
algorithms 3.2-3.4 of the spec). The encrypted one has blank pages, so it holds no string or
stream that the key would have to encrypt: only its /Encrypt entries need computing."""

from __future__ import annotations

import hashlib
from pathlib import Path

from PIL import Image, ImageDraw

PAD = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")


def image_pdf(path: Path, texts: list[str], size: tuple[int, int] = (300, 120)) -> Path:
    """One page per text (black text on white), saved by PIL at 72 dpi: a page is ``size`` points."""
    pages = []
    for text in texts:
        image = Image.new("RGB", size, "white")
        ImageDraw.Draw(image).text((10, 40), text, fill="black")
        pages.append(image)
    pages[0].save(path, save_all=True, append_images=pages[1:], resolution=72.0)
    return path


def truncated_pdf(source: Path, path: Path, keep: float = 0.3) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _rc4(key: bytes, data: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) % 256
        s[i], s[j] = s[j], s[i]
    out, i, j = bytearray(), 0, 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + s[i]) % 256
        s[i], s[j] = s[j], s[i]
        out.append(byte ^ s[(s[i] + s[j]) % 256])
    return bytes(out)


def encrypted_pdf(path: Path, user_password: bytes = b"secret", owner_password: bytes = b"owner") -> Path:
    """A one-page PDF that opens only with ``user_password``."""
    permissions = -4  # every permission bit set
    file_id = hashlib.md5(b"ocrft test").digest()
    owner = _rc4(hashlib.md5((owner_password + PAD)[:32]).digest()[:5], (user_password + PAD)[:32])
    key = hashlib.md5((user_password + PAD)[:32] + owner + permissions.to_bytes(4, "little", signed=True)
                      + file_id).digest()[:5]  # fmt: skip
    user = _rc4(key, PAD)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] >>",
        b"<< /Filter /Standard /V 1 /R 2 /O <" + owner.hex().encode() + b"> /U <" + user.hex().encode()
        + b"> /P " + str(permissions).encode() + b" >>",
    ]  # fmt: skip
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += (b"trailer\n<< /Size %d /Root 1 0 R /Encrypt 4 0 R /ID [<%s> <%s>] >>\nstartxref\n%d\n%%%%EOF\n"
            % (len(objects) + 1, file_id.hex().encode(), file_id.hex().encode(), xref))  # fmt: skip
    path.write_bytes(bytes(out))
    return path
