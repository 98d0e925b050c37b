"""Token budgets through the real runner: a too-long sample refused or skipped and counted by
task=train, and the pixel budget / image size the processor really uses as MLflow params."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocrft.config import ConfigError
from ocrft.data.record import DataError
from ocrft.models.loading import load_processor, resolve_model
from tests.helpers import REPO, run

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


def test_analyze_records_the_token_lengths_of_the_configured_model(tmp_path, data):
    record = run(["task=analyze", "model=tiny_gemma3", "train.max_length=200", *data], tmp_path / "run")
    tokens = json.loads((tmp_path / "run" / "analysis.json").read_text())["tokens"]
    processor = load_processor(resolve_model("gemma3", "tiny:gemma3"))
    assert tokens["model"] == {"family": "gemma3", "path": "tiny:gemma3", "image_size": 64} and tokens["max_length"] == 200
    train = tokens["splits"]["train"]
    assert train["over_max_length"] == 1 == record["metrics"]["analyze/train/over_max_length"]  # the long line
    assert train["image"]["min"] == train["image"]["max"] == processor.image_seq_length  # one square size
    assert train["total"]["min"] <= train["total"]["p50"] <= train["total"]["p90"] <= train["total"]["max"] > 200
    assert tokens["splits"]["val"]["over_max_length"] == 0
    assert "## Token lengths (prompt + image + target) for tiny:gemma3" in (tmp_path / "run" / "analysis.md").read_text()


def test_prepare_records_token_lengths_only_for_a_model_on_the_command_line(tmp_path, data):
    import os
    import subprocess
    import sys

    source = data[1].split("=", 1)[1]  # the train file: five lines, one far too long
    common = ["task=prepare", "data=json_ocr", f"data.path={source}", "tracking=none"]
    run([*common, f"data.output_dir={tmp_path / 'default'}"], tmp_path / "run")
    default = json.loads((tmp_path / "default" / "prepare_report.json").read_text())["token_lengths"]
    assert default["computed"] is False and "model=<name>" in default["reason"]

    cmd = [sys.executable, "-m", "ocrft", *common, "model=tiny_qwen2_vl", "train.max_length=200",
           f"data.output_dir={tmp_path / 'out'}", f"run_dir={tmp_path / 'cli'}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=180, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    tokens = json.loads((tmp_path / "out" / "prepare_report.json").read_text())["token_lengths"]
    assert tokens["computed"] is True and tokens["model"]["family"] == "qwen2_vl" and "max_pixels" in tokens["model"]
    assert sum((s or {}).get("over_max_length", 0) for s in tokens["splits"].values()) == 1
    assert sum(s["total"]["max"] > 200 for s in tokens["splits"].values() if s) == 1
