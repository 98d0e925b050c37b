"""ocrft.provenance: what a results file, a report or task=serve says was evaluated.

Folders are shaped like what ocrft and PEFT write: a run folder (run.json, adapter/ with
ocrft_model.json), a PEFT adapter (adapter_config.json), a Trainer checkpoint
(trainer_state.json), a plain checkpoint (config.json).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ocrft.provenance import describe_model, public_url, serve_model_name, short_id


def model(path: str, **kw) -> OmegaConf:
    return OmegaConf.create({"family": "qwen2_vl", "path": path, "name": None, **kw})


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    """A finished ocrft training run whose best step (4) was kept."""
    run = tmp_path / "outputs" / "uk-lines-lora"
    (run / "adapter").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"task": "train", "metrics": {"train/global_step": 6, "val/best_step": 4}}))
    card = {"family": "qwen2_vl", "base_path": "/home/me/.cache/ocrft/base", "adapter": True,
            "source_model_path": "Qwen/Qwen2-VL-2B-Instruct"}  # fmt: skip
    (run / "adapter" / "ocrft_model.json").write_text(json.dumps(card))
    ckpt = run / "checkpoints" / "checkpoint-2"
    ckpt.mkdir(parents=True)
    (ckpt / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/abs/cache/base"}))
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    return run


def test_hub_id_and_schemes_are_kept_as_given():
    d = describe_model(model("Qwen/Qwen2-VL-2B-Instruct"))
    assert d == {"kind": "base", "base": "Qwen/Qwen2-VL-2B-Instruct", "id": "Qwen/Qwen2-VL-2B-Instruct",
                 "name": "Qwen/Qwen2-VL-2B-Instruct", "path": "Qwen/Qwen2-VL-2B-Instruct"}  # fmt: skip
    assert describe_model(model("asset:demo_base"))["name"] == "asset:demo_base"


def test_local_base_folder_is_named_by_its_folder(tmp_path):
    base = tmp_path / "weights" / "my-base"
    base.mkdir(parents=True)
    (base / "config.json").write_text("{}")
    d = describe_model(model(str(base)))
    assert d["kind"] == "base" and d["id"] == d["name"] == "my-base"
    assert str(tmp_path) not in d["name"]


def test_run_folder_names_run_base_adapter_and_kept_step(run_dir):
    d = describe_model(model(str(run_dir)))
    assert {k: d[k] for k in ("kind", "run", "base", "adapter", "step", "id", "name")} == {
        "kind": "run", "run": "uk-lines-lora", "base": "Qwen/Qwen2-VL-2B-Instruct", "adapter": "adapter",
        "step": 4, "id": "uk-lines-lora", "name": "uk-lines-lora step 4"}  # fmt: skip
    # the adapter folder inside the run says the same
    assert describe_model(model(str(run_dir / "adapter")))["name"] == "uk-lines-lora step 4"


def test_trainer_checkpoint_names_its_run_and_step(run_dir):
    d = describe_model(model(str(run_dir / "checkpoints" / "checkpoint-2")))
    assert (d["kind"], d["run"], d["step"], d["adapter"], d["base"]) == (
        "run", "uk-lines-lora", 2, "checkpoints/checkpoint-2", "base")
    assert d["name"] == "uk-lines-lora step 2"


def test_lone_adapter_names_itself_and_its_base(tmp_path):
    adapter = tmp_path / "my-adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "tiny:qwen2_vl"}))
    d = describe_model(model(str(adapter)))
    assert (d["kind"], d["adapter"], d["base"]) == ("adapter", "my-adapter", "tiny:qwen2_vl")
    assert d["name"] == "my-adapter (adapter on tiny:qwen2_vl)"


def test_before_and_after_training_differ(run_dir):
    cfg = model("tiny:qwen2_vl")
    before = describe_model(cfg, stage="before training")
    after = describe_model(cfg, run_dir=run_dir, step=6)
    assert before["name"] == "tiny:qwen2_vl (before training)" and before["kind"] == "base"
    assert after["name"] == "uk-lines-lora step 6"
    assert (after["kind"], after["base"], after["adapter"], after["step"]) == ("run", "tiny:qwen2_vl", "adapter", 6)
    assert "path" not in after  # model.path is the base here, not what was evaluated


def test_endpoint_keeps_no_credentials():
    cfg = model("endpoint", backend="endpoint", provider="vllm", base_url="http://user:pw@gpu-box:8000/v1?key=s3cret",
                remote_model="Qwen/Qwen2.5-VL-7B-Instruct")  # fmt: skip
    d = describe_model(cfg)
    assert d["endpoint"] == "http://gpu-box:8000/v1"
    assert d["name"] == "vllm:Qwen/Qwen2.5-VL-7B-Instruct" and d["remote_model"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert "s3cret" not in json.dumps(d) and "pw" not in json.dumps(d)
    # what the client actually used wins over the config (the provider's defaults filled in)
    assert describe_model(cfg, provider="openai", remote_model="gpt-4o")["name"] == "openai:gpt-4o"


def test_model_name_wins_as_display_name(run_dir):
    assert describe_model(model(str(run_dir), name="Lines v2"))["name"] == "Lines v2"
    assert describe_model(model("tiny:qwen2_vl", name="Base"), stage="before training")["name"] == "Base (before training)"


def test_serve_model_name_is_short(run_dir, tmp_path):
    def cfg(path, **serve):
        return OmegaConf.create({"model": {"family": "qwen2_vl", "path": path, "name": None},
                                 "serve": {"model_name": None, **serve}})  # fmt: skip

    assert serve_model_name(cfg(str(run_dir))) == "uk-lines-lora"
    assert serve_model_name(cfg(str(run_dir / "adapter"))) == "uk-lines-lora"
    assert serve_model_name(cfg("Qwen/Qwen2-VL-2B-Instruct")) == "Qwen/Qwen2-VL-2B-Instruct"  # a hub id as given
    assert serve_model_name(cfg(str(run_dir), model_name="lines")) == "lines"


@pytest.mark.parametrize(
    "given, short",
    [("Qwen/Qwen2-VL-2B-Instruct", "Qwen/Qwen2-VL-2B-Instruct"), ("tiny:qwen2_vl", "tiny:qwen2_vl"),
     ("/abs/path/to/base/", "base"), ("./rel/base", "base"), ("~/models/x", "x"), ("a/b/c", "c")],
)  # fmt: skip
def test_short_id(given, short):
    assert short_id(given) == short


def test_public_url():
    assert public_url("https://k:v@api.example.com:8443/v1?api_key=x#f") == "https://api.example.com:8443/v1"
    assert public_url(None) is None
