"""model=endpoint against a real, misbehaving chat-completions server on 127.0.0.1.

Every fault a hosted API shows in practice (429 with Retry-After, 5xx, a response past the
timeout, garbage bodies, streams cut short, dropped connections) is scripted per image;
the evaluation must end with every sample transcribed exactly once server-side, resume
after SIGKILL without re-sending finished samples, and never write the key anywhere.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

from ocrft.config import EndpointModelConfig
from ocrft.data.record import Record
from ocrft.evaluation.endpoint import EndpointClient, build_client
from ocrft.evaluation.endpoint_eval import evaluate_endpoint
from ocrft.config import ConfigError
from tests.fake_openai import FakeOpenAI, make_dataset

pytestmark = pytest.mark.integration

KEY = "sk-test-0123456789abcdefghijklmnop"
# Quick retries; the timeout leaves room for a loaded 2-core machine (only "slow:" exceeds it).
FAST = dict(timeout=1.0)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_faults_are_retried_and_nothing_is_lost_or_duplicated(tmp_path, stream):
    records, labels, shas = make_dataset(tmp_path / "img", 10)
    faults = [["429:0.1"], ["500", "503"], ["slow:2.5"], ["garbage"], ["nochoices"], ["truncated"], ["drop"],
              ["truncated", "500", "429"], [], []]
    script = dict(zip(shas, faults))
    with FakeOpenAI(labels, api_key=KEY, script=script) as server:
        client = EndpointClient(server.url, "fake-ocr", api_key=KEY, stream=stream, max_retries=5, **FAST)
        ckpt = tmp_path / "ckpt.jsonl"
        rows = evaluate_endpoint(records, client, prompt="Transcribe.", system=None, workers=3, checkpoint_path=ckpt, save_interval=4, progress=False)

    assert [r["id"] for r in rows] == [r.id for r in records]  # the records' order
    assert [r["prediction"] for r in rows] == [r.text for r in records]
    assert all(r["error"] is None for r in rows)
    assert [r["retries"] for r in rows] == [len(f) for f in faults]
    assert all(server.served(sha) == 1 for sha in shas)  # each answer requested exactly once
    assert [server.faults(sha) for sha in shas] == [f + ["ok"] for f in faults]  # ... after the scripted faults
    assert all(r["usage"] == {"prompt_tokens": 100 + len("Transcribe."), "completion_tokens": len(r["label"])} for r in rows)
    assert sorted(r["id"] for r in lines(ckpt)) == sorted(r.id for r in records)  # compacted, one line each


def test_stream_request_answered_with_plain_json(tmp_path):
    records, labels, shas = make_dataset(tmp_path / "img", 1)
    with FakeOpenAI(labels, script={shas[0]: ["json"]}) as server:
        done = EndpointClient(server.url, "m", stream=True, **FAST).transcribe(records[0].image, "read")
    assert (done.text, done.retries, done.usage["completion_tokens"]) == (records[0].text, 0, len(records[0].text))


def test_retry_after_is_honoured_and_capped(tmp_path):
    records, labels, shas = make_dataset(tmp_path / "img", 5)
    # seconds; an HTTP date 2 s ahead (1-2 s at one-second resolution); OpenAI's milliseconds
    # header, which wins over a Retry-After of 9 s; an unreadable value; 10 minutes, over the cap
    script = {shas[0]: ["429:1"], shas[1]: ["429-date:2"], shas[2]: ["429-ms:300"], shas[3]: ["429:soon"],
              shas[4]: ["429:600"]}

    def timed(record: Record) -> tuple[str, int, float, str]:
        t0 = time.monotonic()
        done = EndpointClient(server.url, "m", timeout=5).transcribe(record.image, "read")
        return done.text, done.retries, time.monotonic() - t0, done.error or ""

    with FakeOpenAI(labels, script=script) as server, ThreadPoolExecutor(5) as pool:
        results = list(pool.map(timed, records))
    assert [(text, retries) for text, retries, _, _ in results[:4]] == [(r.text, 1) for r in records[:4]]
    # The SDK's own backoff before a first retry is 0.375-0.5 s: these waits are the server's.
    waits = [wait for _, _, wait, _ in results]
    assert waits[0] >= 0.9 and waits[1] >= 0.9 and 0.25 <= waits[2] < 5 and waits[3] < 5, waits
    # Over the SDK's cap (2 minutes) a wait is not sat out: the sample fails at once with the
    # 429 recorded, and a resumed evaluation sends it again.
    text, retries, wait, error = results[4]
    assert (text, retries, error[:8]) == ("", 0, "HTTP 429") and wait < 5, results[4]
    assert [server.faults(sha) for sha in shas] == [["429:1", "ok"], ["429-date:2", "ok"], ["429-ms:300", "ok"],
                                                    ["429:soon", "ok"], ["429:600"]]


def test_failures_are_recorded_then_retried_on_resume(tmp_path):
    records, labels, shas = make_dataset(tmp_path / "img", 6)
    ckpt = tmp_path / "ckpt.jsonl"
    script = {shas[1]: ["400"], shas[4]: ["500"] * 3}  # not retryable; retries exhausted
    with FakeOpenAI(labels, script=script) as server:
        client = EndpointClient(server.url, "m", max_retries=2, **FAST)
        rows = evaluate_endpoint(records, client, prompt="read", system=None, workers=2, checkpoint_path=ckpt, progress=False)
        assert [bool(r["error"]) for r in rows] == [False, True, False, False, True, False]
        assert rows[1]["error"].startswith("HTTP 400") and rows[1]["retries"] == 0
        assert "gave up after 2 retries" in rows[4]["error"] and rows[4]["retries"] == 2
        before = len(server.log)

        rows = evaluate_endpoint(records, client, prompt="read", system=None, workers=2, checkpoint_path=ckpt, progress=False)
        assert [r["prediction"] for r in rows] == [r.text for r in records]
        resent = [entry["sha"] for entry in server.log[before:]]
        assert sorted(resent) == sorted([shas[1], shas[4]])  # only the failed ones went out again
        assert all(server.served(sha) == 1 for sha in shas)


def test_limit_and_record_prompt(tmp_path):
    records, labels, _ = make_dataset(tmp_path / "img", 4)
    records[0] = Record(id=records[0].id, image=records[0].image, text=records[0].text, prompt="Own prompt.")
    with FakeOpenAI(labels) as server:
        client = EndpointClient(server.url, "m", **FAST)
        rows = evaluate_endpoint(records, client, prompt="read", system="system text", workers=2,
                                 checkpoint_path=tmp_path / "c.jsonl", limit=2, progress=False)
    assert [r["id"] for r in rows] == ["img-0", "img-1"] and len(server.log) == 2
    assert rows[0]["usage"]["prompt_tokens"] == 100 + len("Own prompt.")


def test_missing_key_names_the_variable_before_any_request(tmp_path, monkeypatch):
    records, labels, _ = make_dataset(tmp_path / "img", 1)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeOpenAI(labels) as server:
        cfg = SimpleNamespace(**vars(EndpointModelConfig(backend="endpoint", path="endpoint", provider="openai", base_url=server.url)))
        with pytest.raises(ConfigError, match="set the environment variable OPENAI_API_KEY"):
            build_client(cfg)
        assert server.log == []


def test_key_never_reaches_logs_checkpoint_or_results(tmp_path, monkeypatch, caplog):
    records, labels, shas = make_dataset(tmp_path / "img", 4)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    caplog.set_level(logging.DEBUG)  # httpx and httpcore included
    script = {shas[0]: ["500", "truncated"], shas[1]: ["drop"]}
    with FakeOpenAI(labels, api_key=KEY, script=script) as server:
        cfg = SimpleNamespace(**vars(EndpointModelConfig(backend="endpoint", path="e", provider="openai", base_url=server.url,
                                                 remote_model="m", timeout=2.0)))
        client = build_client(cfg)
        rows = evaluate_endpoint(records, client, prompt="read", system=None, workers=2, checkpoint_path=tmp_path / "ok.jsonl")
        assert all(r["error"] is None for r in rows)
        # A server that echoes the (wrong) key it received into its 401 body.
        wrong = "sk-wrong-key-ZYXWVUTSRQPONMLKJIHGFEDCBA"
        monkeypatch.setenv("OPENAI_API_KEY", wrong)
        bad_rows = evaluate_endpoint(records, build_client(cfg), prompt="read", system=None, workers=2,
                                     checkpoint_path=tmp_path / "bad.jsonl", progress=False)
    assert all(r["error"].startswith("HTTP 401") for r in bad_rows)
    written = json.dumps(rows + bad_rows) + (tmp_path / "ok.jsonl").read_text() + (tmp_path / "bad.jsonl").read_text()
    for secret in (KEY, wrong):
        assert secret not in written
        assert secret not in caplog.text
        assert secret not in repr(client)
    assert "HTTP Request: POST" in caplog.text  # the logs did see the requests


_CHILD = """
import json, logging, os, sys
from pathlib import Path
from ocrft.data.record import Record
from ocrft.evaluation.endpoint import EndpointClient
from ocrft.evaluation.endpoint_eval import evaluate_endpoint
logging.basicConfig(level=logging.INFO)
records = [Record(**r) for r in json.loads(Path(sys.argv[1]).read_text())]
client = EndpointClient(sys.argv[2], "fake", api_key=os.environ["FAKE_KEY"], timeout=60, max_retries=2)
rows = evaluate_endpoint(records, client, prompt="read", system=None, workers=2, checkpoint_path=Path(sys.argv[3]),
                         save_interval=3, progress=False)
