"""Generation-based validation during training, early stopping, and task=predict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO, run

pytestmark = [pytest.mark.slow, pytest.mark.integration]

BASE = ["model=tiny_qwen2_vl", "data=tiny_ocr", "data.train_ratio=0.5", "data.val_ratio=0.34",
        "train.per_device_train_batch_size=4", "train.save_steps=100", "eval.max_new_tokens=6",
        "eval.before_after=false"]  # fmt: skip


def test_validation_logs_val_cer_and_keeps_the_best_model(tmp_path):
    record = run([*BASE, "train.max_steps=6", "train.learning_rate=5e-3", "eval.every_n_steps=2"], tmp_path)
    m = record["metrics"]
    assert 0 <= m["val/cer"] and m["val/best_step"] in (2, 4, 6)
    best = tmp_path / "best"
    assert (best / "adapter_model.safetensors").exists() and (best / "ocrft_model.json").exists()
    card = json.loads((best / "ocrft_model.json").read_text())
    assert card["adapter"] is True and card["family"] == "qwen2_vl"


def test_early_stopping_ends_training_when_val_cer_stops_improving(tmp_path):
    # learning_rate=0: the model never changes, so val CER never improves after the first check
    record = run([*BASE, "train.max_steps=20", "train.learning_rate=0", "eval.every_n_steps=2",
                  "eval.early_stopping_patience=2"], tmp_path)  # fmt: skip
    assert record["metrics"]["train/global_step"] == 6  # checks at 2 (best), 4 and 6 (two without progress)


def test_predict_writes_one_line_per_image(tmp_path):
    folder = tmp_path / "scans"
    shutil.copytree(REPO / "tests/assets/tiny_ocr", folder, ignore=shutil.ignore_patterns("*.json", "*.py"))
    images = sorted(folder.glob("*.png"))
    record = run(["task=predict", "model=tiny_qwen2_vl", f"predict.input={folder}", "eval.max_new_tokens=4",
                  "eval.batch_size=5"], tmp_path / "run")  # fmt: skip
    lines = Path(record["paths"]["results_txt"]).read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(p) for p in images]
    rows = [json.loads(line) for line in Path(record["paths"]["predictions"]).read_text().splitlines()]
    assert [r["image"] for r in rows] == [str(p) for p in images]
    assert all(isinstance(r["prediction"], str) for r in rows)
    assert record["metrics"]["predict/images"] == len(images)


def test_predict_on_a_missing_input_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="predict.input=.*nowhere"):
        run(["task=predict", "model=tiny_qwen2_vl", f"predict.input={tmp_path / 'nowhere'}"], tmp_path / "run")


def test_full_finetune_restores_the_best_weights_at_the_end(tmp_path):
    from safetensors.torch import load_file

    record = run([*BASE, "peft=none", "train.max_steps=6", "train.learning_rate=5e-3", "eval.every_n_steps=2"], tmp_path)
    best_step = record["metrics"]["val/best_step"]
    best, final = load_file(tmp_path / "best" / "model.safetensors"), load_file(tmp_path / "model" / "model.safetensors")
    same = all(best[k].equal(final[k]) for k in best)
    # the saved model is the best one, whether or not that was the last step
    assert same, f"saved model differs from the best (step {best_step})"
