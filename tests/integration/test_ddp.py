"""Multi-process training on CPU (gloo): torchrun and accelerate launch over `python -m ocrft`.

Two processes with batch 2 must train like one process with batch 4: the same optimizer
steps, one run folder (rank 0's, though each rank composed its own ``run_dir``), one
run.json written by rank 0, a loadable adapter. Rank 0 validates while the other rank
waits for its decision, so early stopping ends both ranks at the same step.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, launch, run
from tests.servers import free_port

# A tiny run: 4 optimizer steps of 4 samples, validation every 2 steps on 2 val images.
TINY = [
    "model=tiny_qwen2_vl", "train.max_steps=4", "data.num_train=16", "data.num_val=2", "data.num_test=2",
    "eval.every_n_steps=2", "eval.val_subset=2", "eval.max_new_tokens=4", "eval.limit=1", "train.logging_steps=1",
]  # fmt: skip


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


@pytest.mark.slow
@pytest.mark.integration
def test_torchrun_two_processes_train_like_one_with_the_same_effective_batch(tmp_path):
    single = run([*TINY, "train.per_device_train_batch_size=4", "train.save_steps=1000"], tmp_path / "single")

    # Each rank resolves its own run_dir, here on purpose .../0 and .../1 (a timestamp does
    # the same when ranks start a second apart): they must agree on rank 0's.
    per_rank_dir = "run_dir=" + str(tmp_path / "ddp" / "${oc.env:RANK,0}")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = launch([*torchrun, "-m", "ocrft", f"tracking.uri={store}", "tracking.experiment=ddp", *TINY,
                  "train.per_device_train_batch_size=2", "train.save_steps=4", per_rank_dir], cwd=tmp_path)  # fmt: skip
    assert "effective batch size 4 = 2 per device x 1 accumulation steps x 2 processes" in out

    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["0"], "one run folder for both ranks"
    run_dir = tmp_path / "ddp" / "0"
    ddp = record(run_dir)
    assert ddp["status"] == "finished" and single["status"] == "finished"
    for key in ("train/global_step", "train/effective_batch_size"):
        assert ddp["metrics"][key] == single["metrics"][key], key
    assert ddp["metrics"]["train/global_step"] == 4
    # Only rank 0 validates and evaluates: its record is the one on disk.
    assert {"val/cer", "eval/cer"} <= set(ddp["metrics"])
    # One MLflow run, opened by rank 0, with the effective batch of all ranks together.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store)
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("ddp").experiment_id])
    assert mlflow_run.info.run_id == ddp["mlflow_run_id"]
    assert mlflow_run.data.metrics["train/effective_batch_size"] == 4
    assert mlflow_run.data.params["train.per_device_train_batch_size"] == "2"
    # Both ranks checkpointed into the one folder (the Trainer saves an RNG state per rank).
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= {p.name for p in (run_dir / "checkpoints" / "checkpoint-4").iterdir()}

    from ocrft.models.loading import load_model, resolve_model

    model = load_model(resolve_model("qwen2_vl", str(run_dir)))
    lora_b = [p for name, p in model.named_parameters() if "lora_B" in name]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b), "the adapter was trained (LoRA B starts at zero)"


@pytest.mark.slow
@pytest.mark.integration
def test_the_docs_torchrun_example_runs_on_an_empty_cache_and_builds_the_tiny_model_once(tmp_path):
    # docs/scale.md's CPU example on a fresh machine. Both ranks need the tiny checkpoint; it
    # used to be built by both, and rank 1's processor-only folder (save_pretrained writes
    # weights on rank 0 only) could land in the cache and break every later run.
    from ocrft.cache_entry import entry_problem
    from ocrft.models.loading import TINY_FILES

    cache = tmp_path / "cache"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    for attempt in ("run", "again"):  # the second run reuses what the first one cached
        out = launch([*torchrun, "-m", "ocrft", "tracking=none", "train.max_steps=4", "data.num_train=16",
                      f"run_dir={tmp_path / attempt}"], cwd=tmp_path, timeout=300, env={"OCRFT_CACHE": str(cache)})  # fmt: skip
        result = record(tmp_path / attempt)
        assert result["status"] == "finished" and result["metrics"]["train/global_step"] == 4
        # "... checkpoint in": the other rank's "waiting for another process building ..." line is no build
        assert out.count("building tiny qwen2_vl checkpoint in ") == (1 if attempt == "run" else 0), out[-6000:]
    assert entry_problem(cache / "tiny" / "qwen2_vl", TINY_FILES) is None


@pytest.mark.slow
@pytest.mark.integration
def test_early_stopping_on_rank_0_stops_every_rank_under_accelerate_launch(tmp_path):
    # A constant metric never improves: the second validation (step 4) stops training. Were
    # rank 1 not told, it would train on alone into a collective rank 0 never joins.
    config = REPO / "conf" / "accelerate" / "ddp.yaml"
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
                  "--num_processes=2", f"--main_process_port={free_port()}"]  # fmt: skip
    launch([*accelerate, "-m", "ocrft", "tracking=none", *TINY, "train.max_steps=8", "eval.before_after=false",
            "eval.metric=num_samples", "eval.early_stopping_patience=1", "train.per_device_train_batch_size=2",
            f"run_dir={tmp_path / 'run'}"], cwd=tmp_path)  # fmt: skip
    result = record(tmp_path / "run")
    assert result["status"] == "finished"
    assert result["metrics"]["train/global_step"] == 4
    assert result["metrics"]["val/best_step"] == 2
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()


def accelerate_env(config: Path) -> dict[str, str]:
    """The environment `accelerate launch --config_file config` gives each process."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    args, defaults, mixed_precision_from_config = _validate_launch_command(
        launch_command_parser().parse_args(["--config_file", str(config), "-m", "ocrft"])
    )
    if args.use_deepspeed:
        fields = list(defaults.deepspeed_config) + (["mixed_precision"] if mixed_precision_from_config else [])
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        return prepare_deepspeed_cmd_env(args)[1]
    return prepare_multi_gpu_env(args)