Path(sys.argv[4]).write_text(json.dumps(rows))
"""


@pytest.mark.slow  # two interpreter start-ups: 2-6 s on a shared 2-core machine
def test_sigkill_then_resume_loses_and_resends_nothing(tmp_path):
    records, labels, shas = make_dataset(tmp_path / "img", 12)
    data = tmp_path / "records.json"
    data.write_text(json.dumps([{"id": r.id, "image": r.image, "text": r.text} for r in records]))
    script, ckpt, out = tmp_path / "child.py", tmp_path / "ckpt.jsonl", tmp_path / "rows.json"
    script.write_text(_CHILD)
    env = {**os.environ, "FAKE_KEY": KEY}
    with FakeOpenAI(labels, api_key=KEY, hold_after=5) as server:
        cmd = [sys.executable, str(script), str(data), server.url, str(ckpt), str(out)]
        child = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # Five answers get through, then the server holds every request: wait until the
        # child has checkpointed those five and is stuck mid-request, then kill it.
        deadline = time.monotonic() + 60
        while not (server.held() >= 1 and ckpt.exists() and len(ckpt.read_text().splitlines()) >= 5):
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "child never reached the hold point"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        child.stderr.close()
        assert not out.exists()
        finished = {row["id"] for row in lines(ckpt)}
        assert len(finished) == 5
        with ckpt.open("a") as f:  # what a kill during a write would leave behind
            f.write('{"id": "img-11", "prediction": "half a li')
        server.release()

        done = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr.decode()

    rows = json.loads(out.read_text())
    assert [r["prediction"] for r in rows] == [r.text for r in records]  # nothing lost
    assert all(server.served(sha) == 1 for sha in shas)  # nothing answered twice
    by_id = dict(zip((r.id for r in records), shas))
    for record_id in finished:  # finished before the kill: never sent again
        assert server.faults(by_id[record_id]) == ["ok"]
    assert sorted(row["id"] for row in lines(ckpt)) == sorted(r.id for r in records)


@pytest.mark.slow  # two `python -m ocrft` runs: Hydra and the package start-up dominate
def test_cli_eval_through_endpoint_resumes_in_the_same_run_dir(tmp_path):
    """`python -m ocrft task=eval model=endpoint` end to end: scored results, retries and a
    failure recorded, then the same command resumes and re-sends only the failure."""
    records, labels, shas = make_dataset(tmp_path / "img", 5)
    data = tmp_path / "test.json"
    data.write_text(json.dumps([{"img_path": r.image, "ocr_results": r.text} for r in records], ensure_ascii=False))
    run_dir = tmp_path / "run"
    env = {**os.environ, "OCRFT_SERVE_KEY": KEY}
    with FakeOpenAI(labels, api_key=KEY, script={shas[0]: ["500"], shas[3]: ["400"]}) as server:
        cmd = [sys.executable, "-m", "ocrft", "task=eval", "model=endpoint", "model.provider=ocrft",
               f"model.base_url={server.url}", "data=json_ocr", f"data.test_file={data}",
               "tracking=none", f"run_dir={run_dir}", "eval.workers=2"]
        first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert first.returncode == 0, first.stderr
        run = json.loads((run_dir / "run.json").read_text())
        assert run["metrics"]["eval/num_errors"] == 1 and run["metrics"]["eval/request_retries"] == 1
        sent_first = len(server.log)

        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert second.returncode == 0, second.stderr
    assert [e["sha"] for e in server.log[sent_first:]] == [shas[3]]  # only the failed sample again
    run = json.loads((run_dir / "run.json").read_text())
    assert run["metrics"]["eval/num_errors"] == 0 and run["metrics"]["eval/cer"] == 0.0
    results = json.loads((run_dir / "results.json").read_text())
    assert [s["prediction"] for s in results["samples"]] == [r.text for r in records]
    assert results["endpoint"]["provider"] == "ocrft" and "cost_usd" not in results["endpoint"]  # self-hosted
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert KEY not in path.read_text(errors="replace"), path
    assert KEY not in first.stderr + first.stdout + second.stderr + second.stdout
