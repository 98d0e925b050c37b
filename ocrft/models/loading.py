"""Resolve ``model.path`` and load model + processor through ``from_pretrained``.

``model.path`` may be a hub id, a local checkpoint folder, an ocrft run folder (its base
model plus the adapter it trained), ``tiny:<family>`` (a tiny random checkpoint built
offline on first use; ``small:<family>`` is a larger one) or ``asset:<name>`` (a checkpoint shipped inside ocrft).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Optional

from ocrft import atomic
from ocrft.cache_entry import build_once
from ocrft.models.registry import get_family
from ocrft.paths import cache_dir

log = logging.getLogger(__name__)

MODEL_CARD = "ocrft_model.json"  # written beside every adapter / full model ocrft saves
ASSETS = Path(__file__).resolve().parents[1] / "assets"


class ModelPathError(ValueError):
    """model.path names nothing loadable; the message says what was tried."""


@dataclass(frozen=True)
class ResolvedModel:
    family: str
    base_path: str  # what from_pretrained loads the base model and processor from
    adapter_path: Optional[str] = None  # a PEFT adapter to apply on top


# Sizes of the offline-built checkpoints: `tiny:` for tests, `small:` for the demo's OCR base.
SIZES = {"tiny": {}, "small": {"hidden_size": 160, "layers": 4, "heads": 4, "vision_width": 96}}


# What every complete offline checkpoint holds; the cache rebuilds a folder that misses one.
TINY_FILES = ("config.json", "model.safetensors", "tokenizer_config.json", "processor_config.json")


def ensure_tiny(family: str, root: Optional[Path] = None, size: str = "tiny") -> Path:
    """Build the ``size`` (tiny or small) ``family`` checkpoint once and return its folder.

    Safe when several processes ask at once (torchrun ranks, parallel runs): one builds it
    under a lock while the others wait, and a broken cached folder is rebuilt (ocrft/cache_entry.py).
    """
    out = (root or cache_dir() / size) / family
    build = partial(get_family(family).build_tiny, **SIZES[size])
    return build_once(out, build, TINY_FILES, f"{size} {family} checkpoint")


def resolve_model(family: Optional[str], path: str) -> ResolvedModel:
    """Turn ``model.family``/``model.path`` into what to load (see module docstring)."""
    scheme, _, rest = path.partition(":")
    if scheme in SIZES and rest:
        return ResolvedModel(rest, str(ensure_tiny(rest, size=scheme)))
    if path.startswith("asset:"):  # a model shipped in the package: then read like any folder
        local = ASSETS / path.split(":", 1)[1]
        if not local.is_dir():
            raise ModelPathError(f"model.path={path!r}: no asset folder {local}")
    else:
        local = Path(path).expanduser()
    if local.is_dir():
        for sub in (local, local / "adapter", local / "model", local / "best"):
            card = sub / MODEL_CARD
            if card.exists():
                meta = json.loads(card.read_text())
                if meta.get("adapter"):
                    base = resolve_model(meta["family"], meta["base_path"])
                    return ResolvedModel(meta["family"], base.base_path, str(sub))
                return ResolvedModel(meta["family"], str(sub))
        if (local / "adapter_config.json").exists():
            base = json.loads((local / "adapter_config.json").read_text())["base_model_name_or_path"]
            return ResolvedModel(family, resolve_model(family, base).base_path, str(local))
        if (local / "run.json").exists():
            raise ModelPathError(f"model.path={path!r} is an ocrft run folder without a saved model (did it finish?)")
        if not (local / "config.json").exists():
            raise ModelPathError(f"model.path={path!r} is a folder without config.json: not a checkpoint")
        return ResolvedModel(family, str(local))
    if path.startswith((".", "/", "~")) or os.sep in path and path.count("/") > 1:
        raise ModelPathError(f"model.path={path!r} does not exist")
    return ResolvedModel(family, path)  # a hub id; loading fails clearly when offline


def write_model_card(folder: Path, *, family: str, adapter: bool, base_path: Optional[str] = None,
                     source_model_path: Optional[str] = None) -> Path:  # fmt: skip
    """``folder/ocrft_model.json``, the card :func:`resolve_model` reads back: the family, and of
    an adapter the base checkpoint it applies to. The one writer of the card."""
    card: dict[str, Any] = {"family": family, "adapter": adapter}
    if base_path is not None:
        card["base_path"] = base_path
    if source_model_path is not None:
        card["source_model_path"] = source_model_path
    return atomic.write_json(Path(folder) / MODEL_CARD, card)


def check_family(resolved: ResolvedModel, declared: str) -> None:
    """Refuse a checkpoint of another family than ``model.family`` says (before loading it)."""
    config_file = Path(resolved.base_path) / "config.json"
    if not config_file.exists():
        return  # hub id: transformers checks the architecture itself
    model_type = json.loads(config_file.read_text()).get("model_type", "")
    # Family names are the transformers model_type of their checkpoints.
    if model_type != declared:
        raise ModelPathError(
            f"model.family={declared!r} but {config_file} is a {model_type!r} checkpoint; "
            f"set model.family to the checkpoint's family"
        )


def torch_dtype(name: str):
    import torch

    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
            "float16": torch.float16, "fp16": torch.float16}[name]  # fmt: skip


def load_processor(
    resolved: ResolvedModel,
    min_pixels: Optional[int] = None,
    max_pixels: Optional[int] = None,
    image_size: Optional[int] = None,
):
    """The family's processor with the run's pixel budget (Qwen) or image size (Gemma 3, PaliGemma)."""
    require_fetchable(resolved.base_path)
    processor = get_family(resolved.family).load_processor(resolved.base_path, min_pixels, max_pixels, image_size)
    tokenizer = processor.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return processor


def image_params(family: str, processor) -> dict[str, dict[str, int]]:
    """``{"model": {...}}``: the pixel budget or image size ``processor`` actually uses, as the
    run's MLflow params (``model.max_pixels``, ``model.image_size``; the config's None means
    the processor's own, which only the loaded processor knows)."""
    return {"model": get_family(family).image_settings(processor)}


