"""task=predict on PDFs through the real entry point: one prediction per page with ids
<file>#p<N>; a truncated or encrypted PDF is one error naming it, or a counted skip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocrft.data.record import DataError
from tests.helpers import run
from tests.pdfs import encrypted_pdf, image_pdf, truncated_pdf

pytestmark = [pytest.mark.slow, pytest.mark.integration]

TINY = ["task=predict", "model=tiny_qwen2_vl", "eval.max_new_tokens=3", "data.pdf_dpi=50"]


def test_a_multi_page_pdf_gives_one_prediction_per_page(tmp_path):
    pdf = image_pdf(tmp_path / "letters.pdf", ["first page", "second page", "third page"])
    record = run([*TINY, f"predict.input={pdf}"], tmp_path / "run")
    ids = [line.split("\t")[0] for line in Path(record["paths"]["results_txt"]).read_text().splitlines()]
    assert ids == [f"{pdf}#p1", f"{pdf}#p2", f"{pdf}#p3"]
    rows = [json.loads(line) for line in Path(record["paths"]["predictions"]).read_text().splitlines()]
    assert [r["image"] for r in rows] == ids and all(Path(r["page_image"]).is_file() for r in rows)
    assert record["metrics"]["predict/images"] == 3


def test_a_folder_mixes_images_and_pdf_pages_and_skips_bad_pdfs_when_asked(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    good = image_pdf(folder / "a.pdf", ["one", "two"])
    truncated_pdf(good, folder / "b_cut.pdf")
    encrypted_pdf(folder / "c_locked.pdf")
    with pytest.raises(DataError, match="b_cut.pdf: cannot read this PDF"):
        run([*TINY, f"predict.input={folder}"], tmp_path / "run1")
    record = run([*TINY, f"predict.input={folder}", "data.on_error=skip", "data.pdf_max_pages=1"], tmp_path / "run2")
    lines = Path(record["paths"]["results_txt"]).read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == [f"{good}#p1"]
    assert record["metrics"]["predict/skipped_pdfs"] == 2


def test_an_encrypted_pdf_is_a_user_error(tmp_path):
    from ocrft.runner import user_error_message

    locked = encrypted_pdf(tmp_path / "locked.pdf")
    with pytest.raises(DataError) as err:
        run([*TINY, f"predict.input={locked}"], tmp_path / "run")
    assert user_error_message(err.value) == f"{locked}: the PDF is encrypted with a password: decrypt it first (e.g. qpdf --decrypt)"
