"""Every config value ocrft refuses, through the real command line: ``ocrft: error: <key>``.

Each case runs ``python -m ocrft ... tracking=none run_dir=<tmp>`` in a subprocess with one
bad value (a key that composes, so Hydra lets it through) and expects exit status 2, a
message that starts with the dotted key at fault, and no traceback. Every case fails before
a model loads: ocrft.validate at start, or the data, prepare, endpoint, studio, serve and
sweeper checks that run before any weights are read. A value Hydra itself refuses (a wrong
type, a misspelt key, an enum) is tests/integration/test_bad_input_cli.py's business.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.integration

TINY = REPO / "tests" / "assets" / "tiny_ocr"
EXPORT = REPO / "tests" / "assets" / "exports" / "transkribus"
TINY_DATA = ("data=tiny_ocr", f"data.path={TINY / 'ocr.json'}")  # the config's path is relative to the repo
USER = 2  # ocrft.runner.EXIT_USER_ERROR


@dataclass(frozen=True)
class Case:
    id: str
    key: str  # stderr must say "ocrft: error: <key>"
    args: tuple[str, ...]  # "{work}" is the case's scratch folder (see work_folder)
    env: tuple[tuple[str, str], ...] = ()


def ev(*args: str) -> tuple[str, ...]:
    """task=eval: ocrft.validate runs first, then the eval split is read, before any model."""
    return ("task=eval", *args)


def cascade(*args: str) -> tuple[str, ...]:
    return ("task=eval", "model=cascade", "model.path={work}/empty", *TINY_DATA, *args)


def synthetic(*args: str) -> tuple[str, ...]:
    return ("task=eval", "data=synthetic", "data.num_test=2", "data.cache_dir={work}/cache", *args)


def prepare(*args: str) -> tuple[str, ...]:
    return ("task=prepare", "data=page_xml", f"data.input_dir={EXPORT}", "data.output_dir={work}/prepared", *args)


def sweep(*args: str) -> tuple[str, ...]:
    return ("--multirun", "+experiment=demo_sweep", "hydra.sweeper.storage=sqlite:///{work}/optuna.db",
            "hydra.sweeper.study_name=s", "hydra.sweep.dir={work}/multirun", *args)  # fmt: skip


CASES = [
    # ocrft.validate: checked when the run starts
    Case("unknown_family", "model.family", ev("model.family=foo")),
    Case("4bit_and_8bit", "quant.load_in_4bit", ev("quant.load_in_4bit=true", "quant.load_in_8bit=true")),
    Case("peft_method", "peft.method", ev("peft.method=prefix")),
    Case("quantized_full_finetune", "peft.method", ev("quant.load_in_4bit=true", "peft.method=none")),
    Case("max_steps_zero", "train.max_steps", ev("train.max_steps=0")),
    Case("max_seconds_zero", "train.max_seconds", ev("train.max_seconds=0")),
    Case("epochs_zero", "train.num_train_epochs", ev("train.num_train_epochs=0")),
    Case("eval_batch_size", "eval.batch_size", ev("eval.batch_size=0")),
    Case("eval_workers", "eval.workers", ev("eval.workers=0")),
    Case("data_level", "data.level", ev("data.level=word")),
    Case("eval_split", "eval.split", ev("eval.split=dev")),
    Case("data_max_pixels", "data.max_pixels", ev("data.max_pixels=0")),
    Case("train_ratio_above_1", "data.train_ratio", ev("data.train_ratio=1.5")),
    Case("val_ratio_1", "data.val_ratio", ev("data.val_ratio=1")),
    Case("ratios_sum_above_1", "data.train_ratio", ev("data.train_ratio=0.9", "data.val_ratio=0.2")),
    Case("train_ratio_0_to_train", "data.train_ratio", ("task=train", "data.train_ratio=0")),
    Case("val_from_train", "data.val_from_train", ev("data.val_from_train=1.5")),
    Case("cer_unit", "eval.cer_unit", ev("eval.cer_unit=byte")),
    Case("eval_metric", "eval.metric", ev("eval.metric=accuracy")),
    Case("bleu_tokenize", "eval.bleu_tokenize", ev("eval.bleu_tokenize=klingon")),
    Case("predictions_match", "model.predictions_match", ev("model=predictions", "model.path=x", "model.predictions_match=fuzzy")),
    Case("loop_guard_ngram", "eval.loop_guard.ngram", ev("eval.loop_guard.ngram=0")),
    Case("loop_guard_max_repeats", "eval.loop_guard.max_repeats", ev("eval.loop_guard.max_repeats=1")),
    Case("loop_guard_retries", "eval.loop_guard.retries", ev("eval.loop_guard.retries=-1")),
    Case("loop_guard_retry_temperature", "eval.loop_guard.retry_temperature",
         ev("eval.loop_guard.retries=1", "eval.loop_guard.retry_temperature=0")),
    Case("loop_guard_retries_with_beams", "eval.loop_guard.retries", ev("eval.loop_guard.retries=1", "eval.num_beams=2")),
    Case("no_repeat_ngram_size", "eval.no_repeat_ngram_size", ev("eval.no_repeat_ngram_size=-1")),
    Case("repetition_penalty", "eval.repetition_penalty", ev("eval.repetition_penalty=0")),
    *[Case(f"serve_{k}", f"serve.{k}", ev(f"serve.{k}=0"))
      for k in ("max_concurrent_requests", "max_batch_size", "retry_after_s", "request_timeout_s", "shutdown_grace_s")],
    Case("cascade_confidence", "cascade.confidence", cascade("cascade.confidence=entropy")),
    Case("cascade_calibration_split", "cascade.calibration_split", cascade("cascade.calibration_split=all")),
    Case("cascade_threshold", "cascade.threshold", cascade("cascade.threshold=high")),
    Case("cascade_max_fallback_fraction", "cascade.max_fallback_fraction", cascade("cascade.max_fallback_fraction=2")),
    Case("cascade_target_cer", "cascade.target_cer", cascade("cascade.target_cer=-1")),
    Case("cascade_num_beams", "eval.num_beams", cascade("eval.num_beams=2")),
    # ocrft.data: where the records come from (read before any model)
    Case("data_format", "data.format", ev("data=json_ocr", "data.format=csv", f"data.path={TINY / 'ocr.json'}")),
    Case("data_path_unset", "data.path", ev("data=json_ocr")),
    Case("data_path_missing", "data.path", ev("data=json_ocr", "data.path={work}/nope.json")),
    Case("data_test_file_missing", "data.test_file", ev("data=json_ocr", "data.test_file={work}/nope.json")),
    Case("data_path_folder_lacks_split", "data.path", ev("data=json_ocr", "data.path={work}/train_only")),
    Case("hf_text_column", "data.text_column", ev("data=hf_dataset", "data.path={work}/lines.parquet",
                                                  "data.cache_dir={work}/hf", "data.text_column=transcript")),
    Case("hf_image_column", "data.image_column", ev("data=hf_dataset", "data.path={work}/lines.parquet",
                                                    "data.cache_dir={work}/hf", "data.image_column=picture")),
    Case("synthetic_font", "data.fonts", synthetic("data.fonts=[NoSuchFont]")),
    Case("synthetic_charset_blank", "data.charset", synthetic("data.charset=' '")),
    Case("synthetic_charset_undrawable", "data.charset", synthetic("data.charset='中文字'")),
    Case("synthetic_min_chars", "data.min_chars", synthetic("data.min_chars=5", "data.max_chars=3")),
    # task=prepare
    Case("prepare_no_source", "data.input_dir", ("task=prepare", "data=page_xml", "data.output_dir={work}/prepared")),
    Case("prepare_format", "data.format", ("task=prepare", "data=synthetic", f"data.input_dir={EXPORT}")),
    Case("prepare_target_height", "data.target_height", prepare("data.target_height=0")),
    Case("prepare_output_is_a_file", "data.output_dir", prepare("data.output_dir={work}/a_file")),
    Case("prepare_output_is_the_input", "data.output_dir",
         ("task=prepare", "data=page_xml", "data.input_dir={work}/export", "data.output_dir={work}/export")),
    Case("prepare_output_not_ours", "data.output_dir", prepare("data.output_dir={work}/full")),
    # the other tasks' own keys
    Case("predict_input_unset", "predict.input", ("task=predict",)),
    Case("predict_input_missing", "predict.input", ("task=predict", "predict.input={work}/nope")),
    Case("report_results_unset", "report.results", ("task=report",)),
    Case("merge_without_adapter", "model.path", ("task=merge", "model=tiny_qwen2_vl")),
    Case("soup_without_runs", "soup.runs", ("task=soup",)),
    Case("soup_of_one_run", "soup.runs", ("task=soup", "soup.runs=[{work}/empty]")),
    Case("soup_runs_and_sweep", "soup.runs", ("task=soup", "soup.runs=[{work}/a,{work}/b]", "soup.sweep={work}")),
    Case("soup_top_k", "soup.top_k", ("task=soup", "soup.sweep={work}", "soup.top_k=1")),
    Case("soup_run_missing", "soup.runs", ("task=soup", "soup.runs=[{work}/nope,{work}/empty]")),
    Case("soup_run_without_adapter", "soup.runs", ("task=soup", "soup.runs=[{work}/empty,{work}/empty]")),
    Case("soup_sweep_without_trials", "soup.sweep", ("task=soup", "soup.sweep={work}/empty")),
    Case("studio_open_without_login", "studio.host", ("task=studio", "studio.host=0.0.0.0")),
    Case("studio_auth_env_unset", "studio.auth_env", ("task=studio", "studio.auth_env=OCRFT_TEST_UNSET")),
    Case("studio_auth_env_malformed", "studio.auth_env", ("task=studio", "studio.auth_env=OCRFT_TEST_LOGIN"),
         (("OCRFT_TEST_LOGIN", "no-colon"),)),
    Case("serve_api_key_env_empty", "serve.api_key_env", ("task=serve", "serve.api_key_env=OCRFT_TEST_EMPTY"),
         (("OCRFT_TEST_EMPTY", ""),)),
    Case("endpoint_provider", "model.provider", ev("model=endpoint", "model.provider=nope", *TINY_DATA)),
    Case("endpoint_key_missing", "model.provider", ev("model=endpoint", "model.provider=openai", *TINY_DATA)),
    Case("endpoint_key_invalid", "model.api_key_env", ev("model=endpoint", "model.api_key_env=OCRFT_TEST_KEY",
                                                         *TINY_DATA), (("OCRFT_TEST_KEY", "kéy"),)),
    Case("cascade_family", "cascade.family", cascade("cascade.family=foo", "cascade.threshold=-0.5")),
    Case("cascade_family_unreadable", "model.path", cascade("cascade.threshold=-0.5")),
    Case("cascade_threshold_auto_unlabelled", "cascade.threshold",
         ("task=predict", "model=cascade", "model.path={work}/empty", f"predict.input={TINY / 'line_00.png'}")),
    # the sweeper (hydra/sweeper=optuna), before the study's first trial
    Case("sweep_pruner", "hydra.sweeper.pruner.type", sweep("hydra.sweeper.pruner.type=foo")),
    Case("sweep_sampler", "hydra.sweeper.sampler.type", sweep("hydra.sweeper.sampler.type=foo")),
    Case("sweep_on_the_command_line", "train.learning_rate", sweep("train.learning_rate=0.1,0.2")),
    Case("sweep_fixed_and_searched", "train.learning_rate", sweep("train.learning_rate=0.1")),
    Case("sweep_empty_space", "search_space.params", sweep("search_space=none")),
    Case("sweep_bad_param", "search_space.params", sweep("search_space.params.0.path=train.lerning_rate")),
    Case("sweep_grid_needs_steps", "search_space.params", sweep("hydra.sweeper.sampler.type=grid")),
    Case("sweep_direction", "hydra.sweeper.direction", sweep()),  # the study exists to maximize (work_folder)
]  # fmt: skip


def work_folder(case: Case, root: Path) -> Path:
    """The scratch files a case names: a folder with no test split, a hub-style parquet, an
    export copy, an output folder ocrft did not write, a study that maximizes."""
    work = root / case.id
    (work / "empty").mkdir(parents=True)
    (work / "train_only").mkdir()
    (work / "train_only" / "train.json").write_text("[]")
    (work / "a_file").write_text("not a folder")
    (work / "full").mkdir()
    (work / "full" / "notes.txt").write_text("someone else's")
    if case.id == "prepare_output_is_the_input":
        shutil.copytree(EXPORT, work / "export")
    if case.id.startswith("hf_"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        image = {"bytes": (TINY / "line_00.png").read_bytes(), "path": "line_00.png"}
        table = pa.table({"image": [image], "text": ["a line"]})
        features = {"image": {"_type": "Image"}, "text": {"dtype": "string", "_type": "Value"}}
        pq.write_table(table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})}),
                       work / "lines.parquet")  # fmt: skip
    if case.id == "sweep_direction":
        import optuna

        optuna.create_study(storage=f"sqlite:///{work}/optuna.db", study_name="s", direction="maximize")
    return work


def ocrft(case: Case, work: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **dict(case.env)}
    for name in ("HYDRA_FULL_ERROR", "OPENAI_API_KEY", "OCRFT_TEST_UNSET"):
        env.pop(name, None)  # the user-facing behaviour; a key that is not there
    args = [a.replace("{work}", str(work)) for a in case.args]
    flags = [a for a in args if a.startswith("--")]  # Hydra's flags (--multirun) come before the overrides
    cmd = [sys.executable, "-m", "ocrft", *flags, "tracking=none", f"run_dir={work / 'run'}",
           *[a for a in args if a not in flags]]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work, timeout=300)


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """Run the selected cases two at a time (each is mostly an interpreter start-up)."""
    from concurrent.futures import ThreadPoolExecutor

    selected = {item.callspec.params["case"].id for item in request.session.items
                if item.module is request.module and "case" in getattr(item, "callspec", SimpleNamespace(params={})).params}
    cases = [c for c in CASES if c.id in selected]
    root = tmp_path_factory.mktemp("config_errors")
    folders = {c.id: work_folder(c, root) for c in cases}
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip([c.id for c in cases], pool.map(lambda c: ocrft(c, folders[c.id]), cases)))


def test_case_ids_are_unique():
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_config_error_names_its_key(case: Case, runs):
    proc = runs[case.id]
    detail = f"exit {proc.returncode}\n--- stderr (tail) ---\n{proc.stderr[-3000:]}"
    assert proc.returncode == USER, detail
    assert f"ocrft: error: {case.key}" in proc.stderr, detail
    assert "Traceback" not in proc.stderr, detail
