"""Generation-based validation during training, early stopping, and task=predict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import REPO, run

pytestmark = [pytest.mark.slow, pytest.mark.integration]

BASE = ["model=tiny_qwen2_vl", "data=tiny_ocr", "data.train_ratio=0.5", "data.val_ratio=0.34",
        "train.per_device_train_batch_size=4", "train.save_steps=100", "eval.max_new_tokens=6",
        "eval.before_after=false"]  # fmt: skip


def _validated_run(tmp_path: Path, overrides: list[str]) -> tuple[dict, list[tuple[int, float]]]:
    """Train with validation every 2 steps and a checkpoint at each validation (the weights
    validated at step N are checkpoint-N's: the Trainer saves after the step-end callbacks);
    returns run.json and the val/cer history as MLflow recorded it, on a real SQLite store."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    record = run([*BASE, *overrides, "eval.every_n_steps=2", "train.save_steps=2", "train.save_total_limit=10",
                  "tracking=mlflow", f"tracking.uri={uri}"], tmp_path / "run")  # fmt: skip
    history = MlflowClient(uri).get_metric_history(record["mlflow_run_id"], "val/cer")
    return record, sorted((m.step, m.value) for m in history)


def _same_weights(a: Path, b: Path) -> bool:
    from safetensors.torch import load_file

    x, y = load_file(a), load_file(b)
    return x.keys() == y.keys() and all(x[k].equal(y[k]) for k in x)


def _assert_saved_weights_are_the_best_validated(record: dict, history: list, run_dir: Path, weights: str) -> None:
    steps = [s for s, _ in history]
    assert steps == [2, 4, 6]
    best_step = min(history, key=lambda sv: sv[1])[0]  # the first of equals: a later tie is no improvement
    assert best_step != steps[-1], f"this run must not validate best at its last step: {history}"
    assert record["metrics"]["val/best_step"] == best_step
    assert record["metrics"]["val/cer"] == min(v for _, v in history)
    checkpoints = run_dir / "checkpoints"
    last = checkpoints / f"checkpoint-{steps[-1]}" / weights
    best = checkpoints / f"checkpoint-{best_step}" / weights
    assert not _same_weights(best, last)  # training went on after the best step
    saved = Path(record["paths"]["model"]) / weights
    assert _same_weights(saved, best), f"saved weights are not step {best_step}'s (val/cer history {history})"


def test_validation_logs_val_cer_and_keeps_the_best_model(tmp_path):
    # lr 5e-3: val/cer is best at step 2 and worse at 4 and 6 (the tiny model overshoots)
    record, history = _validated_run(tmp_path, ["train.max_steps=6", "train.learning_rate=5e-3"])
    _assert_saved_weights_are_the_best_validated(record, history, tmp_path / "run", "adapter_model.safetensors")
    best = tmp_path / "run" / "best"
    assert _same_weights(best / "adapter_model.safetensors", Path(record["paths"]["model"]) / "adapter_model.safetensors")
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
    # lr 2e-2: val/cer does not improve after step 2, while the weights keep changing
    record, history = _validated_run(tmp_path, ["peft=none", "train.max_steps=6", "train.learning_rate=2e-2"])
    _assert_saved_weights_are_the_best_validated(record, history, tmp_path / "run", "model.safetensors")
