"""Adapter soups: one LoRA adapter whose weight delta is the exact mean of several adapters'.

A LoRA layer adds ``s · B·A`` to a weight (``s = lora_alpha / r``). Averaging the A and the B
matrices separately is wrong: ``mean(B)·mean(A) != mean(B·A)``, since the product is not
linear in its factors. Stacking them is exact (peft's ``add_weighted_adapter`` with
``combination_type="cat"``, peft/tuners/lora/model.py): with weights ``w_i`` it builds

    A = [w_1·s_1·A_1; ...; w_n·s_n·A_n]   (rows)      B = [B_1, ..., B_n]   (columns)

with ``r = lora_alpha = sum(r_i)``, so its scaling is 1 and ``B·A = sum(w_i·s_i·B_i·A_i)``:
the mean of the deltas for ``w_i = 1/n``, exactly. The price is the rank, ``sum(r_i)``
(``svd`` would truncate to a lower rank, ``linear`` averages the factors).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ocrft.config import ConfigError
from ocrft.models.loading import ModelPathError, ResolvedModel, resolve_model

log = logging.getLogger(__name__)

SOUP_ADAPTER = "default"  # peft saves the adapter named "default" at the folder's top level


@dataclass(frozen=True)
class Ingredient:
    """One adapter of a soup: the run it came from and what it applies to."""

    run: str  # as the user named it: a run folder or an adapter folder
    resolved: ResolvedModel  # its base checkpoint and adapter folder
    adapter_config: dict[str, Any]  # its adapter_config.json

    @property
    def target_modules(self) -> Any:
        targets = self.adapter_config.get("target_modules")
        # peft writes a set of names as a list in no fixed order; a regex is a string
        return sorted(targets) if isinstance(targets, list) else targets


def read_ingredient(run: str, key: str = "soup.runs") -> Ingredient:
    """The adapter of ``run`` (an ocrft run folder or an adapter folder), read without weights;
    ``key``: the config key that named the run, for the error messages."""
    if not Path(run).expanduser().exists():
        raise ConfigError(f"{key}: {run} does not exist (name ocrft run folders or adapter folders)")
    try:
        resolved = resolve_model(None, str(Path(run).expanduser()))
    except ModelPathError as err:  # its message names model.path, which a soup does not set
        raise ConfigError(f"{key}: {run} is not a run with a saved adapter ({err})") from err
    if not resolved.adapter_path:
        raise ConfigError(f"{key}: {run} holds no LoRA adapter (a full fine-tune or a base model); "
                          f"a soup averages the adapters of runs trained with peft=lora")  # fmt: skip
    config = json.loads((Path(resolved.adapter_path) / "adapter_config.json").read_text(encoding="utf-8"))
    return Ingredient(run=run, resolved=resolved, adapter_config=config)


def check_compatible(ingredients: Sequence[Ingredient], key: str = "soup.runs") -> None:
    """Refuse a soup whose adapters do not add up: another base, family or target modules,
    or an adapter whose delta is not ``s·B·A`` (DoRA, rsLoRA, modules_to_save).

    Raises:
        ConfigError: starting with ``key`` (the config key that named the runs), naming both
            runs and what differs.
    """
    first = ingredients[0]
    for other in ingredients:
        config = other.adapter_config
        if config.get("peft_type") != "LORA" or config.get("use_dora") or config.get("use_rslora"):
            # DoRA rescales each column by a learned magnitude, rsLoRA scales by alpha/sqrt(r),
            # which a cat of rank sum(r_i) would change: neither is a plain sum of s·B·A
            raise ConfigError(f"{key}: {other.run} is not a plain LoRA adapter (peft_type={config.get('peft_type')}, "
                              f"use_dora={config.get('use_dora')}, use_rslora={config.get('use_rslora')}); "
                              f"a soup averages peft=lora adapters")  # fmt: skip
        if config.get("modules_to_save"):
            raise ConfigError(f"{key}: {other.run} also trains whole modules (modules_to_save="
                              f"{config['modules_to_save']}), which an average of LoRA deltas cannot hold")  # fmt: skip
        differences = {
            "family": (first.resolved.family, other.resolved.family),
            "base model": (first.resolved.base_path, other.resolved.base_path),
            "target modules": (first.target_modules, other.target_modules),
        }
        for what, (a, b) in differences.items():
            if a != b:
                raise ConfigError(f"{key}: {first.run} and {other.run} have different {what} ({a!r} vs {b!r}); "
                                  f"a soup averages adapters of one base, family and target modules")  # fmt: skip


def average_adapters(base_model: Any, ingredients: Sequence[Ingredient]) -> Any:
    """``base_model`` with one adapter, ``default``, whose delta is the mean of the ingredients'.

    Each adapter is loaded as ``run<i>`` (in float32: peft upcasts adapter weights by
    default), stacked into ``default`` (see the module docstring) and then deleted, so the
    returned PeftModel saves like any trained adapter.
    """
    from peft import PeftModel

    names = [f"run{i}" for i in range(len(ingredients))]
    model = PeftModel.from_pretrained(base_model, ingredients[0].resolved.adapter_path, adapter_name=names[0])
    for name, ingredient in zip(names[1:], ingredients[1:]):
        model.load_adapter(ingredient.resolved.adapter_path, adapter_name=name)
    weights = [1.0 / len(ingredients)] * len(ingredients)
    model.add_weighted_adapter(names, weights, adapter_name=SOUP_ADAPTER, combination_type="cat")
    # peft joins regex targets as "(t1)|(t2)|..."; check_compatible made them one and the same
    model.peft_config[SOUP_ADAPTER].target_modules = model.peft_config[names[0]].target_modules
    model.set_adapter(SOUP_ADAPTER)
    for name in names:
        model.delete_adapter(name)
    log.info("soup: %d adapters averaged into one of rank %d", len(names), model.peft_config[SOUP_ADAPTER].r)
    return model
