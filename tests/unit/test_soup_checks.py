"""What a soup accepts, decided from the adapters' configs and model cards alone (no weights),
and the validation of soup.* at start."""

from __future__ import annotations

import pytest

from ocrft.config import ConfigError
from ocrft.models.loading import ResolvedModel
from ocrft.models.soup import Ingredient, check_compatible
from ocrft.validate import validate_config
from tests.helpers import compose

LORA = {"peft_type": "LORA", "r": 16, "lora_alpha": 32, "use_dora": False, "use_rslora": False,
        "modules_to_save": None, "target_modules": ["q_proj", "v_proj"]}  # fmt: skip


def _ingredient(run: str, family: str = "qwen2_vl", base: str = "/models/base", **config) -> Ingredient:
    return Ingredient(run=run, resolved=ResolvedModel(family, base, f"{run}/adapter"), adapter_config={**LORA, **config})


def test_adapters_of_one_base_family_and_targets_are_accepted_whatever_their_ranks():
    # peft writes a set of target names as a list in no fixed order
    check_compatible([_ingredient("a"), _ingredient("b", r=8, lora_alpha=8, target_modules=["v_proj", "q_proj"])])


@pytest.mark.parametrize(
    ("other", "differs"),
    [
        (_ingredient("b", family="gemma3"), "different family"),
        (_ingredient("b", base="/models/other"), "different base model"),
        (_ingredient("b", target_modules=["q_proj"]), "different target modules"),
        (_ingredient("b", target_modules=".*language_model.*\\.(q_proj)"), "different target modules"),
        (_ingredient("b", use_dora=True), "not a plain LoRA adapter"),
        (_ingredient("b", use_rslora=True), "not a plain LoRA adapter"),
        (_ingredient("b", peft_type="IA3"), "not a plain LoRA adapter"),
        (_ingredient("b", modules_to_save=["lm_head"]), "modules_to_save"),
    ],
)
def test_a_mismatch_is_refused_naming_the_key_and_the_runs(other, differs):
    with pytest.raises(ConfigError, match=r"^soup\.sweep: ") as err:
        check_compatible([_ingredient("a"), other], key="soup.sweep")
    assert differs in str(err.value) and "b" in str(err.value)
    if "different" in differs:
        assert str(err.value).startswith("soup.sweep: a and b have")


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ([], r"soup\.runs or soup\.sweep"),
        (["soup.runs=[a]"], r"soup\.runs="),
        (["soup.runs=[a,b]", "soup.sweep=s"], r"soup\.runs or soup\.sweep"),
        (["soup.sweep=s", "soup.top_k=1"], r"soup\.top_k=1"),
    ],
)
def test_soup_keys_are_checked_at_start(overrides, key):
    with pytest.raises(ConfigError, match=rf"^{key}"):
        validate_config(compose(["task=soup", *overrides]))
    validate_config(compose(["task=soup", "soup.runs=[a,a]"]))
    validate_config(compose(["task=soup", "soup.sweep=s", "soup.top_k=2"]))
