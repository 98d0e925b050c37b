"""Security properties SECURITY.md promises, each proved here or in the test it names.

- Remote code: ``trust_remote_code`` is false in every model config and reaches
  ``from_pretrained`` as the user set it.
- Pickles: weights load from safetensors only (a pickle-only checkpoint is refused before
  anything is unpickled); no ``torch.load`` without ``weights_only=True`` in ocrft, nor in
  the Trainer's resume path of the installed transformers.
- Keys: read from the environment only, and absent from every file a run writes, the MLflow
  store and artifacts included (a planted key is grepped for byte by byte).
- Server: binds loopback by default; its key, body-size and image-size limits are enforced
  (tests/integration/test_serve.py: test_wrong_or_missing_bearer_is_401,
  test_oversized_body_is_413_declared_or_streamed, test_hostile_images_are_refused_before_the_model).
- Paths: PAGE/ALTO exports cannot name images outside their folder
  (tests/unit/test_page_xml.py: test_image_paths_leaving_the_export_are_refused); a user's
  own JSON/JSONL may name any local image, but never a remote one.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import CONF, REPO, compose

pytestmark = pytest.mark.integration

PACKAGES = [REPO / "ocrft", REPO / "hydra_plugins"]


def python_files() -> list[Path]:
    return sorted(p for root in PACKAGES for p in root.rglob("*.py"))


def ocrft_cli(cwd: Path, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    return subprocess.run([sys.executable, "-m", "ocrft", *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd, timeout=timeout)  # fmt: skip


# --- remote code -----------------------------------------------------------------------------


@pytest.mark.parametrize("model", sorted(p.stem for p in (CONF / "model").glob("*.yaml")))
def test_trust_remote_code_is_off_in_every_model_config(model):
    assert compose([f"model={model}"]).model.trust_remote_code is False


def test_nothing_turns_trust_remote_code_on():
    on = re.compile(r"trust_remote_code\s*[=:]\s*(True|true)\b")
    hits = [f"{p}:{i}" for p in [*python_files(), *CONF.rglob("*.yaml")]
            for i, line in enumerate(p.read_text().splitlines(), 1) if on.search(line)]  # fmt: skip
    assert hits == []


class Captured(Exception):
    """Raised by a stand-in for the loader to hand its keyword arguments to the test."""


@pytest.mark.parametrize("value", [False, True])
def test_trust_remote_code_and_safetensors_reach_from_pretrained(tmp_path, monkeypatch, value):
    """From the config through build_generator and load_model to from_pretrained, as set."""
    import transformers

    import ocrft.models.loading as loading
    from ocrft.evaluation.generation import build_generator
    from ocrft.models.registry import get_family

    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "qwen2_vl"}')
    (folder / "model.safetensors").write_bytes(b"")

    def from_pretrained(cls, path, **kwargs):
        raise Captured(kwargs)

    model_class = getattr(transformers, get_family("qwen2_vl").model_class)
    monkeypatch.setattr(model_class, "from_pretrained", classmethod(from_pretrained))
    cfg = compose([f"model.path={folder}", f"model.trust_remote_code={str(value).lower()}", "tracking=none", "run_dir=x"])
    with pytest.raises(Captured) as got:
        build_generator(cfg, processor=object())
    assert got.value.args[0]["trust_remote_code"] is value
    assert got.value.args[0]["use_safetensors"] is True
    with pytest.raises(Captured) as got:  # the training path calls load_model positionally
        loading.load_model(loading.ResolvedModel("qwen2_vl", str(folder)), "float32", None, "sdpa", trust_remote_code=value)
    assert got.value.args[0]["trust_remote_code"] is value


# --- pickles -----------------------------------------------------------------------------------


class _Payload:
    """Unpickling this runs a command: what a hostile ``pytorch_model.bin`` can do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def pickle_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A tiny Qwen2-VL whose weights are a hostile pickle, and an adapter that is one too."""
    from ocrft.models.loading import ensure_tiny

    tmp = tmp_path_factory.mktemp("pickles")
    marker = tmp / "UNPICKLED"
    base = tmp / "base"
    shutil.copytree(ensure_tiny("qwen2_vl"), base, ignore=shutil.ignore_patterns("*.safetensors"))
    (base / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    adapter = tmp / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "tiny:qwen2_vl", "peft_type": "LORA"}))
    (adapter / "adapter_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    return {"base": base, "adapter": adapter, "marker": marker}


@pytest.mark.slow  # an interpreter start-up that imports torch and transformers
def test_pickle_only_checkpoint_is_refused_by_the_cli(tmp_path, pickle_checkpoints):
    base = pickle_checkpoints["base"]
    proc = ocrft_cli(tmp_path, "task=eval", "tracking=none", f"run_dir={tmp_path / 'run'}", "data.num_test=1",
                     f"model.path={base}")  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert f"ocrft: error: {base}: no model.safetensors" in proc.stderr and "pytorch_model.bin" in proc.stderr
    assert not pickle_checkpoints["marker"].exists()  # never unpickled


def test_pickle_only_adapter_is_refused_before_the_base_model_loads(pickle_checkpoints):
    from ocrft.models.loading import ModelPathError, load_model, resolve_model

    resolved = resolve_model("qwen2_vl", str(pickle_checkpoints["adapter"]))
    assert resolved.adapter_path == str(pickle_checkpoints["adapter"])
    with pytest.raises(ModelPathError, match=r"no adapter_model\.safetensors .*\['adapter_model\.bin'\]"):
        load_model(resolved, dtype="float32")
    assert not pickle_checkpoints["marker"].exists()


def _calls(path: Path, names: set[str]) -> list[ast.Call]:
    """Calls in ``path`` whose function is spelt ``a.b`` or ``b`` with a dotted name in ``names``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name in names:
                found.append(node)
    return found


