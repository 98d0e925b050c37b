"""The config tree: every recipe composes and validates; bad keys fail naming the key."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from ocrft.config import Task
from ocrft.config import ConfigError
from ocrft.validate import validate_config
from tests.helpers import CONF, REPO, compose

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_validates(name):
    cfg = compose([f"+experiment={name}"])
    validate_config(cfg)
    assert cfg.experiment_name


@pytest.mark.parametrize("name", MODELS)
def test_every_model_family_is_registered(name):
    from ocrft.models.registry import FAMILIES

    cfg = compose([f"model={name}"])
    assert cfg.model.family in FAMILIES or cfg.model.family in ("endpoint", "predictions", "cascade")
    validate_config(cfg)


def test_task_group_offers_every_task():
    options = sorted(p.stem for p in (CONF / "task").glob("*.yaml"))
    assert options == sorted(t.value for t in Task)
    assert compose(["task=eval"]).task == "eval"


def test_misspelt_key_fails_naming_it():
    with pytest.raises(ConfigCompositionException, match="train.learning_rat"):
        compose(["train.learning_rat=1e-4"])


def test_wrong_type_fails_naming_key():
    with pytest.raises(ConfigCompositionException) as err:
        compose(["train.learning_rate=fast"])
    assert isinstance(err.value.__cause__, ValidationError)
    assert "learning_rate" in str(err.value.__cause__)


def test_unknown_family_is_refused_by_validation():
    cfg = compose(["model.family=florence"])
    with pytest.raises(ConfigError, match="model.family='florence'.*known families"):
        validate_config(cfg)


def test_both_quantizations_refused():
    cfg = compose(["quant=4bit", "quant.load_in_8bit=true"])
    with pytest.raises(ConfigError, match="load_in_4bit and quant.load_in_8bit"):
        validate_config(cfg)


def test_cpu_safe_defaults():
    cfg = compose([])
    # None = follow the device: off on CPU, on with CUDA (TRL's defaults turn both on).
    assert cfg.train.bf16 is None and cfg.train.gradient_checkpointing is None
    assert cfg.model.trust_remote_code is False


@pytest.mark.parametrize("override, expected", [(None, False), (True, True)])
def test_sft_config_turns_bf16_and_checkpointing_off_on_cpu(tmp_path, override, expected):
    import warnings

    from ocrft.training.builders import build_sft_config

    cfg = compose([] if override is None else [f"train.gradient_checkpointing={override}"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # no deprecated argument name passed
        args = build_sft_config(cfg.train, seed=0, output_dir=tmp_path, max_length=None)
    assert args.bf16 is False and args.use_cpu is True
    assert args.activation_checkpointing is expected and args.gradient_checkpointing is expected


def test_help_lists_groups_without_importing_torch():
    code = (
        "import sys; sys.argv = ['ocrft', '--help']\n"
        "import ocrft.__main__ as m\n"
        "try:\n    m.main()\nexcept SystemExit:\n    pass\n"
        "print('TORCH_LOADED' if 'torch' in sys.modules else 'NO_TORCH')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    for group in ("model:", "data:", "peft:", "quant:", "task:", "experiment:"):
        assert group in out.stdout
    assert "NO_TORCH" in out.stdout
