"""Token budgets through the real runner: a too-long sample refused or skipped and counted by
task=train, and the pixel budget / image size the processor really uses as MLflow params."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocrft.config import ConfigError
from ocrft.data.record import DataError
from ocrft.models.loading import load_processor, resolve_model
from tests.conftest import REPO, run

pytestmark = pytest.mark.integration

LINES = REPO / "tests" / "assets" / "tiny_ocr"
LONG = "a line far longer than the token budget " * 10


def _json_ocr(path: Path, rows: list[tuple[str, str]]) -> str:
    path.write_text(json.dumps([{"img_path": str(LINES / img), "ocr_results": text} for img, text in rows]))
    return str(path)


@pytest.fixture
def data(tmp_path) -> list[str]:
    """Four short train lines and one far too long; one val and one test line."""
    train = [(f"line_0{i}.png", t) for i, t in enumerate(["hello world", "the quick fox", "invoice 2024", "Kyiv"])]
    return [
        "data=json_ocr",
        f"data.train_file={_json_ocr(tmp_path / 'train.json', [*train, ('line_04.png', LONG)])}",
        f"data.val_file={_json_ocr(tmp_path / 'val.json', [('line_05.png', 'val line')])}",
        f"data.test_file={_json_ocr(tmp_path / 'test.json', [('line_06.png', 'test line')])}",
    ]


def _store(tmp_path: Path) -> list[str]:
    return ["tracking=mlflow", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", "tracking.experiment=budget"]


def _params(tmp_path: Path, record: dict) -> dict[str, str]:
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(record["mlflow_run_id"]).data.params


TRAIN = ["model=tiny_qwen2_vl", "train.max_length=200", "train.max_steps=1", "eval.before_after=false"]


def test_train_refuses_a_too_long_sample_before_loading_the_model(tmp_path, data):
    with pytest.raises(DataError, match=r"train.json: 1 of 5 train samples are longer than train.max_length=200") as err:
        run([*TRAIN, *data], tmp_path / "run")
    assert "'train:4' (" in str(err.value)  # the long line's id, with its token count
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "failed" and "data.on_error=skip" in record["error"]


def test_train_skips_and_counts_it_and_logs_the_pixel_budget(tmp_path, data):
    record = run([*TRAIN, *data, "data.on_error=skip", *_store(tmp_path)], tmp_path / "run")
    assert record["status"] == "finished"
    assert record["metrics"]["data/skipped_too_long"] == 1
    assert record["metrics"]["data/train_samples"] == 4
    size = load_processor(resolve_model("qwen2_vl", "tiny:qwen2_vl")).image_processor.size
    params = _params(tmp_path, record)
    assert params["model.min_pixels"] == str(size["shortest_edge"])
    assert params["model.max_pixels"] == str(size["longest_edge"])
    assert "model.image_size" not in params  # a dynamic-resolution family has no fixed size


@pytest.mark.parametrize("family", ["gemma3", "paligemma"])
def test_eval_logs_the_fixed_image_size(tmp_path, data, family):
    overrides = [f"model=tiny_{family}", "task=eval", "eval.max_new_tokens=2", *data, *_store(tmp_path)]
    record = run(overrides, tmp_path / "run")
    side = load_processor(resolve_model(family, f"tiny:{family}")).image_processor.size["height"]
    params = _params(tmp_path, record)
    assert params["model.image_size"] == str(side)
    assert "model.max_pixels" not in params and "model.min_pixels" not in params
    with pytest.raises(ConfigError, match=rf"model.image_size={side // 2}, but .* trained at {side}x{side}"):
        run([*overrides[:-3], f"model.image_size={side // 2}"], tmp_path / "other")
