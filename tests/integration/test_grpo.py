"""train=grpo end to end on tiny models, through the same path as the CLI: a GRPO step on every
family (LoRA and QLoRA), GRPO continuing an SFT run's adapter with its rewards in MLflow, and
a run SIGKILLed after a checkpoint resuming to the adapter of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import FAMILY_NAMES, compose, run

pytestmark = [pytest.mark.slow, pytest.mark.integration]

TINY = ["data=tiny_ocr", "data.train_ratio=0.67", "data.val_ratio=0.16", "eval.max_new_tokens=8", "eval.before_after=false",
        "peft.r=8", "peft.lora_alpha=16", "peft.lora_dropout=0", "train.logging_steps=1"]  # fmt: skip
# one step: 1 line read 4 times
GRPO_STEP = ["train=grpo", "train.max_steps=1", "train.per_device_train_batch_size=4", "train.num_generations=4"]
REWARD_KEYS = {f"train/{kind}/{name}" for kind in ("reward", "reward_std") for name in ("cer", "eos", "loop")}


def adapter(folder: Path) -> dict:
    """The LoRA weights saved in ``folder`` (a run's adapter/, or a checkpoint-N)."""
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


@pytest.mark.parametrize("quant", ["none", "4bit"])
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_one_grpo_step_on_each_family(family, quant, tmp_path):
    record = run([f"model=tiny_{family}", f"quant={quant}", *TINY, *GRPO_STEP], tmp_path)
    m = record["metrics"]
    assert record["status"] == "finished" and m["train/global_step"] == 1
    assert REWARD_KEYS | {"train/reward", "train/reward_std"} <= set(m)
    assert (Path(record["paths"]["model"]) / "adapter_model.safetensors").exists()


# the demo's task, small: the shipped OCR base reads serif lines (it learned sans-serif ones)
DEMO = ["model=demo_base", "data=synthetic", "prompt=ocr_line", "data.fonts=[DejaVuSerif]", "data.min_chars=3",
        "data.max_chars=6", "data.num_train=16", "data.num_val=4", "data.num_test=4", "eval.max_new_tokens=12",
        "eval.before_after=false", "peft.lora_dropout=0", "train.logging_steps=1", "train.save_steps=2"]  # fmt: skip


def test_grpo_from_an_sft_run_continues_its_adapter_and_logs_rewards(tmp_path):
    from mlflow import MlflowClient

    from ocrft.__main__ import resolve_task
    from ocrft.runner import run_task

    cache = f"data.cache_dir={tmp_path / 'cache'}"
    run([*DEMO, cache, "train.max_steps=3", "train.learning_rate=2e-3", "train.per_device_train_batch_size=4"],
        tmp_path / "sft")  # fmt: skip
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = compose([*DEMO, cache, "model=demo_sft", f"model.path={tmp_path / 'sft'}", "train=grpo", "train.max_steps=2",
                   "train.per_device_train_batch_size=8", "train.learning_rate=1e-3", "train.beta=0.01",
                   "train.completions_table_steps=2", "eval.every_n_steps=1",
                   "eval.val_subset=4", f"tracking.uri={store}", "tracking.experiment=grpo",
                   f"run_dir={tmp_path / 'grpo'}"])  # fmt: skip
    run_task(cfg, resolve_task(cfg.task))
    record = json.loads((tmp_path / "grpo" / "run.json").read_text())
    m = record["metrics"]
    assert record["status"] == "finished" and m["train/global_step"] == 2
    assert 0 <= m["train/reward/cer"] <= 1 and m["train/reward/eos"] in (0.0, 0.25, 0.5, 0.75, 1.0) and "val/cer" in m
    # MLflow has each logging step's rewards, and validation's CER on generated text
    client = MlflowClient(tracking_uri=store)
    for key in ("train/reward", "train/reward/cer", "train/reward_std/cer", "train/reward/loop"):
        assert [h.step for h in client.get_metric_history(record["mlflow_run_id"], key)] == [1, 2], key
    # step 2's 8 sampled reads as a table: the line, its target, the read and each reward
    table = Path(client.download_artifacts(record["mlflow_run_id"], "grpo_reads/step_000002.json", str(tmp_path)))
    assert [a.path for a in client.list_artifacts(record["mlflow_run_id"], "grpo_reads")] == ["grpo_reads/step_000002.json"]
    frame = json.loads(table.read_text())
    assert frame["columns"] == ["step", "id", "target", "read", "reward/cer", "reward/eos", "reward/loop"]
    assert len(frame["data"]) == 8 and {row[0] for row in frame["data"]} == {2}
    from ocrft.evaluation.metrics import score_sample

    for _, _, target, read, cer, _, _ in frame["data"]:  # the reward is evaluation's CER of that read
        assert cer == pytest.approx(max(0.0, 1 - score_sample(read, target)["cer"]))
    # the SFT run's weights are validated too (step 0): GRPO keeps them if it only makes them worse
    assert [h.step for h in client.get_metric_history(record["mlflow_run_id"], "val/cer")] == [0, 1, 2]
    # beta > 0 kept a frozen copy of the SFT adapter as the reference; the run saves the trained one only
    assert not (tmp_path / "grpo" / "adapter" / "ref").exists()
    # the SFT adapter went on training: every weight moved a little, none was drawn afresh
    sft, trained = adapter(tmp_path / "sft" / "adapter"), adapter(tmp_path / "grpo" / "checkpoints" / "checkpoint-2")
    assert sft.keys() == trained.keys()
    assert any(not (sft[k] == trained[k]).all() for k in sft)
    for k in sft:  # 2 Adam steps of 1e-3 move a weight by at most ~2e-3
        assert (sft[k] - trained[k]).abs().max() < 5e-3, k
    # the run keeps the weights that validated best, the SFT run's own when GRPO did not beat them
    kept, best = adapter(tmp_path / "grpo" / "adapter"), adapter(tmp_path / "grpo" / "best")
    assert all((kept[k] == best[k]).all() for k in kept)
    if m["val/best_step"] == 0:
        assert all((kept[k] == sft[k]).all() for k in kept)


def ocrft_cmd(run_dir: Path, cache: Path) -> list[str]:
    return [sys.executable, "-m", "ocrft", "tracking=none", f"run_dir={run_dir}", *DEMO, f"data.cache_dir={cache}",
            "train=grpo", "train.max_steps=4", "train.save_steps=2", "train.per_device_train_batch_size=4",
            "train.num_generations=4", "train.learning_rate=1e-3"]  # fmt: skip


def env() -> dict[str, str]:
    # the same threads in every run: sampled tokens must not depend on how sums were split
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_grpo_killed_after_a_checkpoint_resumes_to_the_same_adapter(tmp_path):
    cache = tmp_path / "cache"
    subprocess.run(ocrft_cmd(tmp_path / "whole", cache), env=env(), check=True, capture_output=True, timeout=400)
    killed = tmp_path / "killed"
    ready = killed / "checkpoints" / "checkpoint-2" / "trainer_state.json"
    with (tmp_path / "killed.log").open("w") as out:
        child = subprocess.Popen(ocrft_cmd(killed, cache), env=env(), stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 400
            while not ready.exists():
                assert child.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
                assert time.monotonic() < deadline
                time.sleep(0.01)
            child.send_signal(signal.SIGKILL)
        finally:
            child.wait(30)
    assert not (killed / "adapter").exists()
    resumed = subprocess.run(ocrft_cmd(killed, cache), env=env(), capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {killed / 'checkpoints' / 'checkpoint-2'}" in resumed.stdout + resumed.stderr
    record = json.loads((killed / "run.json").read_text())
    assert record["status"] == "finished" and record["metrics"]["train/global_step"] == 4
    whole, again = adapter(tmp_path / "whole" / "adapter"), adapter(killed / "adapter")
    assert whole.keys() == again.keys()
    at_kill = adapter(killed / "checkpoints" / "checkpoint-2")
    assert any(not (at_kill[k] == whole[k]).all() for k in whole)  # steps 3-4 trained: the comparison tells
    assert all((whole[k] == again[k]).all() for k in whole), "the resumed run trained a different adapter"


def test_grpo_under_torchrun_with_two_gloo_processes(tmp_path):
    from tests.helpers import launch

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    run_dir = tmp_path / "run"
    # 2 processes x 4 completions: each step reads 2 lines 4 times, each rank scores its half
    out = launch([*torchrun, "-m", "ocrft", "tracking=none", f"run_dir={run_dir}", *DEMO,
                  f"data.cache_dir={tmp_path / 'cache'}", "train=grpo", "train.max_steps=4",
                  "train.per_device_train_batch_size=4", "train.num_generations=4", "train.learning_rate=1e-3",
                  "eval.every_n_steps=2", "eval.val_subset=2"], cwd=tmp_path)  # fmt: skip
    assert "effective batch size 8 = 4 per device x 1 accumulation steps x 2 processes" in out
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "finished" and record["metrics"]["train/global_step"] == 4
    assert REWARD_KEYS <= set(record["metrics"]) and "val/cer" in record["metrics"]
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= {p.name for p in (run_dir / "checkpoints" / "checkpoint-4").iterdir()}
    trained = adapter(run_dir / "checkpoints" / "checkpoint-4")
    assert any(t.abs().sum() > 0 for k, t in trained.items() if "lora_B" in k), "LoRA B starts at zero: no step learned"


@pytest.mark.parametrize("family", ["paligemma", "gemma3", "qwen2_vl"])
def test_grpo_scores_a_read_as_the_sft_forward_scores_that_target(family, tmp_path):
    """The log-probabilities GRPO takes of a completion equal those the SFT collator's batch gives
    the same tokens as a target. PaliGemma is the case: TRL types completion tokens as prefix
    (token_type_ids 0, attended both ways); ocrft's trainer types them as its targets."""
    import torch

    from ocrft.data.images import open_image
    from ocrft.data.loading import load_data
    from ocrft.models.bundle import load_bundle
    from ocrft.models.collate import Collator, Sample
    from ocrft.tracking import NullTracker
    from ocrft.training.adapters import apply_peft
    from ocrft.training.datasets import to_train_dataset
    from ocrft.training.grpo import build_grpo_trainer

    cfg = compose([f"model=tiny_{family}", *TINY, *GRPO_STEP, f"run_dir={tmp_path}"])
    bundle = load_bundle(cfg.model)
    model = apply_peft(bundle.model, cfg.peft, bundle.family, quantized=False)
    records = load_data(cfg.data, tmp_path).splits["train"]
    collator = Collator(bundle.processor, bundle.family)
    trainer = build_grpo_trainer(model, bundle.processor, bundle.family, to_train_dataset(records, cfg.prompt.text),
                                 cfg=cfg, callbacks=[], end_ids=[bundle.processor.tokenizer.eos_token_id],
                                 output_dir=tmp_path / "checkpoints", tracker=NullTracker())  # fmt: skip
    sample = Sample(image=open_image(records[0].image), prompt=cfg.prompt.text, target=records[0].text)
    batch = collator([sample])
    n = int((batch["labels"] != -100).sum())  # the target's tokens, end token included
    model.eval()
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0, -n - 1 : -1]
        sft = torch.log_softmax(logits.float(), -1).gather(-1, batch["input_ids"][0, -n:, None])[:, 0]
        # as TRL calls it: the prompt's own per-token fields, extended with 0 over the completion
        per_token = {k: torch.cat([v[:, :-n], torch.zeros_like(v[:, -n:])], 1)
                     for k, v in batch.items() if k in ("token_type_ids", "mm_token_type_ids")}  # fmt: skip
        images = {k: v for k, v in batch.items() if k in ("pixel_values", "image_grid_thw")}
        grpo, _, _ = trainer._get_per_token_logps_and_entropies(model, batch["input_ids"], batch["attention_mask"], n,
                                                                num_images=[1], **images, **per_token)  # fmt: skip
    torch.testing.assert_close(grpo[0], sft, rtol=1e-4, atol=1e-4)


def test_grpo_stops_early_as_sft_does(tmp_path):
    # a constant metric never improves: the second validation (step 4) stops training
    record = run(["model=tiny_qwen2_vl", *TINY, *GRPO_STEP, "train.max_steps=8", "eval.every_n_steps=2",
                  "eval.val_subset=2", "eval.metric=num_samples", "eval.early_stopping_patience=1"], tmp_path)  # fmt: skip
    m = record["metrics"]
    assert record["status"] == "finished" and m["train/global_step"] == 4 and m["val/best_step"] == 2


def test_a_grpo_trial_is_pruned_as_an_sft_trial_is(tmp_path):
    # A sweep's trial: a study whose finished trial read perfectly at step 2, so the median
    # pruner stops a trial that reports any CER above 0 there (the tiny model reads nothing
    # right), and the trial's identity as the sweeper passes it.
    import optuna

    from ocrft import search

    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(storage=search.open_storage(url), study_name="grpo")
    study.set_user_attr(search.PRUNER_ATTR, {"type": "median", "n_startup_trials": 1, "n_warmup_steps": 0})
    done = study.ask()
    done.report(0.0, 2)
    study.tell(done, 0.0)
    number = study.ask().number
    record = run(["model=tiny_qwen2_vl", *TINY, *GRPO_STEP, "train.max_steps=6", "eval.every_n_steps=2",
                  "eval.val_subset=2", f"trial.storage={url}", "trial.study_name=grpo", f"trial.trial_number={number}"],
                 tmp_path / "run")  # fmt: skip
    assert record["status"] == "pruned" and record["metrics"]["train/global_step"] == 2
    reported = optuna.load_study(study_name="grpo", storage=url).trials[number].intermediate_values
    assert list(reported) == [2] and reported[2] > 0
