"""task=serve's app on a real uvicorn server on 127.0.0.1, with a fake deterministic model.

The official ``openai`` client and ocrft's own EndpointClient must both talk to it; hostile
requests (no key, oversized bodies, decompression bombs, remote image URLs) must be refused
before they cost anything; concurrent requests must reach the model as batches.
"""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import httpx
import pytest
from PIL import Image

from ocrft.config import ServeConfig
from ocrft.evaluation.endpoint import EndpointClient
from ocrft.serving.app import create_app
from ocrft.config import ConfigError
from tests.files import png_claiming
from tests.servers import (
    LINE_IMAGE,
    MODEL,
    FakeGenerator,
    chat,
    data_url,
    free_port,
    line_image_url,
    running,
    serve_process,
)

pytestmark = pytest.mark.integration

KEY = "ocrft-serve-test-key-0123456789"
KEY_ENV = "OCRFT_TEST_SERVE_KEY"


@pytest.fixture(scope="module")
def fake_served() -> Iterator[tuple[str, FakeGenerator]]:
    """(base URL, generator): task=serve's app on FakeGenerator, in this process."""
    import os

    generator = FakeGenerator()
    cfg = ServeConfig(api_key_env=KEY_ENV, max_body_bytes=200_000, max_image_pixels=1_000_000,
                      max_batch_size=4, batch_wait_ms=30, max_new_tokens=64)
    os.environ[KEY_ENV] = KEY
    try:
        app = create_app(generator, cfg, MODEL)  # reads the key now
    finally:
        del os.environ[KEY_ENV]
    with running(app) as url:
        yield url, generator


AUTH = {"Authorization": f"Bearer {KEY}"}


def test_health_and_models(fake_served):
    url, _ = fake_served
    assert httpx.get(f"{url}/health").json() == {"status": "ok", "model": MODEL}  # no key: probes need none
    assert httpx.get(f"{url}/v1/models").status_code == 401
    models = httpx.get(f"{url}/v1/models", headers=AUTH).json()
    assert [m["id"] for m in models["data"]] == [MODEL]


def test_chat_completion_with_base64_image(fake_served):
    url, generator = fake_served
    r = httpx.post(f"{url}/v1/chat/completions", headers=AUTH, json=chat(url, data_url((30, 12), "RGBA"), max_tokens=500))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == MODEL
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "30x12 RGB Read."}
    assert body["usage"] == {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}
    assert generator.limits[-1] == 64  # max_tokens capped by serve.max_new_tokens


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}])
def test_wrong_or_missing_bearer_is_401(fake_served, headers):
    url, _ = fake_served
    r = httpx.post(f"{url}/v1/chat/completions", headers=headers, json=chat(url, data_url()))
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def test_oversized_body_is_413_declared_or_streamed(fake_served):
    url, generator = fake_served
    calls = len(generator.batch_sizes)
    big = b'{"messages": "' + b"x" * 300_000 + b'"}'
    r = httpx.post(f"{url}/v1/chat/completions", headers={**AUTH, "Content-Type": "application/json"}, content=big)
    assert r.status_code == 413
    # Chunked upload: no Content-Length to trust, so the server must count.
    r = httpx.post(f"{url}/v1/chat/completions", headers=AUTH, content=iter([big[i : i + 50_000] for i in range(0, len(big), 50_000)]))
    assert r.status_code == 413 and "content-length" not in r.request.headers
    assert len(generator.batch_sizes) == calls


