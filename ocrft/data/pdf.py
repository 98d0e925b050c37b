"""PDF pages as images: rendered by pdfium (pypdfium2) at ``data.pdf_dpi``, shrunk to
``data.max_pixels`` as page images are (ocrft.data.crops.fit_pixels), written as PNG files so
that every predictor (a local model, an endpoint, a cascade) reads them as it reads any image.

A page is the record ``<file>#p<N>`` (N from 1). task=predict and the olmOCR-Bench reader
(ocrft.data.olmocr_bench) both render here. A PDF that cannot be read (broken, truncated past
repair, encrypted with a password, no pages) raises a DataError naming the file, or with
``data.on_error=skip`` is left out and counted (:class:`PdfPages`).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from ocrft.data.record import DataError, Record

log = logging.getLogger(__name__)

PDF_SUFFIX = ".pdf"
FPDF_ERR_PASSWORD = 4  # pdfium's load error codes (fpdfview.h)
POINTS_PER_INCH = 72  # PDF user space unit: pdfium's scale 1 renders 72 pixels per inch


@dataclass(frozen=True)
class RenderSettings:
    """``data.pdf_dpi``, ``data.max_pixels`` and ``data.pdf_max_pages`` (None = every page)."""

    dpi: int = 200
    max_pixels: int = 1_003_520
    max_pages: Optional[int] = None


@dataclass
class PdfPages:
    """The page records of some PDFs, and the PDFs left out (path -> why) with on_error=skip."""

    records: list[Record] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def page_id(pdf: Path | str, page: int) -> str:
    """``<file>#p<N>``: the id of page ``page`` (1-based) of ``pdf``."""
    return f"{pdf}#p{page}"


def _open(path: Path):
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as err:
        if err.err_code == FPDF_ERR_PASSWORD and b"/Encrypt" in path.read_bytes():
            raise DataError("the PDF is encrypted with a password: decrypt it first (e.g. qpdf --decrypt)", path) from None
        # pdfium reports a PDF without pages as a password error too
        why = "it holds no pages" if err.err_code == FPDF_ERR_PASSWORD else f"pdfium: {err}"
        raise DataError(f"cannot read this PDF ({why})", path) from None
    if len(document) == 0:
        document.close()
        raise DataError("the PDF holds no pages", path)
    return document


def _render(document, *, index: int, settings: RenderSettings, target: Path) -> Path:
    from ocrft.data.crops import fit_pixels

    page = document[index]
    try:
        image = page.render(scale=settings.dpi / POINTS_PER_INCH).to_pil()
    finally:
        page.close()
    import io

    from ocrft import atomic

    buf = io.BytesIO()
    fit_pixels(image, settings.max_pixels).save(buf, format="PNG")
    return atomic.write_bytes(target, buf.getvalue())  # a kill never leaves half a page image


def render_pdf(path: Path, out_dir: Path, *, settings: RenderSettings, pages: Optional[Sequence[int]] = None,
               name: Optional[str] = None) -> list[Record]:  # fmt: skip
    """Render ``pages`` (1-based; None = all, up to ``settings.max_pages``) of ``path`` into
    ``out_dir``; one record per page, its id ``<name>#p<N>`` (``name`` defaults to the path),
    its text empty.

    Raises:
        DataError: naming the file: unreadable, encrypted, no pages, or a page it lacks.
    """
    document = _open(path)
    try:
        count = len(document)
        wanted = list(pages) if pages is not None else list(range(1, count + 1))[: settings.max_pages]
        missing = [n for n in wanted if not 1 <= n <= count]
        if missing:
            raise DataError(f"has {count} page(s), no page {missing[0]}", path)
        # one folder per PDF (its path's hash): two PDFs of one name in two folders never collide
        folder = out_dir / f"{path.stem}-{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
        folder.mkdir(parents=True, exist_ok=True)
        return [
            Record(id=page_id(name or path, n), image=str(_render(document, index=n - 1, settings=settings,
                                                                  target=folder / f"p{n}.png")), text="",
                   meta={"pdf": name or str(path), "page": n})
            for n in wanted
        ]  # fmt: skip
    finally:
        document.close()


def render_pdfs(paths: Sequence[Path], out_dir: Path, *, settings: RenderSettings, skip: bool = False) -> PdfPages:
    """Every page of each PDF (:func:`render_pdf`); with ``skip`` a PDF that cannot be read is
    left out, logged and counted instead of raising."""
    result = PdfPages()
    for path in paths:
        try:
            result.records.extend(render_pdf(path, out_dir, settings=settings))
        except DataError as err:
            if not skip:
                raise
            log.warning("skipped: %s", err)
            result.skipped[str(path)] = str(err)
    return result