def configured_processor(resolved: ResolvedModel, model_cfg):
    """:func:`load_processor` with ``model_cfg``'s pixel budget and image size (``model.*``)."""
    return load_processor(resolved, model_cfg.min_pixels, model_cfg.max_pixels, model_cfg.image_size)


def load_model(
    resolved: ResolvedModel,
    dtype: str = "auto",
    quantization_config: Any = None,
    attn_implementation: Optional[str] = "sdpa",
    *,
    trust_remote_code: bool = False,
    adapter_trainable: bool = False,
):
    """Load the base model (quantized if asked) and apply the adapter, if any."""
    import transformers

    family = get_family(resolved.family)
    model_class = getattr(transformers, family.model_class)
    kwargs: dict[str, Any] = dict(dtype=torch_dtype(dtype), trust_remote_code=trust_remote_code, use_safetensors=True)
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        kwargs["device_map"] = {"": _device()}
    require_fetchable(resolved.base_path)
    require_safetensors(resolved.base_path, "model.safetensors")
    if resolved.adapter_path:
        require_safetensors(resolved.adapter_path, "adapter_model.safetensors")
    log.info("loading %s from %s", family.model_class, resolved.base_path)
    model = model_class.from_pretrained(resolved.base_path, **kwargs)
    if quantization_config is not None and _device() == "cpu":
        _keep_cpu_4bit_layout(model)
    if resolved.adapter_path:
        from peft import PeftModel

        log.info("applying adapter %s", resolved.adapter_path)
        model = PeftModel.from_pretrained(model, resolved.adapter_path, is_trainable=adapter_trainable)
    return model


def require_fetchable(path: str) -> None:
    """Refuse a hub id that is not in the local cache while the hub cannot be reached.

    One request with a bounded timeout (ocrft/models/hub.py) instead of huggingface_hub's
    minute of retries per file ending in an OSError about one file.

    Raises:
        ModelPathError: naming the id, the cache, and the fixes.
    """
    if Path(path).expanduser().is_dir():
        return
    from ocrft.models.hub import unfetchable_reason

    reason = unfetchable_reason(path)
    if reason:
        raise ModelPathError(reason)


def require_safetensors(folder: str, expected: str) -> None:
    """Refuse a local checkpoint folder without safetensors weights, before loading it.

    Pickle weights (``*.bin``, ``*.pt``, ``*.pth``, ``*.ckpt``) can run code when loaded,
    so ocrft loads safetensors only (SECURITY.md); hub ids are left to ``use_safetensors``.

    Raises:
        ModelPathError: naming the folder and the pickle files found in it.
    """
    local = Path(folder)
    if not local.is_dir() or any(local.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in local.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl"))
    found = f"it holds only pickle weights {pickles}, which can run code when loaded" if pickles else "it holds no weights"
    raise ModelPathError(
        f"{local}: no {expected} (ocrft loads safetensors weights only); {found}. "
        "Convert the checkpoint to safetensors with a tool you trust, or point model.path elsewhere"
    )


def _keep_cpu_4bit_layout(model) -> None:
    """Stop bitsandbytes repacking 4-bit weights for AVX512-BF16 at the first eval forward.

    bitsandbytes 0.50 repacks in place on CPUs that support it, and the repacked layout
    fails on layers narrower than its tiles ("shape '[96, 0]' is invalid"), e.g. the first
    generation after QLoRA training. The repacking is a speed path only.
    """
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
