"""Endpoint client and server pieces that need no server: providers, keys, the backoff of
re-sent malformed answers, image encoding, checkpoint recovery, cost, request parsing.
Retry-After and the SDK's own retries are tested against a real server in
tests/integration/test_endpoint.py."""

from __future__ import annotations

import base64
import io
import json
import random
from types import SimpleNamespace

import pytest
from PIL import Image

from ocrft.config import EndpointModelConfig, ServeConfig
from ocrft.evaluation.checkpoint import Checkpoint
from ocrft.evaluation.endpoint import (
    EndpointClient,
    build_client,
    image_data_url,
    known_providers,
    load_provider,
    read_api_key,
    retry_delay,
)
from ocrft.evaluation.endpoint_eval import endpoint_metrics, estimate_cost, sum_usage
from ocrft.serving.auth import read_server_key
from ocrft.serving.images import decode_data_url, decode_image
from ocrft.serving.protocol import ChatRequest, OcrRequest, RequestError, parse_request
from ocrft.config import ConfigError
from tests.files import png_claiming

SECRET = "sk-unit-test-secret-0123456789abcdef"


@pytest.mark.parametrize(
    "name, base_url, model, env, required",
    [
        ("openai", "https://api.openai.com/v1", "gpt-4o", "OPENAI_API_KEY", True),
        ("gemini", "https://generativelanguage.googleapis.com/v1beta/openai/", "gemini-2.0-flash", "GEMINI_API_KEY", True),
        ("anthropic", "https://api.anthropic.com/v1/", "claude-3-5-sonnet-20241022", "ANTHROPIC_API_KEY", True),
        ("vllm", "http://127.0.0.1:8000/v1", "default", "VLLM_API_KEY", False),
        ("ocrft", "http://127.0.0.1:8000/v1", "ocrft", "OCRFT_SERVE_KEY", False),
    ],
)
def test_providers(name, base_url, model, env, required):
    p = load_provider(name)
    assert (p.name, p.base_url, p.model, p.api_key_env, p.api_key_required) == (name, base_url, model, env, required)
    if required:  # hosted: every listed model has a dated price
        assert p.pricing_as_of and set(p.models) <= set(p.pricing)
        assert all(price["input"] > 0 and price["output"] > 0 for price in p.pricing.values())
    else:
        assert p.pricing == {}


def test_unknown_provider_lists_known():
    with pytest.raises(ConfigError) as e:
        load_provider("../provider/openai")
    assert all(name in str(e.value) for name in known_providers())


def test_api_key_from_environment(monkeypatch):
    monkeypatch.delenv("OCRFT_UNIT_KEY", raising=False)
    with pytest.raises(ConfigError, match="OCRFT_UNIT_KEY"):
        read_api_key("OCRFT_UNIT_KEY", required=True, provider="openai")
    assert read_api_key("OCRFT_UNIT_KEY", required=False) is None
    monkeypatch.setenv("OCRFT_UNIT_KEY", f"  {SECRET}\n")  # as `export K=$(cat file)` leaves it
    assert read_api_key("OCRFT_UNIT_KEY", required=True) == SECRET
    monkeypatch.setenv("OCRFT_UNIT_KEY", "sk-é-secret-value")
    with pytest.raises(ConfigError) as e:
        read_api_key("OCRFT_UNIT_KEY", required=True)
    assert "OCRFT_UNIT_KEY" in str(e.value) and "secret-value" not in str(e.value)


def test_build_client_overrides(monkeypatch):
    monkeypatch.setenv("MY_GATEWAY_KEY", SECRET)
    cfg = EndpointModelConfig(backend="endpoint", path="endpoint", provider="openai", base_url="http://127.0.0.1:9/v1/",
                      remote_model="gpt-4o-mini", api_key_env="MY_GATEWAY_KEY", stream=True, max_retries=2)
    client = build_client(SimpleNamespace(**vars(cfg)))
    assert client.url == "http://127.0.0.1:9/v1/chat/completions"
    assert (client.model, client.stream, client.max_retries) == ("gpt-4o-mini", True, 2)
    assert SECRET not in repr(client) and "api_key=***" in repr(client)
    # An optional key (vllm) may be absent; naming a variable explicitly makes it required.
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    assert "api_key=None" in repr(build_client(SimpleNamespace(**vars(EndpointModelConfig(backend="endpoint", path="e", provider="vllm")))))
    with pytest.raises(ConfigError, match="MISSING_KEY_VAR"):
        build_client(SimpleNamespace(**vars(EndpointModelConfig(backend="endpoint", path="e", provider="vllm", api_key_env="MISSING_KEY_VAR"))))


def test_retry_delay_doubles_to_a_cap_with_jitter():
    random.seed(0)
    for retries, bound in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 8.0)]:
        waits = [retry_delay(retries) for _ in range(400)]
        assert all(0.75 * bound <= w <= bound for w in waits)
        assert len({round(w, 6) for w in waits}) > 300  # spread, not fixed: workers fall out of step


def test_client_uses_the_given_key_only(monkeypatch):
    # The SDK would fall back to OPENAI_API_KEY: a keyless server must not receive it.
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    client = EndpointClient("http://127.0.0.1:9/v1", "m")
    assert client._openai.api_key != SECRET and "api_key=None" in repr(client)
    assert EndpointClient("http://127.0.0.1:9/v1", "m", api_key="sk-given")._openai.api_key == "sk-given"