def _weights_only(call: ast.Call) -> bool:
    return any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True for k in call.keywords)


def test_no_unguarded_unpickling_in_ocrft():
    unpicklers = {"pickle.load", "pickle.loads", "joblib.load", "dill.load", "dill.loads", "cloudpickle.load",
                  "cloudpickle.loads", "numpy.load", "np.load", "pd.read_pickle", "pandas.read_pickle"}  # fmt: skip
    offenders = [f"{p}:{c.lineno}" for p in python_files() for c in _calls(p, unpicklers)]
    offenders += [f"{p}:{c.lineno}" for p in python_files() for c in _calls(p, {"torch.load"}) if not _weights_only(c)]
    assert offenders == []


def test_trainer_resume_loads_state_with_weights_only():
    """Resuming a Trainer checkpoint unpickles optimizer, scheduler, scaler and RNG state:
    the installed transformers must pass weights_only=True to every torch.load it does."""
    import transformers.trainer

    calls = _calls(Path(transformers.trainer.__file__), {"torch.load"})
    assert calls, "transformers no longer calls torch.load in trainer.py: re-check how it resumes"
    assert [c.lineno for c in calls if not _weights_only(c)] == []


# --- keys --------------------------------------------------------------------------------------


ENV_KEY = "sk-test-PLANTED-env-0123456789"  # the real key, in OPENAI_API_KEY
CLI_KEY = "sk-PLANTED2-cli-0123456789abcdef"  # pasted on the command line as +model.api_key
SHAPED = "sk-PLANTED3shapedabcdefghijklmnopqrstu"  # a key-shaped value under an innocent key
PLANTED = [ENV_KEY, CLI_KEY, SHAPED]


@pytest.mark.slow  # a training run and an endpoint evaluation, both tracked in MLflow
def test_planted_keys_reach_no_file_no_log_and_no_mlflow_store(tmp_path):
    from tests.fake_openai import FakeOpenAI, make_dataset

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {"OPENAI_API_KEY": ENV_KEY}
    common = ["tracking=mlflow", f"tracking.uri={store}", f"+model.api_key={CLI_KEY}", f"run_name={SHAPED}"]
    train = ocrft_cli(tmp_path, *common, f"run_dir={tmp_path / 'train'}", "train.max_steps=2", "data.num_train=4",
                      "data.num_val=1", "data.num_test=2", "eval.before_after=false", "eval.max_new_tokens=4", env=env)  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]

    records, labels, _ = make_dataset(tmp_path / "img", 3)
    data = tmp_path / "test.json"
    data.write_text(json.dumps([{"img_path": r.image, "ocr_results": r.text} for r in records], ensure_ascii=False))
    with FakeOpenAI(labels, api_key=ENV_KEY) as server:  # answers only the key from the environment
        evaluation = ocrft_cli(tmp_path, *common, "task=eval", "model=endpoint", "model.provider=openai",
                               f"model.base_url={server.url}", "data=json_ocr", f"data.test_file={data}",
                               f"run_dir={tmp_path / 'eval'}", env=env)  # fmt: skip
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    run = json.loads((tmp_path / "eval" / "run.json").read_text())
    assert run["metrics"]["eval/num_errors"] == 0  # the key was read and sent: every request passed auth
    assert run["mlflow_run_id"] and json.loads((tmp_path / "train" / "run.json").read_text())["mlflow_run_id"]
    assert "***REDACTED***" in (tmp_path / "train" / "config.yaml").read_text()  # the override was there

    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "mlflow.db" for p in files) and any("mlruns" in p.parts for p in files)
    leaks = [f"{key} in {p}" for p in files for key in PLANTED if key.encode() in p.read_bytes()]
    leaks += [f"{key} in output" for proc in (train, evaluation) for key in PLANTED if key in proc.stdout + proc.stderr]
    assert leaks == []
    assert len(files) > 30  # the grep covered the run folders, the store and its artifacts


