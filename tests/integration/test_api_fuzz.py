"""HTTP API fuzzing with schemathesis, from each app's own OpenAPI schema (FastAPI's ``app.openapi()``).

Two APIs, each called in-process through its whole ASGI stack:

- task=serve's app (admission, Host guard, FastAPI) with the FakeGenerator of test_serve.py:
  POST /v1/chat/completions, GET /v1/models, GET /health. Image URLs are generated as data
  URLs of small images of every mode and format a request may send, some truncated, some too
  large, some not images, so generated requests reach the image decoder and the batcher;
- the studio's jobs API (``jobs_router`` mounted at /api/jobs) over a real JobManager whose
  runs are a script that exits 0; about half the generated job ids are swapped for jobs that exist.

Every generated request, valid or not (schemathesis' positive and negative data, its
coverage cases and its fuzzing), must get no 5xx, and every 4xx must say why: a JSON
``detail`` or ``error.message``, or some text. ``OCRFT_FUZZ_EXAMPLES`` sets Hypothesis'
examples per operation (default 40); the cases sent per operation and the statuses they got
are printed (``pytest -s``) and written to ``.pytest_cache/d/api_fuzz/cases.json``.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis.checks import not_a_server_error

from ocrft.config import ServeConfig
from ocrft.serving.app import create_app
from ocrft.studio.jobs import JobManager
from ocrft.studio.jobs_api import jobs_router
from tests.servers import MODEL, FakeGenerator, data_url

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_EXAMPLES = int(os.environ.get("OCRFT_FUZZ_EXAMPLES", "40"))
# Reproducible: the same cases every run (derandomize), no example database kept between runs.
FUZZ = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])  # fmt: skip
# What task=serve checks a request's Host header against when bound to 127.0.0.1
# (schemathesis' own client says "testserver", which the guard rightly refuses with 403).
SERVE_BASE_URL = "http://127.0.0.1"

SERVE_OPERATIONS = {"POST /v1/chat/completions", "GET /v1/models", "GET /health"}
JOBS_OPERATIONS = {"POST /api/jobs", "GET /api/jobs", "GET /api/jobs/{job_id}",
                   "POST /api/jobs/{job_id}/cancel", "POST /api/jobs/{job_id}/resume"}  # fmt: skip

# api -> operation -> phase -> cases sent; api -> operation -> status -> responses
CASES: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
STATUSES: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))


def fastapi_app(asgi: Any) -> Any:
    """The FastAPI app inside ASGI middleware (each keeps the app it wraps as ``.app``)."""
    from fastapi import FastAPI

    while not isinstance(asgi, FastAPI):
        asgi = asgi.app
    return asgi


def says_why_on_4xx(ctx: Any, response: Any, case: Any) -> None:
    """A schemathesis check: a 4xx answer carries a message (JSON ``detail`` or ``error.message``,
    or non-empty text), so a client learns what to change."""
    if not 400 <= response.status_code < 500:
        return None
    text = response.content.decode("utf-8", "replace").strip()
    assert text, f"{response.status_code} with an empty body"
    try:
        body = json.loads(text)
    except ValueError:
        return None  # plain text that says something
    if isinstance(body, dict):
        error = body.get("error")
        message = body.get("detail") or (error.get("message") if isinstance(error, dict) else None)
        assert message, f"{response.status_code} whose JSON has no detail or error.message: {text[:300]}"
    return None


def record(api: str, case: Any, response: Any) -> None:
    # The operation's own method: the coverage phase also sends other methods to its path (405 expected)
    label = f"{case.operation.method.upper()} {case.operation.path}"
    phase = case.meta.phase.name.value if case.meta is not None else "explicit"
    CASES[api][label][phase] += 1
    STATUSES[api][label][str(response.status_code)] += 1


def call(api: str, case: Any, **kwargs: Any) -> None:
    response = case.call(**kwargs)
    record(api, case, response)
    case.validate_response(response, checks=[not_a_server_error, says_why_on_4xx], transport_kwargs=kwargs)


@pytest.fixture(scope="module", autouse=True)
def fuzz_report(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the module: the cases per operation, printed and written to the pytest cache."""
    yield
    report = {
        api: {op: {"cases": sum(phases.values()), "phases": dict(phases), "statuses": dict(sorted(STATUSES[api][op].items()))}
              for op, phases in sorted(ops.items())}
        for api, ops in CASES.items()
    }  # fmt: skip
    if not report:
        return
    cache = getattr(request.config, "cache", None)  # None with -p no:cacheprovider
    folder = Path(cache.mkdir("api_fuzz")) if cache is not None else tmp_path_factory.getbasetemp()
    path = folder / "cases.json"
    path.write_text(json.dumps({"max_examples": MAX_EXAMPLES, "apis": report}, indent=2) + "\n")
    print(f"\nAPI fuzzing, max_examples={MAX_EXAMPLES} per operation (written to {path}):")
    for api, ops in report.items():
        for op, row in ops.items():
            print(f"  {api:16} {op:32} {row['cases']:4} cases  phases {row['phases']}  statuses {row['statuses']}")


