"""The Predictor seam (ocrft.evaluation.predictor): every backend answers predict() and read()
with one Generation per sample, so task=predict reads a folder through an endpoint, task=serve
proxies one, and model=predictions is refused where images must be read."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from ocrft.config import ConfigError
from ocrft.evaluation.predictor import PREDICTORS, build_predictor, predictor_class
from tests.fake_openai import FakeOpenAI, make_dataset, sha256
from tests.helpers import compose, run
from tests.servers import chat, running


def test_every_backend_has_a_predictor_with_the_whole_interface():
    for backend in PREDICTORS:
        cls = predictor_class(backend)
        for method in ("from_config", "predict", "read", "describe", "report", "close"):
            assert callable(getattr(cls, method, None)), f"{backend}: {cls.__name__} has no {method}"
        assert isinstance(cls.reads_images, bool)
    assert [b for b in PREDICTORS if not predictor_class(b).reads_images] == ["predictions"]


@pytest.mark.parametrize("task", ["predict", "serve"])
def test_predictions_backend_is_refused_where_images_are_read(tmp_path, task):
    cfg = compose([f"task={task}", "model=predictions", f"model.path={tmp_path}"])
    with pytest.raises(ConfigError, match=rf"model.backend=predictions: task={task} reads images"):
        build_predictor(cfg, task=task)


def test_predict_reads_a_folder_through_an_endpoint(tmp_path):
    records, labels, _ = make_dataset(tmp_path / "scans", 4)
    with FakeOpenAI(labels) as server:
        record = run(["task=predict", "model=endpoint", "model.provider=vllm", f"model.base_url={server.url}",
                      "model.remote_model=fake", f"predict.input={tmp_path / 'scans'}", "tracking=none"],
                     tmp_path / "run")  # fmt: skip
        sent = len(server.log)
    rows = [json.loads(line) for line in Path(record["paths"]["predictions"]).read_text().splitlines()]
    assert [r["image"] for r in rows] == [r.image for r in records]
    assert [r["prediction"] for r in rows] == [r.text for r in records]  # each image made the round trip
    assert sent == 4 and record["metrics"]["predict/images"] == 4


def test_serve_proxies_an_endpoint_and_a_failed_upstream_is_a_502(tmp_path):
    import base64

    from ocrft.evaluation.endpoint import image_data_url
    from ocrft.serving.app import create_app
    from ocrft.serving.images import decode_image

    records, _, _ = make_dataset(tmp_path / "scans", 2)
    sent = [Path(r.image).read_bytes() for r in records]
    # The server decodes a request's image; the proxy sends that image on as PNG: label those bytes.
    cfg = compose(["task=serve", "model=endpoint", "model.provider=vllm", "model.base_url=http://127.0.0.1:9/v1",
                   "model.remote_model=fake", "model.max_retries=0"])  # fmt: skip
    forwarded = [base64.b64decode(image_data_url(decode_image(raw, cfg.serve.max_image_pixels)).split(",", 1)[1])
                 for raw in sent]  # fmt: skip
    labels = {sha256(raw): r.text for raw, r in zip(forwarded, records)}
    with FakeOpenAI(labels, script={sha256(forwarded[1]): ["400"]}) as upstream:
        cfg.model.base_url = upstream.url
        predictor = build_predictor(cfg, task="serve")
        try:
            with running(create_app(predictor, cfg.serve, "proxy")) as url:
                answers = [httpx.post(f"{url}/v1/chat/completions", timeout=30,
                                      json=chat(url, "data:image/png;base64," + base64.b64encode(raw).decode()))
                           for raw in sent]  # fmt: skip
        finally:
            predictor.close()
    ok, bad = answers
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == records[0].text
    assert bad.status_code == 502 and bad.json()["error"]["code"] == "upstream_error", bad.text