# --- server and paths -------------------------------------------------------------------------


def test_server_binds_loopback_without_a_key_by_default():
    serve = compose(["task=serve"]).serve
    assert serve.host == "127.0.0.1" and serve.api_key_env is None
    assert serve.max_body_bytes <= 20 * 2**20 and serve.max_image_pixels <= 40_000_000


def test_user_data_may_name_any_local_image_but_no_remote_one(tmp_path):
    """A user's own JSON/JSONL is trusted to point at their images, wherever they are
    (absolute paths, ``..``); only imported exports are confined (see the module docstring).
    Remote URLs are never fetched."""
    from ocrft.data.readers import read_json_ocr, read_messages

    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(REPO / "tests" / "assets" / "bad_input" / "good.png", images / "a.png")
    labels = tmp_path / "labels" / "set.json"
    labels.parent.mkdir()
    labels.write_text(json.dumps([{"img_path": str(images / "a.png"), "ocr_results": "absolute"},
                                  {"img_path": "../images/a.png", "ocr_results": "relative"}]))  # fmt: skip
    assert [r.image for r in read_json_ocr(labels).records] == [str(images / "a.png")] * 2

    remote = tmp_path / "remote.jsonl"
    remote.write_text(json.dumps({"messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]},
        {"role": "assistant", "content": "x"}]}) + "\n")  # fmt: skip
    result = read_messages(remote, on_error="skip")
    assert result.records == [] and result.skipped == {"unsupported_image": 1}


PLANTED_IN_SWEEP = "sk-plantedSweepKey0123456789abcdefXYZ"


@pytest.mark.parametrize("sweeper", ["optuna", "basic"])
def test_a_key_typed_into_a_sweep_command_stays_out_of_multirun_yaml(tmp_path, sweeper):
    """Hydra saves a multirun's config, overrides as typed, in <sweep dir>/multirun.yaml:
    ocrft's sweeper writes it redacted, and with Hydra's basic sweeper the sweep callback
    redacts it when the first job starts."""
    if sweeper == "optuna":
        app = [str(REPO / "tests" / "assets" / "sweep_app" / "app.py"), "--multirun", "hydra/sweeper=optuna",
               "hydra.sweeper.n_trials=1", f"hydra.sweeper.storage=sqlite:///{tmp_path}/optuna.db"]  # fmt: skip
    else:  # a job that fails at once (no input to predict) still starts, and the callback runs then
        app = ["-m", "ocrft", "--multirun", "task=predict", "tracking=none", "seed=1,2"]
    cmd = [sys.executable, *app, f"hydra.sweep.dir={tmp_path / 'sweep'}", f"+planted={PLANTED_IN_SWEEP}"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    saved = (tmp_path / "sweep" / "multirun.yaml").read_text()
    assert "planted: '***REDACTED***'" in saved or "planted: ***REDACTED***" in saved, proc.stderr[-3000:]
    # The stand-in app keeps Hydra's .hydra/ job copies (ocrft turns them off: hydra.output_subdir)
    files = [p for p in tmp_path.rglob("*") if p.is_file() and ".hydra" not in p.parts]
    assert [str(p) for p in files if PLANTED_IN_SWEEP.encode() in p.read_bytes()] == []
    if sweeper == "optuna":
        assert "planted: '***REDACTED***'" in (tmp_path / "sweep" / "best.yaml").read_text()
