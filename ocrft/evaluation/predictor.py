"""The Predictor: one reader per ``model.backend``, and all that eval, predict, serve,
validation and the cascade know of a model.

    backend      predictor (imported on use: an endpoint run never imports torch)     reads images
    local        ocrft.evaluation.local.LocalPredictor                                yes
    endpoint     ocrft.evaluation.endpoint_eval.EndpointPredictor                     yes
    cascade      ocrft.evaluation.cascade_eval.CascadePredictor                       yes
    predictions  ocrft.evaluation.predictions_eval.PredictionsPredictor               no

Every predictor returns one :class:`ocrft.evaluation.generation.Generation` per record, in
the records' order. What is resumable is the predictor's own business (a local model's
batches and an endpoint's requests are checkpointed differently: see each module); the
tasks only call :func:`build_predictor`, ``predict``/``read``, ``report`` and ``close``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Sequence

from ocrft.config import ConfigError
from ocrft.data.record import Record
from ocrft.evaluation.generation import Generation

OnBatch = Callable[[list[int], list[Generation]], None]

PREDICTORS = {
    "local": "ocrft.evaluation.local:LocalPredictor",
    "endpoint": "ocrft.evaluation.endpoint_eval:EndpointPredictor",
    "cascade": "ocrft.evaluation.cascade_eval:CascadePredictor",
    "predictions": "ocrft.evaluation.predictions_eval:PredictionsPredictor",
}


@dataclass
class Report:
    """What a predictor adds to an evaluation besides the per-sample scores: ``metrics``
    (eval/ prefixed by task=eval), ``extra`` (top-level keys of results.json) and ``paths``
    (files it wrote, logged as artifacts)."""

    metrics: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)


class Predictor(Protocol):
    """Reads images with one model, whatever the backend.

    ``reads_images`` is False for a backend that only brings readings made elsewhere
    (model=predictions): task=predict and task=serve refuse it.
    """

    reads_images: bool

    def predict(self, records: Sequence[Record], on_batch: Optional[OnBatch] = None) -> list[Generation]:
        """One Generation per record; ``on_batch(indices, outputs)`` sees each finished batch."""
        ...

    def read(self, images: Sequence[Any], prompts: Sequence[str], max_new_tokens: Optional[int] = None) -> list[Generation]:
        """One batch of images already in memory (what task=serve gets from a request)."""
        ...

    def describe(self) -> dict:
        """The model, as results and reports name it (ocrft.provenance.describe_model)."""
        ...

    def report(self, outputs: Sequence[Generation]) -> Report:
        """The backend's own summary of a finished ``predict``."""
        ...

    def close(self) -> None: ...


def predictor_class(backend: str) -> Any:
    module, name = PREDICTORS[backend].split(":")
    return getattr(importlib.import_module(module), name)


def build_predictor(cfg: Any, *, task: str, run_dir: Optional[Path] = None, tracker: Any = None) -> Predictor:
    """The predictor for ``cfg.model.backend``, set up for ``task`` (eval checkpoints into
    ``run_dir`` so a re-run resumes; a tracking ``tracker`` gets what the model resolves to).

    Raises:
        ConfigError: naming model.backend when ``task`` must read new images and the backend
            reads none (another engine's output).
    """
    cls = predictor_class(cfg.model.backend)
    if task in ("predict", "serve") and not cls.reads_images:
        readers = [b for b in PREDICTORS if predictor_class(b).reads_images]
        raise ConfigError(f"model.backend={cfg.model.backend}: task={task} reads images with a model "
                          f"(model.backend={' or '.join(readers)}); model={cfg.model.backend} only scores with task=eval")  # fmt: skip
    return cls.from_config(cfg, task=task, run_dir=run_dir, tracker=tracker)


def predict_in_batches(
    read: Callable[[list, list[str]], list[Generation]],
    records: Sequence[Record],
    *,
    prompt: str,
    batch_size: int,
    desc: str,
    on_batch: Optional[OnBatch] = None,
    progress: bool = True,
) -> list[Generation]:
    """``read`` over ``records`` in batches of similar prompt length (less padding), the
    images opened per batch, with a progress bar showing the running CER against the labels."""
    from rapidfuzz.distance import Levenshtein
    from tqdm.auto import tqdm

    from ocrft.evaluation.generation import generate_all, image_loaders, prompts_for

    edits = chars = 0
    bar = tqdm(total=len(records), desc=desc, unit="sample", dynamic_ncols=True, disable=not progress)

    def seen(indices: list[int], outputs: list[Generation]) -> None:
        nonlocal edits, chars
        if on_batch is not None:
            on_batch(indices, outputs)
        for i, output in zip(indices, outputs):
            edits += Levenshtein.distance(output.text, records[i].text)
            chars += len(records[i].text)
        bar.update(len(indices))
        bar.set_postfix(cer=f"{edits / max(chars, 1):.4f}")

    try:
        return generate_all(read, image_loaders(records), prompts_for(records, prompt), batch_size, on_batch=seen)
    finally:
        bar.close()
