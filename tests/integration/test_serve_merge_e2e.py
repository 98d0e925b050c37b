"""A trained tiny model served by task=serve and evaluated through model=endpoint scores
exactly like task=eval; merged weights generate what base + adapter generate."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import FAMILY_NAMES, REPO, run

pytestmark = [pytest.mark.slow, pytest.mark.integration]

TRAIN = ["data=tiny_ocr", "train.max_steps=3", "train.learning_rate=5e-3", "train.per_device_train_batch_size=4",
         "eval.before_after=false", "eval.max_new_tokens=8", "train.save_steps=100"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("trained")
    run(["model=tiny_qwen2_vl", *TRAIN], run_dir)
    return run_dir


def test_served_model_scores_like_local_eval(trained, tmp_path):
    # batch 1 / one worker on both sides: the same forward passes, so identical greedy text
    common = ["task=eval", "data=tiny_ocr", "eval.max_new_tokens=8", "eval.batch_size=1"]
    local = run([*common, "model=tiny_qwen2_vl", f"model.path={trained}"], tmp_path / "local")

    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "ocrft", "task=serve", "tracking=none", f"model.path={trained}",
         f"serve.port={port}", "eval.max_new_tokens=8", f"run_dir={tmp_path / 'serve'}"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.stdout.read()
            assert time.time() < deadline, "server did not come up"
            time.sleep(0.5)
        remote = run(
            [*common, "model=endpoint", "model.provider=ocrft", f"model.base_url=http://127.0.0.1:{port}/v1",
             "eval.workers=1", "model.max_tokens=8"],
            tmp_path / "remote",
        )  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=60)

    local_samples = json.loads(Path(local["paths"]["results"]).read_text())["samples"]
    remote_samples = json.loads(Path(remote["paths"]["results"]).read_text())["samples"]
    assert [s["prediction"] for s in remote_samples] == [s["prediction"] for s in local_samples]
    for key in ("eval/cer", "eval/wer", "eval/char_f1", "eval/bleu", "eval/exact_match"):
        assert remote["metrics"][key] == pytest.approx(local["metrics"][key]), key
    assert remote["metrics"]["eval/num_errors"] == 0


def test_official_openai_client_reads_a_served_adapter(trained, tmp_path):
    """The `openai` package talks to task=serve as to any OpenAI server."""
    import base64

    from openai import OpenAI

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "ocrft", "task=serve", "tracking=none", f"model.path={trained}", f"serve.port={port}",
         f"run_dir={tmp_path / 'serve'}"],
        cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=30, timeout=10)
        image = base64.b64encode((REPO / "tests/assets/tiny_ocr/line_00.png").read_bytes()).decode()
        for _ in range(240):
            try:
                client.models.list()
                break
            except Exception:
                time.sleep(0.5)
        reply = client.chat.completions.create(
            model="ocrft",
            max_tokens=8,
            messages=[{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}},
                {"type": "text", "text": "Transcribe the text in this image. Return only the text."}]}],
        )  # fmt: skip
        assert isinstance(reply.choices[0].message.content, str)
        assert reply.usage.completion_tokens >= 0
    finally:
        server.terminate()
        server.wait(timeout=60)


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
