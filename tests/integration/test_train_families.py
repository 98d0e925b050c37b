"""Training every family end to end on tiny models through the same path as the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import CONF, FAMILY_NAMES, run

pytestmark = [pytest.mark.slow, pytest.mark.integration]

# Overfit 8 tiny lines: a few steps at a high learning rate must lower the loss.
QUICK = [
    "data=tiny_ocr",
    "data.train_ratio=0.67",
    "data.val_ratio=0.16",
    "train.max_steps=8",
    "train.learning_rate=5e-3",
    "train.warmup_steps=0",
    "train.lr_scheduler_type=constant",
    "train.per_device_train_batch_size=4",
    "train.logging_steps=1",
    "train.save_steps=100",
    "eval.max_new_tokens=8",
    "eval.before_after=false",
    "peft.r=8",
    "peft.lora_alpha=16",
    "peft.lora_dropout=0",
]


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_lora_steps_lower_the_loss_and_the_adapter_reloads_identically(family, tmp_path):
    record = run([f"model=tiny_{family}", *QUICK, "eval.before_after=true"], tmp_path / "train")
    m = record["metrics"]
    assert record["status"] == "finished"
    assert m["train/global_step"] == 8
    assert m["train/last_loss"] < m["train/first_loss"]
    adapter = Path(record["paths"]["model"])
    assert (adapter / "adapter_model.safetensors").exists() and (adapter / "ocrft_model.json").exists()
    # The saved adapter, reloaded from the run folder, generates exactly what the in-memory model did.
    evaluated = run(["task=eval", f"model=tiny_{family}", f"model.path={tmp_path / 'train'}", *QUICK], tmp_path / "eval")
    before = json.loads(Path(record["paths"]["results"]).read_text())["samples"]
    after = json.loads(Path(evaluated["paths"]["results"]).read_text())["samples"]
    assert [s["prediction"] for s in after] == [s["prediction"] for s in before]
    assert evaluated["metrics"]["eval/cer"] == pytest.approx(m["eval/cer"])


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_qlora_4bit_steps_lower_the_loss(family, tmp_path):
    record = run([f"model=tiny_{family}", "quant=4bit", *QUICK], tmp_path)
    m = record["metrics"]
    assert m["train/last_loss"] < m["train/first_loss"]
    assert (Path(record["paths"]["model"]) / "adapter_model.safetensors").exists()


def test_dora_and_full_finetuning_train(tmp_path):
    for method in ("dora", "none"):
        record = run(["model=tiny_qwen2_vl", f"peft={method}", *QUICK], tmp_path / method)
        assert record["metrics"]["train/last_loss"] < record["metrics"]["train/first_loss"]
    assert (tmp_path / "none" / "model" / "model.safetensors").exists()


RECIPES = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml") if not p.stem.startswith("demo"))


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_runs_with_its_family_tiny_model(recipe, tmp_path):
    from tests.helpers import compose

    family = compose([f"+experiment={recipe}"]).model.family
    quick = [o for o in QUICK if not o.startswith(("train.max_steps", "data"))]
    data = ["data.num_train=8", "data.num_val=2", "data.num_test=2"] if "invoice" in recipe else ["data=tiny_ocr"]
    record = run(
        # the tiny twin has its own image size: the recipe's real one (448, 896) would be refused
        [f"+experiment={recipe}", f"model.path=tiny:{family}", "model.image_size=null", *data, *quick, "train.max_steps=2",
         "train.gradient_accumulation_steps=1", "train.max_length=4096", "eval.every_n_steps=0"],
        tmp_path,
    )  # fmt: skip
    assert record["status"] == "finished" and record["metrics"]["train/global_step"] == 2
