"""What each ``model.backend`` does, in one table: how task=eval scores a split with it, and
how task=predict and task=serve get a generator from it. The tasks look the backend up here
instead of comparing strings (STYLE.md: a registry, not if/else chains).

    backend      eval                                        predict / serve
    local        evaluation.local.run_local_eval             evaluation.generation.build_generator
    endpoint     evaluation.endpoint_eval.run_endpoint_eval  -
    cascade      evaluation.cascade_eval.run_cascade_eval    evaluation.cascade_generator.build_cascade_generator
    predictions  evaluation.predictions_eval.run_predictions_eval  -
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from ocrft.config import ConfigError

# "module:function", imported on use: an endpoint run never imports torch.
EVALUATORS = {
    "local": "ocrft.evaluation.local:run_local_eval",
    "endpoint": "ocrft.evaluation.endpoint_eval:run_endpoint_eval",
    "cascade": "ocrft.evaluation.cascade_eval:run_cascade_eval",
    "predictions": "ocrft.evaluation.predictions_eval:run_predictions_eval",
}
GENERATORS = {
    "local": "ocrft.evaluation.generation:build_generator",
    "cascade": "ocrft.evaluation.cascade_generator:build_cascade_generator",
}


def _load(target: str) -> Callable[..., Any]:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def evaluator(backend: str) -> Callable[..., tuple[dict, dict[str, str]]]:
    """``run(cfg, records, run_dir, tracker=...) -> (metrics, paths)`` for ``model.backend``."""
    return _load(EVALUATORS[backend])


def generator_builder(backend: str, task: str) -> Callable[[Any], Any]:
    """``build(cfg) -> generator`` (``generate``/``generate_detailed``) for ``model.backend``.

    Raises:
        ConfigError: naming model.backend when it has no generator (an endpoint is served by
            its own server; another engine's output reads no new image).
    """
    if backend not in GENERATORS:
        raise ConfigError(f"model.backend={backend}: task={task} reads images with a local model or a cascade "
                          f"(model.backend={' or '.join(GENERATORS)}); model={backend} only scores with task=eval")  # fmt: skip
    return _load(GENERATORS[backend])
