"""task=soup: the saved soup's delta is the exact mean of its runs' LoRA deltas, a soup of an
adapter with itself reads exactly as the adapter does, mismatched adapters are refused
through the CLI, and a sweep's best trials are the ones averaged."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, run

pytestmark = [pytest.mark.slow, pytest.mark.integration]

# The shipped demo base a little trained (tests/integration/test_serve_merge_e2e.py): its text
# differs from image to image, so equal predictions mean something. Two seeds, two adapters.
TRAIN = ["model=demo_base", "prompt=ocr_line", "data=tiny_ocr", f"data.path={REPO / 'tests/assets/tiny_ocr/ocr.json'}",
         "train.max_steps=3", "train.learning_rate=5e-3", "train.per_device_train_batch_size=4",
         "eval.before_after=false", "eval.max_new_tokens=8", "train.save_steps=100"]  # fmt: skip
# the train split: ten lines (the test split has one)
EVAL = ["eval.split=train", "eval.batch_size=1"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("soup_runs")
    for seed in (1, 2):
        run([*TRAIN, f"seed={seed}"], root / f"seed{seed}")
    return [root / "seed1", root / "seed2"]


def _predictions(record: dict) -> list[str]:
    return [s["prediction"] for s in json.loads(Path(record["paths"]["results"]).read_text())["samples"]]


def _lora(folder: Path) -> tuple[dict, float]:
    """The adapter's tensors and its scaling lora_alpha / r."""
    from safetensors.torch import load_file

    config = json.loads((folder / "adapter_config.json").read_text())
    return load_file(folder / "adapter_model.safetensors"), config["lora_alpha"] / config["r"]


def test_soup_delta_is_the_mean_of_the_deltas(runs, tmp_path):
    """Module by module, the soup's s·B·A equals the mean of the runs' s_i·B_i·A_i (which
    averaging A and B separately would not)."""
    import torch

    record = run(["task=soup", f"soup.runs=[{runs[0]},{runs[1]}]"], tmp_path / "soup")
    assert record["status"] == "finished" and record["soup"]["runs"] == [str(r) for r in runs]
    soup, soup_scaling = _lora(Path(record["paths"]["model"]))
    ingredients = [_lora(r / "adapter") for r in runs]
    a_keys = [k for k in soup if ".lora_A." in k]
    assert a_keys and soup_scaling == 1.0
    for a_key in a_keys:
        b_key = a_key.replace(".lora_A.", ".lora_B.")
        delta = soup[b_key] @ soup[a_key] * soup_scaling
        mean = sum(t[b_key] @ t[a_key] * s for t, s in ingredients) / len(ingredients)
        assert torch.allclose(delta, mean, rtol=1e-5, atol=1e-7), a_key
        naive = (ingredients[0][0][b_key] + ingredients[1][0][b_key]) / 2 @ (
            (ingredients[0][0][a_key] + ingredients[1][0][a_key]) / 2) * ingredients[0][1]  # fmt: skip
        assert not torch.allclose(naive, mean, rtol=1e-3, atol=1e-6), a_key  # the test can tell them apart
    assert record["metrics"]["eval/num_samples"] == 1  # scored on the first run's data: tiny_ocr's test split