@pytest.mark.parametrize(
    "name, refusal",
    [("ddp", None), ("deepspeed_zero2", None), ("fsdp", None), ("deepspeed_zero3", "ZeRO-3 is not supported"),
     ("fsdp_version_1", "FSDP version 1 is not supported")],
)  # fmt: skip
def test_accelerate_configs_load_and_unsupported_sharding_is_refused(name, refusal, monkeypatch):
    from ocrft.models.sharding import check_supported_sharding
    from ocrft.config import ConfigError

    env = accelerate_env(REPO / "conf" / "accelerate" / f"{name.replace('_version_1', '')}.yaml")
    for key, value in env.items():
        if key.startswith(("ACCELERATE_", "FSDP_")):
            monkeypatch.setenv(key, value)
    if name == "fsdp":
        assert env["FSDP_VERSION"] == "2"
    if name == "fsdp_version_1":
        monkeypatch.setenv("FSDP_VERSION", "1")
    if refusal is None:
        check_supported_sharding()
    else:
        with pytest.raises(ConfigError, match=refusal):
            check_supported_sharding()


def test_every_accelerate_config_is_tested():
    assert sorted(p.stem for p in (REPO / "conf" / "accelerate").glob("*.yaml")) == [
        "ddp", "deepspeed_zero2", "deepspeed_zero3", "fsdp"
    ]  # fmt: skip


def test_fsdp_with_quantized_weights_is_refused_naming_the_keys(monkeypatch):
    from ocrft.models.sharding import check_supported_sharding
    from ocrft.config import ConfigError

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "2")
    check_supported_sharding(quantized=False)
    with pytest.raises(ConfigError, match="quant.load_in_4bit"):
        check_supported_sharding(quantized=True)