# -- task=serve ---------------------------------------------------------------------------
# The schemas (these and JOBS_SCHEMA) are loaded at import, for schema.parametrize():
# schemathesis 4.32's fixture-loaded ones (schemathesis.pytest.from_fixture) set
# Node._nodeid, which pytest 9.2 no longer has (AttributeError before any case is sent).


def serve_app() -> Any:
    cfg = ServeConfig(max_body_bytes=200_000, max_image_pixels=1_000_000, max_batch_size=4, batch_wait_ms=1,
                      max_new_tokens=16, request_timeout_s=30)  # fmt: skip
    return create_app(FakeGenerator(delay=0.0), cfg, MODEL)  # no api_key_env: the body parsing is reachable


# (mode, format) pairs PIL saves; decode_image must turn each into RGB or refuse it with a 4xx.
IMAGE_KINDS = [("RGB", "PNG"), ("RGBA", "PNG"), ("L", "PNG"), ("LA", "PNG"), ("P", "PNG"), ("1", "PNG"),
               ("I;16", "PNG"), ("RGB", "JPEG"), ("L", "JPEG"), ("CMYK", "JPEG"), ("RGB", "GIF"), ("RGB", "BMP"),
               ("RGB", "TIFF"), ("CMYK", "TIFF"), ("I;16", "TIFF"), ("RGB", "WEBP"), ("RGBA", "WEBP")]  # fmt: skip


def encoded_image(kind: tuple[str, str], size: tuple[int, int], keep: int | None) -> bytes:
    """An image file of ``kind`` and ``size`` (over serve.max_image_pixels past 1000 x 1000),
    cut to its first ``keep`` bytes when ``keep`` is given (a truncated upload)."""
    mode, fmt = kind
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format=fmt)
    return buf.getvalue()[:keep]


IMAGE_DATA_URLS = st.one_of(
    st.builds(encoded_image, st.sampled_from(IMAGE_KINDS), st.tuples(st.integers(1, 1100), st.integers(1, 1100)),
              st.none() | st.integers(0, 200)),
    st.binary(max_size=64),  # not an image at all
).map(lambda data: f"data:image/png;base64,{base64.b64encode(data).decode()}")  # fmt: skip
# Test-only format name for the image part's url; the served schema says "string" (any URL is
# read, and refused unless it is a base64 data URL of an image).
schemathesis.openapi.format("ocrft-test-image-data-url", IMAGE_DATA_URLS)


