"""task=eval model=predictions end to end: another engine's output scored through the real
entry point, with jiwer as the oracle for CER, and nothing loaded or generated."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jiwer
import pytest
from PIL import Image, ImageDraw

from tests.helpers import REPO, compose, run
from tests.files import alto_file, page_file

pytestmark = pytest.mark.integration

def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text(encoding="utf-8"))


def no_model_loading(monkeypatch) -> None:
    """Fail the test if anything tries to load a model or build a generator."""
    import ocrft.evaluation.generation
    import ocrft.models.loading

    def refuse(*args, **kwargs):
        raise AssertionError("model=predictions must not load a model")

    monkeypatch.setattr(ocrft.evaluation.generation, "build_generator", refuse)
    monkeypatch.setattr(ocrft.models.loading, "load_model", refuse)


def test_jsonl_predictions_on_tiny_ocr_count_missing_and_extra(tmp_path: Path, monkeypatch):
    from ocrft.data.loading import load_data

    no_model_loading(monkeypatch)
    data = ["data=tiny_ocr", "data.train_ratio=0.5", "data.val_ratio=0"]  # 6 test lines
    test = load_data(compose(data).data, splits=("test",)).splits["test"]
    assert len(test) >= 3
    preds = {r.id: r.text.replace("o", "0") for r in test[1:]}  # test[0] has no prediction
    rows = [{"id": i, "text": t} for i, t in preds.items()] + [{"id": "ocr:999", "text": "stray"}]
    (tmp_path / "engine.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    record = run(["task=eval", "model=predictions", f"model.path={tmp_path / 'engine.jsonl'}", *data], tmp_path / "run")
    out = results(tmp_path / "run")
    hyps = [preds.get(r.id, "") for r in test]
    assert out["overall_cer"] == pytest.approx(jiwer.cer([r.text for r in test], hyps))
    assert out["model_name"] == "predictions:engine.jsonl"
    assert out["model"]["kind"] == "predictions" and out["model"]["path"] == str(tmp_path / "engine.jsonl")
    assert out["unmatched"] == {"missing_predictions": 1, "missing_ids": [test[0].id],
                                "extra_predictions": 1, "extra_ids": ["ocr:999"]}  # fmt: skip
    assert out["predictions"]["kind"] == "jsonl" and out["predictions"]["matched_by"] == {"id": len(test) - 1}
    assert [s["prediction"] for s in out["samples"]] == hyps
    assert record["status"] == "finished"
    assert record["metrics"]["eval/missing_predictions"] == 1 and record["metrics"]["eval/extra_predictions"] == 1
    assert (tmp_path / "run" / "results.html").is_file()


def line_folder(root: Path, lines: dict[str, str]) -> None:
    """kraken/Calamari-style lines: X.png (OCRopus-style X.bin.png for some) + X.gt.txt."""
    for k, (stem, text) in enumerate(lines.items()):
        image = root / (f"{stem}.bin.png" if k % 2 else f"{stem}.png")
        image.parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (60, 16), 255).save(image)
        (root / f"{stem}.gt.txt").write_text(text + "\n", encoding="utf-8")


def test_line_folder_pred_txt_scored_like_jiwer(tmp_path: Path, monkeypatch):
    no_model_loading(monkeypatch)
    gt = {"test/doc1/0001": "Zwey Waſſer", "test/doc1/0002": "der Fluß", "test/doc2/0001": "ein Haus am See",
          "train/doc3/0001": "not scored"}  # fmt: skip
    data = tmp_path / "lines"
    line_folder(data, gt)
    pred = {"test/doc1/0001": "Zwey Waſſer", "test/doc1/0002": "der Flus", "test/doc2/0001": "ein Hans am Sce"}
    for stem, text in pred.items():  # beside the ground truth, as Calamari's predict writes them
        (data / f"{stem}.pred.txt").write_text(text + "\n", encoding="utf-8")

    run(["task=eval", "model=predictions", f"model.path={data}", "data=line_folder", f"data.path={data}"],
        tmp_path / "run")  # fmt: skip
    out = results(tmp_path / "run")
    ids = [s["id"] for s in out["samples"]]
    assert sorted(ids) == sorted(pred)
    assert out["overall_cer"] == pytest.approx(jiwer.cer([gt[i] for i in ids], [pred[i] for i in ids]))
    assert out["unmatched"]["missing_predictions"] == 0 and out["unmatched"]["extra_predictions"] == 0
    assert out["model_name"] == "predictions:lines"


# --- PAGE ground truth, Tesseract ALTO and kraken PAGE predictions ---------------------------

# eScriptorium-style ground truth of one 400x300 page: (id, box, text)
GT_LINES = [
    ("eSc_line_a", (20, 30, 220, 70), "Hello world"),
    ("eSc_line_b", (20, 80, 300, 110), "An example"),
    ("eSc_line_c", (20, 130, 170, 160), "no gap here"),
]


def page_export(root: Path) -> Path:
    """A PAGE-XML export: page/0001.xml (Transkribus layout) beside 0001.png."""
    root.mkdir(parents=True)
    image = Image.new("L", (400, 300), 255)
    draw = ImageDraw.Draw(image)
    for k, (_, box, _) in enumerate(GT_LINES):
        draw.rectangle(box, fill=40 + 30 * k)
    image.save(root / "0001.png")
    lines = [(lid, f"{x0},{y0} {x1},{y0} {x1},{y1} {x0},{y1}", text) for lid, (x0, y0, x1, y1), text in GT_LINES]
    page_file(root / "page" / "0001.xml", "0001.png", (400, 300), lines)
    return root


def prepared(tmp_path: Path, *overrides: str) -> Path:
    out = tmp_path / "gt"
    run(["task=prepare", "data=page_xml", f"data.input_dir={page_export(tmp_path / 'export')}",
         f"data.output_dir={out}", "data.train_ratio=1.0", "data.val_ratio=0", *overrides], tmp_path / "prepare")  # fmt: skip
    return out


def eval_pages(tmp_path: Path, preds: Path, *overrides: str) -> dict:
    run(["task=eval", "model=predictions", f"model.path={preds}", "data=page_xml", f"data.path={tmp_path / 'gt'}",
         "eval.split=train", *overrides], tmp_path / "run")  # fmt: skip
    return results(tmp_path / "run")


def tesseract_alto(path: Path) -> Path:
    """Tesseract on a 2x upscale of the scan: its boxes in 800x600 pixels, its own ids and
    order, line b read in two words with one wrong, line c missed, a stain read as text."""
    return alto_file(path, "/data/scans/0001.png", (800, 600), [
        ("line_1", (44, 164, 556, 56), ["An", "exarnple"]),
        ("line_0", (36, 56, 410, 90), ["Hello", "world"]),
        ("line_2", (600, 500, 100, 40), ["~"]),
    ])  # fmt: skip


def test_tesseract_alto_against_prepared_page_ground_truth_by_position(tmp_path: Path, monkeypatch):
    no_model_loading(monkeypatch)
    prepared(tmp_path)
    tesseract_alto(tmp_path / "tess" / "0001.xml")
    out = eval_pages(tmp_path, tmp_path / "tess")
    by_text = {s["label"]: s["prediction"] for s in out["samples"]}
    assert by_text == {"Hello world": "Hello world", "An example": "An exarnple", "no gap here": ""}
    labels = [s["label"] for s in out["samples"]]
    assert out["overall_cer"] == pytest.approx(jiwer.cer(labels, [by_text[t] for t in labels]))
    assert out["predictions"]["matched_by"] == {"position": 2}
    assert out["unmatched"]["missing_predictions"] == 1 and out["unmatched"]["missing_ids"][0].endswith("eSc_line_c")
    assert out["unmatched"]["extra_ids"] == ["0001.xml#line_2"]
    assert out["model_name"] == "predictions:tess"


def test_tesseract_alto_against_page_level_ground_truth(tmp_path: Path, monkeypatch):
    # the whole page as one sample (data.level=page): Tesseract's lines joined in its order
    no_model_loading(monkeypatch)
    prepared(tmp_path, "data.level=page")
    tesseract_alto(tmp_path / "tess" / "0001.xml")
    out = eval_pages(tmp_path, tmp_path / "tess", "data.level=page")
    [sample] = out["samples"]
    assert sample["label"] == "Hello world\nAn example\nno gap here"
    assert sample["prediction"] == "An exarnple\nHello world\n~"
    assert out["overall_cer"] == pytest.approx(jiwer.cer([sample["label"]], [sample["prediction"]]))
    assert out["predictions"]["matched_by"] == {"page": 1} and out["unmatched"]["extra_predictions"] == 0


def test_kraken_page_against_prepared_page_ground_truth_by_id(tmp_path: Path, monkeypatch):
    no_model_loading(monkeypatch)
    prepared(tmp_path)
    # kraken recognised the given layout: the ids are the ground truth's, its polygons its own
    page_file(tmp_path / "kraken" / "0001.xml", "0001.png", (400, 300), [
        ("eSc_line_c", "18,128 175,128 175,165 18,165", "no gap hcre"),
        ("eSc_line_a", "20,30 220,30 220,70 20,70", "Hel1o world"),
        ("eSc_line_b", "20,80 300,80 300,110 20,110", "An example"),
    ])  # fmt: skip
    out = eval_pages(tmp_path, tmp_path / "kraken", "model.predictions_match=id")
    by_text = {s["label"]: s["prediction"] for s in out["samples"]}
    assert by_text == {"Hello world": "Hel1o world", "An example": "An example", "no gap here": "no gap hcre"}
    assert out["predictions"]["matched_by"] == {"id": 3}
    assert out["unmatched"] == {"missing_predictions": 0, "missing_ids": [], "extra_predictions": 0, "extra_ids": []}


def test_malformed_prediction_file_is_a_cli_error(tmp_path: Path):
    bad = tmp_path / "engine.jsonl"
    bad.write_text('{"id": "ocr:1", "text": "x"}\n{"id": "ocr:2", "text": "y"\n', encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "ocrft", "task=eval", "model=predictions", f"model.path={bad}", "data=tiny_ocr",
         "tracking=none", f"run_dir={tmp_path / 'run'}"],
        cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"ocrft: error: {bad}:2: malformed JSON" in proc.stderr
    assert "Traceback" not in proc.stderr
