"""A trained tiny model served by task=serve answers over HTTP (through model=endpoint and
through the openai client) exactly the text task=eval wrote for each image; merged weights
generate what base + adapter generate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import FAMILY_NAMES, compose, run

pytestmark = [pytest.mark.slow, pytest.mark.integration]

TRAIN = ["data=tiny_ocr", "train.max_steps=3", "train.learning_rate=5e-3", "train.per_device_train_batch_size=4",
         "eval.before_after=false", "eval.max_new_tokens=8", "train.save_steps=100"]  # fmt: skip


# The shipped demo base (a tiny model that reads short lines) with a little training: unlike
# the random tiny_* models, its text differs from image to image, so equal text means something.
SERVED = ["model=demo_base", "prompt=ocr_line"]


@pytest.fixture(scope="module")
def train_overrides() -> list[str]:
    """The run `trained` and `served` (tests/fixtures/runs.py) hold: the demo base, a little trained."""
    return [*SERVED, *TRAIN]


# batch 1 / one worker on both sides: the same forward passes, so identical greedy text;
# the train split: ten lines (the test split has one)
LOCAL_EVAL = ["task=eval", *SERVED, "data=tiny_ocr", "eval.split=train", "eval.max_new_tokens=8", "eval.batch_size=1"]


@pytest.fixture(scope="module")
def local_eval(trained, tmp_path_factory) -> dict:
    """run.json of task=eval on the trained adapter, in this process (no server involved)."""
    return run([*LOCAL_EVAL, f"model.path={trained}"], tmp_path_factory.mktemp("local"))


def _samples(record: dict) -> list[dict]:
    return json.loads(Path(record["paths"]["results"]).read_text())["samples"]


def test_served_model_scores_like_local_eval(local_eval, served, tmp_path):
    remote = run([*LOCAL_EVAL, "model=endpoint", "model.provider=ocrft", f"model.base_url={served}", "eval.workers=1",
                  "model.max_tokens=8"], tmp_path / "remote")  # fmt: skip
    local_samples, remote_samples = _samples(local_eval), _samples(remote)
    assert [s["image_path"] for s in remote_samples] == [s["image_path"] for s in local_samples]
    assert len({s["prediction"] for s in local_samples}) > 5  # text that depends on the image
    assert [s["prediction"] for s in remote_samples] == [s["prediction"] for s in local_samples]
    for key in ("eval/cer", "eval/wer", "eval/char_f1", "eval/bleu", "eval/exact_match"):
        assert remote["metrics"][key] == pytest.approx(local_eval["metrics"][key]), key
    assert remote["metrics"]["eval/num_errors"] == 0


def test_official_openai_client_reads_a_served_adapter(local_eval, served):
    """The `openai` package talks to task=serve as to any OpenAI server, and each image it
    sends comes back as the text task=eval wrote for that image in results.json."""
    import base64

    from openai import OpenAI

    prompt = compose(LOCAL_EVAL).prompt.text  # the instruction task=eval gave the model
    client = OpenAI(base_url=served, api_key="unused", max_retries=2, timeout=60)
    assert [m.id for m in client.models.list().data]
    samples = _samples(local_eval)
    for sample in samples:
        image = base64.b64encode(Path(sample["image_path"]).read_bytes()).decode()
        reply = client.chat.completions.create(
            model="ocrft",
            max_tokens=8,
            messages=[{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}},
                {"type": "text", "text": prompt}]}],
        )  # fmt: skip
        assert reply.choices[0].message.content == sample["prediction"], sample["image_path"]
        assert reply.usage.completion_tokens >= (1 if sample["prediction"] else 0)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_merge_round_trip(family, tmp_path):
    run([f"model=tiny_{family}", *TRAIN], tmp_path / "train")
    merged = run(["task=merge", f"model=tiny_{family}", f"model.path={tmp_path / 'train'}", "data=tiny_ocr",
                  "eval.split=train", "merge.check_samples=4", "eval.max_new_tokens=8"], tmp_path / "merge")  # fmt: skip
    out = Path(merged["paths"]["merged"])
    assert (out / "model.safetensors").exists() and (out / "config.json").exists()
    assert not (out / "adapter_config.json").exists()
    assert merged["metrics"]["merge/checked"] == 4
    assert merged["metrics"]["merge/differing"] == 0
    # the merged folder is a plain checkpoint: evaluable as one
    evaluated = run(["task=eval", f"model=tiny_{family}", f"model.path={out}", "data=tiny_ocr",
                     "eval.max_new_tokens=8"], tmp_path / "eval")  # fmt: skip
    assert evaluated["status"] == "finished"