def serve_schema(one_image: bool = False) -> Any:
    """task=serve's own OpenAPI schema, its image URLs generated as IMAGE_DATA_URLS; with
    ``one_image``, only its chat operation, narrowed to the requests the server answers (one
    user message: one image part, then text parts), so every positive case reaches the image
    decoder and the batcher (most of the full schema's stop at "send exactly one image")."""
    app = serve_app()
    raw = copy.deepcopy(fastapi_app(app).openapi())  # edited below: not FastAPI's cached copy
    body = raw["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]
    messages = body["schema"]["properties"]["messages"]
    text_part, image_part = messages["items"]["properties"]["content"]["anyOf"][1]["items"]["oneOf"]
    image_part["properties"]["image_url"]["properties"]["url"]["format"] = "ocrft-test-image-data-url"
    if one_image:
        content = {"type": "array", "prefixItems": [image_part], "items": text_part, "minItems": 1, "maxItems": 3}
        messages.update(maxItems=1, items={"type": "object", "required": ["role", "content"],
                                           "properties": {"role": {"const": "user"}, "content": content}})  # fmt: skip
    # One request a model answers, sent as is by the examples phase and varied by the coverage phase.
    content = [{"type": "image_url", "image_url": {"url": data_url()}}, {"type": "text", "text": "Read."}]
    body["example"] = {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 4}
    schema = schemathesis.openapi.from_dict(raw)
    schema.app = app  # called in-process, through the admission and Host guard in front of FastAPI
    return schema.include(path="/v1/chat/completions") if one_image else schema


SERVE_SCHEMA = serve_schema()
SERVE_ONE_IMAGE_SCHEMA = serve_schema(one_image=True)


def test_serve_openapi_declares_the_chat_body() -> None:
    """The chat handler reads its body by hand; its schema is declared, or nothing but empty
    bodies would be fuzzed."""
    from ocrft.serving.protocol import ChatRequest

    op = fastapi_app(serve_app()).openapi()["paths"]["/v1/chat/completions"]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["properties"]) <= set(ChatRequest.model_fields)  # no field the server does not read
    assert schema["required"] == ["messages"]


@FUZZ
@SERVE_SCHEMA.parametrize()
def test_serve_api_fuzz(case: Any) -> None:
    call("serve", case, base_url=SERVE_BASE_URL)


@FUZZ
@SERVE_ONE_IMAGE_SCHEMA.parametrize()
def test_serve_chat_one_image_fuzz(case: Any) -> None:
    call("serve, one image", case, base_url=SERVE_BASE_URL)


# -- the studio's jobs API ----------------------------------------------------------------


def jobs_app(manager: Any) -> Any:
    from fastapi import FastAPI

    app = FastAPI()
    app.include_router(jobs_router(manager), prefix="/api/jobs")
    return app


# The OpenAPI document does not depend on the manager (no call reaches this one): the cases go
# to the app of the jobs_api fixture.
JOBS_SCHEMA = schemathesis.openapi.from_dict(jobs_app(None).openapi())


@pytest.fixture(scope="module")
def jobs_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("jobs_fuzz")
    # The runs' interpreter is a script that exits 0: a generated launch that composes (an empty
    # override list is the default training run) would otherwise start a real training for
    # each example. The API's validation, queue and bookkeeping are what is fuzzed here.
    python = tmp / "python"
    python.write_text("#!/bin/sh\nexit 0\n")
    python.chmod(0o755)
    manager = JobManager(max_jobs=1, runs_root=tmp / "outputs", cwd=tmp, python=str(python))
    yield jobs_app(manager), manager
    manager.shutdown()


@FUZZ
@JOBS_SCHEMA.parametrize()
def test_jobs_api_fuzz(case: Any, jobs_api: Any) -> None:
    app, manager = jobs_api
    # A generated id never names a job: an odd-length one is swapped for a job the fuzzing
    # launched, in whatever state it is (queued, running, finished, cancelled).
    job_id = (case.path_parameters or {}).get("job_id")
    known = [job["id"] for job in manager.list()]
    if known and isinstance(job_id, str) and len(job_id) % 2:
        case.path_parameters["job_id"] = known[len(job_id) // 2 % len(known)]
    call("jobs", case, app=app)


def test_fuzzing_reached_every_operation() -> None:
    """Each fuzzed API had every operation called, more than a handful of times (a filter or a
    schema gone wrong would otherwise pass with nothing sent). An operation without parameters
    gets one fuzzing case: its other cases are the coverage phase's (other methods, headers)."""
    if not CASES:
        pytest.skip("no fuzz test ran in this session")
    expected = {"serve": SERVE_OPERATIONS, "serve, one image": {"POST /v1/chat/completions"}, "jobs": JOBS_OPERATIONS}
    for api, ops in CASES.items():
        assert set(ops) == expected[api], api
        for op, phases in ops.items():
            assert sum(phases.values()) >= 5, (api, op, dict(phases))
