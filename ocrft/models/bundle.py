"""The one place that resolves a model config and loads its processor and weights.

    bundle = load_bundle(cfg.model)                        # processor and weights
    bundle = load_bundle(cfg.model, weights=False)         # processor only (token counts, params)
    bundle = load_bundle(cfg.model, trainable=True, quantization_config=bnb)  # task=train

Resolving (``model.path`` -> base checkpoint + adapter, ocrft.models.loading.resolve_model),
checking the checkpoint's architecture against ``model.family``, the pixel budget or image
size (``model.min_pixels``/``max_pixels``/``image_size``) and the loading options
(``model.dtype``, ``attn_implementation``, ``trust_remote_code``) are read here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ocrft.models.loading import ResolvedModel, check_family, configured_processor, load_model, resolve_model
from ocrft.models.registry import ModelFamily, get_family


@dataclass
class ModelBundle:
    resolved: ResolvedModel  # what was loaded: the base checkpoint and the adapter, if any
    family: ModelFamily
    processor: Any
    model: Any = None  # None when loaded with weights=False


def load_bundle(model_cfg: Any, *, weights: bool = True, trainable: bool = False, quantization_config: Any = None,
                processor: Any = None) -> ModelBundle:  # fmt: skip
    """``model_cfg`` (the ``model`` config section) resolved, checked and loaded.

    Args:
        weights: load the model too (False: the processor only).
        trainable: the adapter, if any, is loaded trainable (task=train continues it).
        quantization_config: bitsandbytes loading (ocrft.training.builders.build_bnb_config).
        processor: one the caller already loaded for this model, reused instead of loaded again.
    """
    resolved = resolve_model(model_cfg.family, model_cfg.path)
    check_family(resolved, resolved.family)  # a run folder's model card names its family; else model.family
    processor = processor if processor is not None else configured_processor(resolved, model_cfg)
    model = None
    if weights:
        model = load_model(resolved, model_cfg.dtype, quantization_config, model_cfg.attn_implementation,
                           trust_remote_code=model_cfg.trust_remote_code, adapter_trainable=trainable)  # fmt: skip
    return ModelBundle(resolved=resolved, family=get_family(resolved.family), processor=processor, model=model)