def test_image_data_url_formats(tmp_path):
    png = tmp_path / "a.png"
    Image.new("RGB", (8, 4), "white").save(png)
    assert image_data_url(png) == "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
    mislabelled = tmp_path / "b.png"  # a JPEG named .png is sent as what it is
    Image.new("RGB", (8, 4), "white").save(mislabelled, format="JPEG")
    assert image_data_url(mislabelled).startswith("data:image/jpeg;base64,")
    bmp = tmp_path / "c.bmp"  # not accepted by hosted APIs: decoded and sent as PNG
    Image.new("RGB", (8, 4), "red").save(bmp)
    url = image_data_url(bmp)
    assert url.startswith("data:image/png;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(url.split(",")[1]))).size == (8, 4)


def test_checkpoint_drops_partial_line_and_keeps_last_row(tmp_path):
    path = tmp_path / "ckpt.jsonl"
    rows = [{"id": "a", "error": "HTTP 500"}, {"id": "b", "error": None}, {"id": "a", "error": None}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"id": "c", "predic')
    ckpt = Checkpoint(path)
    assert ckpt.rows == {"a": {"id": "a", "error": None}, "b": {"id": "b", "error": None}}
    ckpt.append({"id": "c", "error": None})
    ckpt.close()
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["a", "b", "c"]


def test_cost_and_metrics():
    pricing = load_provider("openai").pricing
    rows = [
        {"usage": {"prompt_tokens": 1_000_000, "completion_tokens": 100_000}, "latency_s": 1.0, "retries": 2, "error": None},
        {"usage": {"prompt_tokens": None, "completion_tokens": None}, "latency_s": 0.0, "retries": 5, "error": "HTTP 500"},
    ]
    totals = sum_usage(rows)
    assert totals == {"prompt_tokens": 1_000_000, "completion_tokens": 100_000, "rows_without_usage": 1}
    assert estimate_cost(totals, pricing, "gpt-4o") == pytest.approx(2.50 + 1.00)
    assert estimate_cost(totals, pricing, "my-finetune") is None
    m = endpoint_metrics(rows, pricing, "gpt-4o")
    assert m["request_retries"] == 7 and m["cost_usd"] == pytest.approx(3.5)
    assert m["samples_without_usage"] == 1 and m["latency_s_mean"] == 1.0
    assert "cost_usd" not in endpoint_metrics(rows, {}, "gpt-4o")


def _req(**kw) -> ChatRequest:
    return ChatRequest.model_validate(kw)


def test_parse_request():
    url = "data:image/png;base64,AAAA"
    req = _req(messages=[{"role": "system", "content": "You are OCR."},
                         {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "Read."}]}],
               max_tokens=5000, seed=1, user="x")  # unknown fields are accepted
    assert parse_request(req, default_max_tokens=256) == OcrRequest(url, "Read.", 256, "You are OCR.")  # clamped
    req = _req(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": url}]}], max_completion_tokens=7)
    assert parse_request(req, 256) == OcrRequest(url, "", 7, "")
    for bad in (
        [{"role": "user", "content": "no image"}],
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}] * 2}],
        [{"role": "assistant", "content": "hi"}],
        [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}],
    ):
        with pytest.raises(RequestError) as e:
            parse_request(_req(messages=bad), 256)
        assert e.value.status == 400


def test_decode_data_url_and_image():
    with pytest.raises(RequestError, match="remote image URLs are not fetched"):
        decode_data_url("https://example.com/a.png")
    with pytest.raises(RequestError, match="base64"):
        decode_data_url("data:image/png;base64,***")
    with pytest.raises(RequestError, match="data URL"):
        decode_data_url("file:///etc/passwd")
    assert decode_data_url("data:image/png;base64," + base64.b64encode(b"xyz").decode()) == b"xyz"
    for w, h in [(5000, 5000), (100_000, 100_000)]:  # over our limit; over PIL's own bomb limit
        with pytest.raises(RequestError) as e:
            decode_image(png_claiming(w, h), max_pixels=1_000_000)
        assert e.value.status == 413
    with pytest.raises(RequestError) as e:
        decode_image(b"definitely not an image", max_pixels=1_000_000)
    assert e.value.status == 400
    buf = io.BytesIO()
    Image.new("RGBA", (6, 3), (0, 0, 0, 0)).save(buf, format="PNG")  # transparent -> white, as open_image
    im = decode_image(buf.getvalue(), max_pixels=1_000_000)
    assert (im.mode, im.size, im.getpixel((0, 0))) == ("RGB", (6, 3), (255, 255, 255))


def test_server_key_must_not_be_empty(monkeypatch):
    monkeypatch.setenv("OCRFT_UNIT_SERVE_KEY", " ")
    with pytest.raises(ConfigError, match="OCRFT_UNIT_SERVE_KEY"):
        read_server_key(ServeConfig(api_key_env="OCRFT_UNIT_SERVE_KEY"))
    assert read_server_key(ServeConfig()) is None


def test_endpoint_config_composes(monkeypatch):
    from tests.helpers import compose

    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    cfg = compose(["task=eval", "model=endpoint", "model.provider=anthropic", "model.max_retries=3", "model.stream=true"])
    client = build_client(cfg.model)
    assert client.url == "https://api.anthropic.com/v1/chat/completions"
    assert (client.model, client.max_retries, client.stream) == ("claude-3-5-sonnet-20241022", 3, True)
    cfg = compose(["task=serve", "serve.max_new_tokens=12"])
    assert (cfg.serve.host, cfg.serve.port, cfg.serve.max_new_tokens) == ("127.0.0.1", 8000, 12)
