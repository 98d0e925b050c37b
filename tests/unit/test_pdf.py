"""PDF pages rendered for reading: ids, DPI and pixel budget, page limit, and the PDFs that
cannot be read (truncated, encrypted, empty) named or skipped and counted."""

from __future__ import annotations

import pytest
from PIL import Image

from ocrft.data.pdf import RenderSettings, render_pdf, render_pdfs
from ocrft.data.record import DataError
from tests.pdfs import encrypted_pdf, image_pdf, truncated_pdf


def test_one_record_per_page_at_the_dpi(tmp_path):
    pdf = image_pdf(tmp_path / "doc.pdf", ["one", "two", "three"])  # 300 x 120 pt pages
    records = render_pdf(pdf, tmp_path / "out", settings=RenderSettings(dpi=144))
    assert [r.id for r in records] == [f"{pdf}#p1", f"{pdf}#p2", f"{pdf}#p3"]
    assert [r.meta["page"] for r in records] == [1, 2, 3]
    assert Image.open(records[0].image).size == (600, 240)  # 2 px per point at 144 dpi


def test_pages_fit_max_pixels_and_the_page_limit(tmp_path):
    pdf = image_pdf(tmp_path / "doc.pdf", ["one", "two", "three"])
    records = render_pdf(pdf, tmp_path / "out", settings=RenderSettings(dpi=200, max_pixels=30_000, max_pages=2))
    assert len(records) == 2
    width, height = Image.open(records[1].image).size
    assert width * height <= 30_000 and width / height == pytest.approx(2.5, rel=0.02)
    assert [r.id[-3:] for r in render_pdf(pdf, tmp_path / "o2", settings=RenderSettings(), pages=[3])] == ["#p3"]
    with pytest.raises(DataError, match="has 3 page.*no page 4"):
        render_pdf(pdf, tmp_path / "o3", settings=RenderSettings(), pages=[4])


def test_unreadable_pdfs_are_named(tmp_path):
    good = image_pdf(tmp_path / "good.pdf", ["a page"])
    truncated = truncated_pdf(good, tmp_path / "cut.pdf")
    locked = encrypted_pdf(tmp_path / "locked.pdf")
    empty = tmp_path / "empty.pdf"
    import pypdfium2 as pdfium

    pdfium.PdfDocument.new().save(str(empty))
    for path, why in ((truncated, "Data format"), (locked, "encrypted with a password: decrypt it first"), (empty, "no pages")):
        with pytest.raises(DataError, match=f"{path.name}: .*{why}"):
            render_pdf(path, tmp_path / "out", settings=RenderSettings())
    pages = render_pdfs([truncated, good, locked], tmp_path / "out", settings=RenderSettings(), skip=True)
    assert [r.id for r in pages.records] == [f"{good}#p1"]
    assert sorted(pages.skipped) == sorted([str(truncated), str(locked)])