@pytest.mark.parametrize(
    "image_url, status",
    [
        ("data:image/png;base64," + base64.b64encode(png_claiming(5000, 5000)).decode(), 413),  # 25 MP > 1 MP limit
        ("data:image/png;base64," + base64.b64encode(png_claiming(100_000, 100_000)).decode(), 413),  # 10 GP
        ("data:image/png;base64," + base64.b64encode(b"GIF89a but not really").decode(), 400),
        ("data:image/png;base64,%%%not-base64%%%", 400),
        ("https://example.com/page.png", 400),  # no server-side fetching (SSRF)
        ("http://169.254.169.254/latest/meta-data", 400),
    ],
    ids=["bomb-over-limit", "bomb-over-pil-limit", "undecodable", "bad-base64", "https-url", "metadata-url"],
)
def test_hostile_images_are_refused_before_the_model(fake_served, image_url, status):
    url, generator = fake_served
    calls = len(generator.batch_sizes)
    r = httpx.post(f"{url}/v1/chat/completions", headers=AUTH, json=chat(url, image_url))
    assert r.status_code == status, r.text
    assert "error" in r.json() and len(generator.batch_sizes) == calls
    if image_url.startswith("http"):
        assert "data URL" in r.json()["error"]["message"]


def test_broken_images_are_400_and_the_server_stays_healthy(fake_served):
    url, generator = fake_served
    calls = len(generator.batch_sizes)
    buf = io.BytesIO()
    Image.frombytes("L", (200, 60), bytes(range(256)) * 47).save(buf, format="PNG")  # ~12 KB of pixel data
    for data, reason in ((buf.getvalue()[: len(buf.getvalue()) // 2], "truncated"), (b"", "empty")):
        image_url = "data:image/png;base64," + base64.b64encode(data).decode()
        r = httpx.post(f"{url}/v1/chat/completions", headers=AUTH, json=chat(url, image_url))
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "invalid_image" and reason in r.json()["error"]["message"]
        assert r.json()["error"]["message"].startswith("request image: ")
    assert len(generator.batch_sizes) == calls
    assert httpx.get(f"{url}/health").status_code == 200
    ok = httpx.post(f"{url}/v1/chat/completions", headers=AUTH, json=chat(url, data_url((31, 9))))
    assert ok.json()["choices"][0]["message"]["content"] == "31x9 RGB Read."


def test_bad_requests_are_400(fake_served):
    url, _ = fake_served
    for body in (b"not json", b'{"messages": []}', b'{"messages": [{"role": "user", "content": "text only"}]}'):
        r = httpx.post(f"{url}/v1/chat/completions", headers=AUTH, content=body)
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", body


def test_concurrent_requests_are_batched(fake_served):
    url, generator = fake_served
    generator.batch_sizes.clear()
    generator.delay = 0.3  # while the first batch runs, the other requests must pile up
    sizes = [(20 + i, 10) for i in range(8)]
    try:
        with httpx.Client(timeout=30) as client, ThreadPoolExecutor(8) as pool:
            post = lambda s: client.post(f"{url}/v1/chat/completions", headers=AUTH, json=chat(url, data_url(s), str(s[0])))  # noqa: E731
            answers = list(pool.map(post, sizes))
    finally:
        generator.delay = 0.05
    assert [a.json()["choices"][0]["message"]["content"] for a in answers] == [f"{w}x{h} RGB {w}" for w, h in sizes]
    assert sum(generator.batch_sizes) == 8
    assert max(generator.batch_sizes) > 1 and max(generator.batch_sizes) <= 4  # batched, within max_batch_size


def test_official_openai_client(fake_served):
    import openai

    url, _ = fake_served
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=30)
    messages = [
        {"role": "system", "content": "You are an OCR engine."},
        {"role": "user", "content": [{"type": "text", "text": "Transcribe."}, {"type": "image_url", "image_url": {"url": data_url((40, 20), fmt="JPEG")}}]},
    ]
    reply = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=32, temperature=0)
    # The system message is not passed on: the served model keeps the one it was loaded with.
    assert reply.choices[0].message.content == "40x20 RGB Transcribe."
    assert reply.usage.completion_tokens == 3  # FakeGenerator counts words

    stream = client.chat.completions.create(model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply.choices[0].message.content
    assert chunks[-1].usage.total_tokens == reply.usage.total_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"

    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).chat.completions.create(model=MODEL, messages=messages)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_endpoint_client_against_served_model(fake_served, tmp_path, stream):
    url, _ = fake_served
    path = tmp_path / "line.png"
    Image.new("L", (50, 16), 200).save(path)
    client = EndpointClient(f"{url}/v1", MODEL, api_key=KEY, stream=stream, max_tokens=16, timeout=30)
    done = client.transcribe(path, "Read the line.", system="OCR")
    assert (done.text, done.error, done.retries) == ("50x16 RGB Read the line.", None, 0)
    assert done.usage == {"prompt_tokens": 3, "completion_tokens": 5}


def test_endpoint_eval_of_a_served_model_sends_and_records_its_name(fake_served, tmp_path, monkeypatch):
    import json

    from ocrft.data.record import Record
    from ocrft.evaluation.evaluate import evaluate_split
    from tests.helpers import compose

    url, _ = fake_served
    monkeypatch.setenv(KEY_ENV, KEY)
    Image.new("L", (40, 16), 200).save(tmp_path / "a.png")
    cfg = compose(["task=eval", "model=endpoint", "model.provider=ocrft", f"model.base_url={url}/v1",
                   f"model.api_key_env={KEY_ENV}", "tracking=none"])  # fmt: skip
    records = [Record(id="a", image=str(tmp_path / "a.png"), text="40x16")]
    evaluate_split(cfg, records, tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    # the model id came from the server's /v1/models, not the provider's placeholder "ocrft"
    assert results["model_name"] == f"ocrft:{MODEL}"
    assert results["model"] | {"endpoint": None} == {"kind": "endpoint", "provider": "ocrft", "endpoint": None,
                                                     "remote_model": MODEL, "id": MODEL, "name": f"ocrft:{MODEL}"}
    assert results["model"]["endpoint"] == f"{url}/v1/chat/completions"


def test_refuses_to_start_with_empty_key_variable(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "")
    with pytest.raises(ConfigError, match=KEY_ENV):
        create_app(FakeGenerator(), ServeConfig(api_key_env=KEY_ENV), MODEL)


def test_open_server_and_generator_failure():
    class Broken(FakeGenerator):
        def read(self, images, prompts, max_new_tokens):
            raise RuntimeError("CUDA out of memory")

    with running(create_app(Broken(), ServeConfig(), MODEL)) as url:
        r = httpx.post(f"{url}/v1/chat/completions", json=chat(url, data_url()))  # no key configured: open
        assert r.status_code == 500 and r.json()["error"]["code"] == "generation_failed"
        assert httpx.get(f"{url}/health").status_code == 200  # the server survives


_SERVE_CHILD = """
import json, logging, sys, types
from omegaconf import OmegaConf
from ocrft.config import ServeConfig

from ocrft.evaluation.generation import Generation

class Reader:
    def read(self, images, prompts, max_new_tokens):
        return [Generation(f"{im.width}x{im.height}") for im in images]

    def close(self):
        pass

# Stand-in for ocrft.evaluation.predictor (the model loader) so only the serving is under test.
sys.modules["ocrft.evaluation.predictor"] = types.SimpleNamespace(build_predictor=lambda cfg, **kw: Reader())
from ocrft.tasks.serve import run_serve

logging.basicConfig(level=logging.INFO)
cfg = OmegaConf.create({"serve": vars(ServeConfig(port=int(sys.argv[1]))), "model": {"backend": "local", "name": "tiny-ocr", "path": "x"}})
print("RESULT", json.dumps(run_serve(cfg, None).extra), flush=True)
"""


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_run_serve_serves_until_signalled(tmp_path, sig):
    import signal
    import subprocess
    import sys

    port = free_port()
    script = tmp_path / "serve_child.py"
    script.write_text(_SERVE_CHILD)
    child = subprocess.Popen([sys.executable, str(script), str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "server did not come up"
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        r = httpx.post(f"{url}/v1/chat/completions", json=chat(url, data_url((33, 11))))
        assert r.json()["choices"][0]["message"]["content"] == "33x11"
        child.send_signal(getattr(signal, sig))  # Ctrl-C, or `docker stop`
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, err.decode()
    assert f'RESULT {{"url": "http://127.0.0.1:{port}/v1", "model_name": "tiny-ocr"}}' in out.decode()
    assert f"serving tiny-ocr at http://127.0.0.1:{port}/v1" in err.decode()


def test_run_serve_checks_the_key_before_loading_the_model(monkeypatch):
    import sys
    import types

    from omegaconf import OmegaConf

    from ocrft.tasks.serve import run_serve

    def build_predictor(cfg, **kwargs):
        raise AssertionError("the model must not be loaded for a server that cannot start")

    monkeypatch.setitem(sys.modules, "ocrft.evaluation.predictor", types.SimpleNamespace(build_predictor=build_predictor))
    monkeypatch.delenv(KEY_ENV, raising=False)
    cfg = OmegaConf.create({"serve": vars(ServeConfig(api_key_env=KEY_ENV)), "model": {"backend": "local", "name": None, "path": "x"}})
    with pytest.raises(ConfigError, match=KEY_ENV):
        run_serve(cfg, None)


@pytest.mark.slow
def test_sigterm_finishes_requests_in_flight_then_exits_0(tmp_path):
    import json
    import signal

    # One request per batch: the sixteen queue behind each other (0.1-1 s each on a CPU, so
    # some are still queued at the signal however idle the machine is).
    with serve_process(tmp_path, "serve.max_batch_size=1", "serve.shutdown_grace_s=60") as (url, proc):
        body = chat(url, line_image_url())
        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(httpx.post, f"{url}/v1/chat/completions", json=body, timeout=60) for _ in range(16)]
            time.sleep(0.5)  # all sent and admitted; the first is generating
            proc.send_signal(signal.SIGTERM)
            assert not all(f.done() for f in futures), "the requests finished before SIGTERM: nothing was in flight"
            time.sleep(0.3)  # uvicorn closes its listening socket on its next tick (0.1 s)
            with pytest.raises(httpx.TransportError):  # refused: nothing new is accepted
                httpx.post(f"{url}/v1/chat/completions", json=body, timeout=5)
            answers = [f.result() for f in futures]
        assert proc.wait(60) == 0
    assert [a.status_code for a in answers] == [200] * 16, [a.text for a in answers]
    assert len({a.json()["choices"][0]["message"]["content"] for a in answers}) == 1  # same image, same greedy text
    record = json.loads((tmp_path / "serve-run" / "run.json").read_text())
    assert record["status"] == "finished"


@pytest.mark.slow
def test_serve_a_cascade_answers_unsure_requests_through_its_fallback(tmp_path):
    """model=cascade behind task=serve: with a threshold above every confidence each request
    goes to the fallback (a local OpenAI-protocol server), below every one none does."""
    import hashlib
    import io

    from ocrft.data.images import decode_image_bytes
    from tests.helpers import REPO
    from tests.fake_openai import FakeOpenAI

    raw = (REPO / LINE_IMAGE).read_bytes()
    sent = io.BytesIO()  # what the cascade's client sends: the decoded request image as PNG
    decode_image_bytes(raw, 40_000_000, "line").save(sent, format="PNG")
    body = {"model": "x", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Read the line."}, {"type": "image_url", "image_url": {"url": line_image_url()}}]}]}
    with FakeOpenAI({hashlib.sha256(sent.getvalue()).hexdigest(): "FROM THE FALLBACK"}) as fallback:
        answers = {}
        for threshold in ("0.5", "-1e9"):  # every log-probability is <= 0 < 0.5, and > -1e9
            overrides = ["model.path=asset:demo_base", "cascade.family=qwen2_vl", f"cascade.threshold={threshold}",
                         f"cascade.fallback.base_url={fallback.url}", "cascade.fallback.remote_model=fake"]  # fmt: skip
            (tmp_path / threshold).mkdir()
            with serve_process(tmp_path / threshold, *overrides, model="cascade") as (url, proc):
                answer = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
                assert answer.status_code == 200, answer.text
                answers[threshold] = answer.json()["choices"][0]["message"]["content"]
                proc.terminate()
                assert proc.wait(30) == 0
    assert answers["0.5"] == "FROM THE FALLBACK"
    assert answers["-1e9"] not in ("", "FROM THE FALLBACK")  # the local model's own reading
    assert len(fallback.log) == 1
