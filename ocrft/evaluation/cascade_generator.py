"""A cascade behind the Generator interface: what task=serve and task=predict call.

``CascadeGenerator.generate(images, prompts, max_new_tokens) -> list[str]`` reads the batch
with the local model and re-reads the rows whose confidence is below a fixed threshold
through the fallback endpoint, so anything that serves a Generator serves a cascade.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from ocrft.config import ConfigError
from ocrft.evaluation import cascade as calc

log = logging.getLogger(__name__)


@dataclass
class CascadeOutput:
    """One routed transcription: ``text`` is the one to use (the fallback's where it ran and
    answered; the local one otherwise, also when the fallback request failed)."""

    text: str
    route: str  # local | fallback
    confidence: float
    local_text: str
    fallback_text: Optional[str] = None
    fallback_error: Optional[str] = None


class CascadeGenerator:
    """Local model first, the fallback endpoint for rows below ``threshold``.

    Args:
        local: a Generator (``generate_detailed`` gives text and confidence per row).
        client: an ocrft.evaluation.endpoint.EndpointClient (or anything with its ``transcribe``).
        threshold: rows with confidence strictly below it go to ``client``.
        confidence: ``mean_logprob`` or ``min_logprob`` (cascade.confidence).
        workers: concurrent fallback requests per batch.
        system: the system prompt sent to the fallback.
    """

    def __init__(self, local: Any, client: Any, threshold: float, confidence: str = "mean_logprob",
                 workers: int = 4, system: Optional[str] = None):  # fmt: skip
        if confidence not in calc.CONFIDENCES:
            raise ConfigError(f"cascade.confidence={confidence!r}; choose one of {sorted(calc.CONFIDENCES)}")
        self.local = local
        self.client = client
        self.threshold = float(threshold)
        self.confidence = confidence
        self.workers = max(1, workers)
        self.system = system

    def generate(self, images: Sequence[Any], prompts: Sequence[str], max_new_tokens: Optional[int] = None) -> list[str]:
        """Transcribe one batch; one string per image (the routed text)."""
        return [o.text for o in self.generate_detailed(images, prompts, max_new_tokens)]

    def generate_detailed(
        self, images: Sequence[Any], prompts: Sequence[str], max_new_tokens: Optional[int] = None
    ) -> list[CascadeOutput]:
        """Transcribe one batch; one :class:`CascadeOutput` per image."""
        generations = self.local.generate_detailed(images, prompts, max_new_tokens)
        confidences = [calc.confidence_of(g, self.confidence) for g in generations]
        routes = calc.route(confidences, self.threshold)
        outputs = [CascadeOutput(g.text, "local", c, g.text) for g, c in zip(generations, confidences)]
        hard = [i for i, go in enumerate(routes) if go]
        if not hard:
            return outputs
        with ThreadPoolExecutor(max_workers=min(self.workers, len(hard)), thread_name_prefix="cascade") as pool:
            completions = list(pool.map(lambda i: self.client.transcribe(images[i], prompts[i], self.system), hard))
        for i, c in zip(hard, completions):
            out = outputs[i]
            out.route, out.fallback_text, out.fallback_error = "fallback", c.text, c.error
            if c.error:  # a served answer beats none: keep the local text
                log.warning("cascade fallback failed (local text kept): %s", c.error)
            else:
                out.text = c.text
        return outputs

    def count_tokens(self, text: str) -> int:
        return self.local.count_tokens(text)

    def close(self) -> None:
        self.client.close()


def build_cascade_generator(cfg: Any) -> CascadeGenerator:
    """A CascadeGenerator for ``cfg`` (model=cascade) with its fixed numeric ``cascade.threshold``.

    Raises:
        ConfigError: ``cascade.threshold=auto`` (serving and predict read no calibration split).
    """
    from ocrft.evaluation.cascade_eval import local_family
    from ocrft.evaluation.endpoint import build_client, load_provider
    from ocrft.evaluation.endpoint_eval import served_model_id
    from ocrft.evaluation.generation import build_generator

    if cfg.cascade.threshold == "auto":
        raise ConfigError(f"cascade.threshold=auto needs labelled data; task={cfg.task} needs a number (e.g."
                          " cascade.threshold=-0.2; task=eval with cascade.calibrate=true helps pick one)")  # fmt: skip
    fallback = cfg.cascade.fallback
    client = build_client(fallback)  # a missing key fails here, before the model loads
    if load_provider(fallback.provider or "ocrft").name == "ocrft" and not fallback.remote_model:
        client.model = served_model_id(client) or client.model
    local_family(cfg)  # the local model's family is known (model.family, cascade.family or its card)
    return CascadeGenerator(build_generator(cfg), client, cfg.cascade.threshold, cfg.cascade.confidence,
                            cfg.eval.workers, cfg.prompt.system)  # fmt: skip
