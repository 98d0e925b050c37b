"""The bad-input corpus through the real command line: a clear error, never a traceback.

Every case runs ``python -m ocrft ...`` in a subprocess. A bad file, record, key or path
must end the run with a non-zero exit and a message naming what is at fault (file and line,
or the config key), with no Python traceback: ``ocrft: error: ...`` and exit status 2 for
errors ocrft raises (run.json then records ``status: failed`` with the error), Hydra's own
message and exit status 1 for values that do not compose. With ``data.on_error=skip`` bad
records are skipped and counted instead. The corpus is tests/assets/bad_input (make.py
there documents each file); the readers' unit tests check the same files in-process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.integration

BAD = REPO / "tests" / "assets" / "bad_input"
_spec = importlib.util.spec_from_file_location("bad_input_make", BAD / "make.py")
corpus = importlib.util.module_from_spec(_spec)  # the corpus's own description of its bad rows
_spec.loader.exec_module(corpus)

COMPOSE = 1  # Hydra refuses the override before ocrft runs: its message names the key
USER = 2  # ocrft.runner.EXIT_USER_ERROR


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    names: tuple[str, ...]  # what stderr must mention: the file and line, or the key
    exit: int = USER


def evaluate(fmt: str, name: str) -> tuple[str, ...]:
    """task=eval reads its split before loading a model: a bad data file fails at once."""
    return ("task=eval", f"data={fmt}", f"data.test_file={BAD / name}")


def prepare(fmt: str, folder: str) -> tuple[str, ...]:
    return ("task=prepare", f"data={fmt}", f"data.input_dir={BAD / folder}")


CASES = [
    # images: empty, cut short, not an image under a .png name, a decompression bomb, absent
    Case("zero_byte_image", evaluate("jsonl_vision", "one_empty.jsonl"), ("one_empty.jsonl:1", "empty.png", "0 bytes")),
    Case("truncated_image", evaluate("jsonl_vision", "one_truncated.jsonl"), ("one_truncated.jsonl:1", "truncated.png")),
    Case("text_named_png", evaluate("jsonl_vision", "one_not_an_image.jsonl"), ("one_not_an_image.jsonl:1", "not_an_image.png")),
    Case("decompression_bomb", evaluate("jsonl_vision", "one_bomb.jsonl"), ("one_bomb.jsonl:1", "bomb.png", "decompression bomb")),
    Case("missing_image", evaluate("jsonl_vision", "one_missing.jsonl"), ("one_missing.jsonl:1", "missing.png")),
    # label files: syntax, encoding, newlines, a cut-off end, the wrong format or extension
    Case("json_syntax_error", evaluate("json_ocr", "broken.json"), ("broken.json:6", "column 3")),
    Case("json_cut_off", evaluate("json_ocr", "cut_off.json"), ("cut_off.json:3",)),
    Case("jsonl_cut_off", evaluate("jsonl_vision", "cut_off.jsonl"), ("cut_off.jsonl:2",)),
    Case("json_non_utf8", evaluate("json_ocr", "non_utf8.json"), ("non_utf8.json:3", "0xe9")),
    Case("jsonl_non_utf8", evaluate("jsonl_vision", "non_utf8.jsonl"), ("non_utf8.jsonl:3", "0xe9")),
    Case("json_utf16", evaluate("json_ocr", "utf16.json"), ("utf16.json:1", "UTF-16")),
    Case("jsonl_mixed_newlines_broken_line", evaluate("jsonl_vision", "mixed_newlines.jsonl"), ("mixed_newlines.jsonl:4",)),
    Case("jsonl_under_json_name", evaluate("json_ocr", "lines_named.json"), ("lines_named.json:2",)),
    Case("image_as_label_file", evaluate("jsonl_vision", "png_named.jsonl"), ("png_named.jsonl:1", "UTF-8")),
    Case("json_record_without_text", evaluate("json_ocr", "bad_records.json"), ("bad_records.json:6", "ocr_results")),
    Case("jsonl_number_as_text", evaluate("jsonl_vision", "bad_values.jsonl"), ("bad_values.jsonl:2", "response")),
    Case("data_file_missing", ("task=eval", "data=json_ocr", f"data.path={BAD / 'nope.json'}"), ("nope.json", "does not exist")),
    Case("no_data_source", ("task=eval", "data=json_ocr"), ("data.path", "data.test_file")),
    Case("data_path_mandatory", ("task=eval", "data=json_ocr", "data.path=???"), ("data.path",)),
    Case("results_file_cut_off", ("task=report", f"report.results={BAD / 'cut_off.json'}"), ("cut_off.json", "not valid JSON")),
    Case("results_file_wrong_schema", ("task=report", f"report.results={BAD / 'bad_records.json'}"), ("bad_records.json", "samples")),
    Case("results_file_missing", ("task=report", f"report.results={BAD / 'nope.json'}"), ("nope.json",)),
    Case("predict_input_missing", ("task=predict", f"predict.input={BAD / 'nope'}"), ("predict.input", "nope")),
    Case("data_format_typo", ("task=eval", "data=json_ocr", "data.format=jsn", f"data.path={BAD / 'broken.json'}"), ("data.format", "jsn")),
    # page exports: the wrong namespace, one PAGE/ALTO knows but ocrft does not, or a foreign one
    Case("page_undated_namespace", prepare("page_xml", "page_undated_ns"), ("page_undated_ns", "unsupported_schema")),
    Case("page_foreign_namespace", prepare("page_xml", "page_foreign_ns"), ("page_foreign_ns", "no page_xml page files")),
    Case("alto_unknown_namespace", prepare("alto", "alto_unknown_ns"), ("alto_unknown_ns", "unsupported_schema")),
    # config values: Hydra refuses what does not compose, ocrft what composes but cannot work
    Case("learning_rate_not_a_number", ("train.learning_rate=abc",), ("train.learning_rate", "abc"), COMPOSE),
    Case("misspelt_key", ("train.lr=0.1",), ("train.lr",), COMPOSE),
    Case("on_error_not_an_option", ("data.on_error=maybe",), ("data.on_error", "maybe"), COMPOSE),
    Case("unknown_model_config", ("model=tiny_foo",), ("model/tiny_foo",), COMPOSE),
    Case("unknown_model_family", ("model.family=foo",), ("model.family", "foo")),
    Case("eval_batch_size_zero", ("task=eval", "eval.batch_size=0"), ("eval.batch_size",)),
    Case("model_path_missing", ("task=eval", "data.num_test=1", "model.path=/nonexistent/ckpt"), ("model.path", "/nonexistent/ckpt")),
]  # fmt: skip


def ocrft(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("HYDRA_FULL_ERROR", None)  # the user-facing behaviour, not the debugging one
    cmd = [sys.executable, "-m", "ocrft", "tracking=none", f"run_dir={tmp_path / 'run'}",
           f"data.output_dir={tmp_path / 'prepared'}", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


@pytest.fixture(scope="module")
def corpus_runs(request, tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """Run the selected cases two at a time (each is an interpreter start-up, mostly waiting
    on imports); the parametrized test then checks one case each."""
    from concurrent.futures import ThreadPoolExecutor

    selected = {item.callspec.params["case"].id for item in request.session.items
                if item.module is request.module and "case" in getattr(item, "callspec", SimpleNamespace(params={})).params}
    cases = [c for c in CASES if c.id in selected]
    folders = {c.id: tmp_path_factory.mktemp(c.id) for c in cases}
    with ThreadPoolExecutor(max_workers=2) as pool:
        procs = dict(zip([c.id for c in cases], pool.map(lambda c: ocrft(folders[c.id], *c.args), cases)))
    return {cid: (proc, folders[cid] / "run") for cid, proc in procs.items()}


def assert_clear_error(proc: subprocess.CompletedProcess, case: Case, run_dir: Path) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode == case.exit, f"exit {proc.returncode}, expected {case.exit}:\n{proc.stderr[-3000:]}"
    assert "Traceback" not in out, out[-3000:]
    for name in case.names:
        assert name in proc.stderr, f"{name!r} not named in:\n{proc.stderr}"
    if case.exit == USER:
        (line,) = [line for line in proc.stderr.splitlines() if line.startswith("ocrft: error: ")]
        assert all(name in line for name in case.names)  # one paragraph says it all
        record = json.loads((run_dir / "run.json").read_text())
        assert record["status"] == "failed" and line.removeprefix("ocrft: error: ")[:40] in " ".join(record["error"].split())


@pytest.mark.slow  # ~40 interpreter start-ups (two at a time), 1-3 s each
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_fails_with_a_clear_error(corpus_runs, case):
    proc, run_dir = corpus_runs[case.id]
    assert_clear_error(proc, case, run_dir)


@pytest.fixture(scope="module")
def tiny_qwen2_vl_folder() -> Path:
    from ocrft.models.loading import ensure_tiny

    return ensure_tiny("qwen2_vl")  # in $OCRFT_CACHE, which the subprocess shares


@pytest.mark.slow  # builds the tiny Qwen2-VL if this session has not yet
def test_checkpoint_of_another_family_is_refused_before_loading(tmp_path, tiny_qwen2_vl_folder):
    case = Case("other_family", (), ("model.family", "gemma3", "qwen2_vl", str(tiny_qwen2_vl_folder / "config.json")))
    proc = ocrft(tmp_path, "task=eval", "data.num_test=1", "model=tiny_gemma3", f"model.path={tiny_qwen2_vl_folder}")
    assert_clear_error(proc, case, tmp_path / "run")


@pytest.mark.slow  # starts a real training run, which fails at its first batch
def test_max_length_below_the_image_tokens_names_the_key(tmp_path):
    proc = ocrft(tmp_path, "train.max_length=8", "train.max_steps=1", "data.num_train=2", "data.num_val=1",
                 "data.num_test=1", "eval.before_after=false")  # fmt: skip
    assert_clear_error(proc, Case("max_length", (), ("train.max_length=8", "tokens")), tmp_path / "run")


@pytest.mark.slow  # an interpreter start-up that renders the analysis plots
@pytest.mark.parametrize(
    "name,skipped",
    [
        ("bad_values.jsonl", dict(Counter(reason for _, reason in corpus.BAD_VALUES.values() if reason))),
        ("mixed_newlines.jsonl", {"malformed_line": 1}),
    ],
    ids=["bad_values", "mixed_newlines"],
)
def test_on_error_skip_counts_what_it_skips(tmp_path, name, skipped):
    """With data.on_error=skip the run goes on; every skipped record is counted by reason
    (a JPEG under a .png name is no error: images are recognised by content)."""
    proc = ocrft(tmp_path, "task=analyze", "data=jsonl_vision", f"data.path={BAD / name}", "data.on_error=skip")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    analysis = json.loads((tmp_path / "run" / "analysis.json").read_text())
    assert analysis["skipped"] == skipped
    kept = sum(s["num_samples"] for s in analysis["splits"].values())
    total = sum(1 for line in (BAD / name).read_bytes().splitlines() if line.strip())
    assert kept + sum(skipped.values()) == total  # every line either kept or counted
