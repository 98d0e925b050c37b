"""The config tree: every recipe composes and validates; bad keys fail naming the key."""

from __future__ import annotations

import re
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


# what an experiment needs from the command line (demo_grpo continues the demo's SFT run)
REQUIRED = {"demo_grpo": ["model.path=outputs/demo"]}


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_validates(name):
    cfg = compose([f"+experiment={name}", *REQUIRED.get(name, [])])
    validate_config(cfg)
    assert cfg.experiment_name


@pytest.mark.parametrize("name", MODELS)
def test_every_model_family_is_registered(name):
    """Each conf/model file validates as shipped; its family one letter off is refused by a
    message that names model.family and offers the shipped family among the known ones."""
    cfg = compose([f"model={name}"])
    validate_config(cfg)
    if cfg.model.backend in ("endpoint", "predictions"):  # no architecture of ours is loaded
        assert cfg.model.family is None
        return
    # model=cascade names its local model's family as cascade.family (model.family follows it)
    key = "cascade.family" if cfg.model.backend == "cascade" else "model.family"
    family = cfg.model.family or "qwen2_vl"
    cfg.model.family = family + "x"
    with pytest.raises(ConfigError, match=rf"^{key}='{family}x' is unknown; known families: ") as err:
        validate_config(cfg)
    assert f"'{family}'" in str(err.value).split("known families: ", 1)[1]


def test_model_backend_is_one_of_four_and_a_local_model_needs_its_family():
    cfg = compose(["model.backend=remote"])
    with pytest.raises(ConfigError, match=r"^model\.backend='remote'; choose one of \['local', 'endpoint', 'cascade', 'predictions'\]"):
        validate_config(cfg)
    cfg = compose(["model.family=null"])
    with pytest.raises(ConfigError, match=r"^model\.family is not set"):
        validate_config(cfg)
    # the endpoint keys belong to model=endpoint only
    with pytest.raises(Exception, match="base_url"):
        compose(["model.base_url=http://127.0.0.1:8000/v1"])
    assert compose(["model=endpoint", "model.base_url=http://127.0.0.1:8000/v1"]).model.base_url.endswith("/v1")


def test_every_family_a_refusal_offers_is_accepted():
    """The refusal of an unknown model.family lists every registered family; each value it
    offers then validates. It points to model=endpoint/cascade/predictions for the rest."""
    from ocrft.models.registry import FAMILIES

    with pytest.raises(ConfigError, match=r"^model\.family='florence' is unknown") as err:
        validate_config(compose(["model.family=florence"]))
    offered = re.findall(r"'(\w+)'", str(err.value).split("known families: ", 1)[1])
    assert set(offered) == set(FAMILIES) and "model=endpoint" in str(err.value)
    for family in offered:
        validate_config(compose([f"model.family={family}"]))


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


def test_default_config_validates_and_loads_its_model_without_remote_code(monkeypatch):
    """`python -m ocrft` as shipped: the composed default validates, and its model is loaded
    (through load_bundle, as every task loads one) without running code from the model's
    folder. That its trainer arguments are CPU-safe (no bf16, no gradient checkpointing on a
    CPU) is the next test's None case."""
    import transformers

    from ocrft.models.bundle import load_bundle
    from ocrft.models.registry import get_family

    cfg = compose([])
    validate_config(cfg)
    loaded = {}

    def from_pretrained(path, **kwargs):
        loaded.update(kwargs, path=path)
        return "the model"

    model_class = getattr(transformers, get_family(cfg.model.family).model_class)
    monkeypatch.setattr(model_class, "from_pretrained", from_pretrained)
    bundle = load_bundle(cfg.model)
    assert bundle.model == "the model" and loaded["trust_remote_code"] is False


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