def test_soup_of_an_adapter_with_itself_reads_as_the_adapter(runs, tmp_path):
    """Through the CLI: the first run's model, data and prompt, with eval.* given on the command line."""
    proc = _ocrft(f"soup.runs=[{runs[0]},{runs[0]}]", *EVAL, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    soup = json.loads((tmp_path / "run" / "run.json").read_text())
    alone = run(["task=eval", *TRAIN, *EVAL, f"model.path={runs[0]}"], tmp_path / "eval")
    assert len(set(_predictions(alone))) > 5  # text that depends on the image
    assert _predictions(soup) == _predictions(alone)
    assert soup["metrics"]["eval/cer"] == alone["metrics"]["eval/cer"]
    # the soup's folder is a run folder like any other: task=eval reads it through model.path
    again = run(["task=eval", *TRAIN, *EVAL, f"model.path={tmp_path / 'run'}"], tmp_path / "again")
    assert _predictions(again) == _predictions(alone)


def _ocrft(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    cmd = [sys.executable, "-m", "ocrft", "task=soup", "tracking=none", f"run_dir={cwd / 'run'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


@pytest.mark.parametrize("differs", ["target modules", "base model"])
def test_mismatched_adapters_are_refused_naming_both_runs(runs, tmp_path, differs):
    other = tmp_path / "other"
    shutil.copytree(runs[1], other)
    if differs == "target modules":
        path = other / "adapter" / "adapter_config.json"
        config = json.loads(path.read_text())
        path.write_text(json.dumps({**config, "target_modules": ["q_proj", "v_proj"]}))
    else:  # another checkpoint of the same family
        path = other / "adapter" / "ocrft_model.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "base_path": "tiny:qwen2_vl"}))
    proc = _ocrft(f"soup.runs=[{runs[0]},{other}]", cwd=tmp_path)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ocrft: error:")]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert errors[0].startswith("ocrft: error: soup.runs:")
    assert str(runs[0]) in errors[0] and str(other) in errors[0] and differs in errors[0]
    assert not (tmp_path / "run" / "adapter").exists()  # refused before any weights were read


def _trial(sweep: Path, number: int, source: Path, cer: float) -> Path:
    """A finished trial of a sweep: a run folder holding ``source``'s adapter, scoring ``cer``."""
    folder = sweep / str(number)
    shutil.copytree(source, folder)
    record = json.loads((folder / "run.json").read_text())
    record["metrics"]["val/cer"] = cer
    record["paths"]["run_dir"] = str(folder)
    (folder / "run.json").write_text(json.dumps(record))
    return folder


def test_soup_of_a_sweep_takes_its_top_k_trials(runs, tmp_path):
    sweep = tmp_path / "multirun"
    trials = [_trial(sweep, i, runs[i % 2], cer) for i, cer in enumerate([0.5, 0.2, 0.9, 0.3, 0.4])]
    pruned = _trial(sweep, 5, runs[0], 0.1)
    record = json.loads((pruned / "run.json").read_text())
    (pruned / "run.json").write_text(json.dumps({**record, "status": "pruned"}))  # not finished: left out
    # the second best trial trained the vision tower too (peft.freeze_vision=false): other
    # target modules, which the best trial's adapter cannot be averaged with
    path = trials[3] / "adapter" / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "target_modules": ["q_proj", "qkv"]}))
    # what the Optuna sweeper writes in the sweep's folder: the objective and its direction
    study = {"metric": "val/cer", "direction": "minimize"}
    (sweep / "run.json").write_text(json.dumps({"task": "sweep", "status": "finished", "study": study}))
    soup = run(["task=soup", f"soup.sweep={sweep}", "soup.top_k=3"], tmp_path / "soup")
    # cer 0.2, then 0.4 and 0.5: the best three that fit with the best trial, best first
    assert soup["soup"]["runs"] == [str(trials[1]), str(trials[4]), str(trials[0])]
    assert soup["status"] == "finished" and soup["metrics"]["eval/num_samples"] == 1


def test_soup_of_a_real_seed_multirun(tmp_path):
    """Three seeds through Hydra's basic sweeper (no study: ranked by val/cer of each job's
    run.json), souped from the multirun folder by the command line."""
    train = [a for a in TRAIN if not a.startswith("train.max_steps")]
    sweep = tmp_path / "multirun"
    proc = subprocess.run([sys.executable, "-m", "ocrft", "--multirun", *train, "train.max_steps=2",
                           "eval.every_n_steps=2", "eval.val_subset=2", "tracking=none", "seed=1,2,3",
                           f"hydra.sweep.dir={sweep}"], capture_output=True, text=True, cwd=tmp_path, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    cers = {str(d): json.loads((d / "run.json").read_text())["metrics"]["val/cer"] for d in sorted(sweep.glob("[0-9]"))}
    assert len(cers) == 3
    soup = _ocrft(f"soup.sweep={sweep}", "soup.top_k=2", cwd=tmp_path)
    assert soup.returncode == 0, soup.stderr[-3000:]
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    best_two = sorted(cers, key=lambda run: (cers[run], run))[:2]  # ties in job order
    assert record["soup"]["runs"] == best_two and record["status"] == "finished"
