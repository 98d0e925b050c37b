"""model=cascade as a Predictor: a local model reads every sample, an endpoint the hard ones.

    python -m ocrft task=eval model=cascade model.path=outputs/train/<run> data=... \\
        cascade.fallback.provider=openai cascade.fallback.remote_model=gpt-4o-mini cascade.threshold=auto

For task=eval both passes resume: the local one from ``<run_dir>/cascade_local_<split>.jsonl``
(rows keyed by id, valid only under the same generation fingerprint, like
ocrft.evaluation.local), the fallback one from ``<run_dir>/cascade_fallback_<split>.jsonl``
through ocrft.evaluation.endpoint_eval (its workers, retries and checkpoint), so a killed run
re-sends nothing already answered. task=predict and task=serve route batch by batch
(:meth:`CascadePredictor.read`) at a fixed numeric ``cascade.threshold``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional, Sequence

from ocrft.config import ConfigError
from ocrft.data.record import Record
from ocrft.evaluation import cascade as calc
from ocrft.evaluation.generation import Generation
from ocrft.evaluation.predictor import OnBatch, Report, predict_in_batches

log = logging.getLogger(__name__)


def local_family(cfg: Any) -> str:
    """The local model's family: ``model.family`` (which ``model=cascade`` sets from
    ``cascade.family``), else what the ocrft run folder (or model card) at ``model.path`` says.

    Raises:
        ConfigError: naming cascade.family when neither says it.
    """
    from ocrft.models.loading import MODEL_CARD, resolve_model
    from ocrft.models.registry import FAMILIES

    declared = cfg.model.family
    if declared:
        if declared not in FAMILIES:
            raise ConfigError(f"cascade.family={declared!r} is unknown; known families: {sorted(FAMILIES)}")
        return declared
    resolved = resolve_model(None, cfg.model.path)  # a run folder's card names its family
    card = Path(resolved.base_path) / MODEL_CARD
    family = resolved.family
    if family is None and card.is_file():
        family = json.loads(card.read_text()).get("family")
    if family not in FAMILIES:
        raise ConfigError(f"model=cascade: the family of model.path={cfg.model.path!r} cannot be read from it;"
                          f" set cascade.family to one of {sorted(FAMILIES)}")  # fmt: skip
    return family


class CascadePredictor:
    """Local model first, the fallback endpoint (``cascade.fallback``) for samples whose
    confidence (``cascade.confidence``) is strictly below the threshold.

    Each Generation's ``meta`` says how it was read: ``route`` (local | fallback),
    ``confidence``, ``local_text``, ``fallback_text`` and (task=eval) ``cost`` or
    (predict, serve) ``fallback_error``. In task=eval a failed fallback request is the
    sample's error; in predict and serve the local text is kept (a served answer beats none).
    """

    reads_images = True

    def __init__(self, cfg: Any, *, task: str, run_dir: Optional[Path] = None, local: Any = None, fallback: Any = None):
        """``local`` and ``fallback`` replace the predictors built from ``cfg`` (a test's stand-ins)."""
        from ocrft.evaluation.endpoint_eval import EndpointPredictor
        from ocrft.evaluation.local import LocalPredictor

        self.evaluating = task == "eval"
        if not self.evaluating and cfg.cascade.threshold == "auto":
            raise ConfigError(f"cascade.threshold=auto needs labelled data; task={task} needs a number (e.g."
                              " cascade.threshold=-0.2; task=eval with cascade.calibrate=true helps pick one)")  # fmt: skip
        if cfg.cascade.confidence not in calc.CONFIDENCES:
            raise ConfigError(f"cascade.confidence={cfg.cascade.confidence!r}; choose one of {sorted(calc.CONFIDENCES)}")
        self.cfg, self.split = cfg, cfg.eval.split
        self.run_dir = Path(run_dir) if run_dir is not None else Path(".")
        local_family(cfg)  # refuse a model whose family cannot be known before any work
        self.fallback = fallback or EndpointPredictor(
            cfg.cascade.fallback, prompt=cfg.prompt.text, system=cfg.prompt.system, workers=cfg.eval.workers,
            checkpoint=self.run_dir / f"cascade_fallback_{self.split}.jsonl", save_interval=cfg.eval.save_interval,
        )  # a missing key fails here, before the model loads
        self.local = local or LocalPredictor(cfg, desc=task)
        self._report = Report()

    @classmethod
    def from_config(cls, cfg: Any, *, task: str, run_dir: Optional[Path] = None, tracker: Any = None) -> "CascadePredictor":
        return cls(cfg, task=task, run_dir=run_dir)

    def read(self, images: Sequence[Any], prompts: Sequence[str], max_new_tokens: Optional[int] = None) -> list[Generation]:
        """One batch, routed at the numeric threshold; the hard rows go to the fallback together."""
        generations = self.local.read(images, prompts, max_new_tokens)
        kind = self.cfg.cascade.confidence
        confidences = [calc.confidence_of(g, kind) for g in generations]
        routes = calc.route(confidences, float(self.cfg.cascade.threshold))
        for g, c in zip(generations, confidences):
            g.meta = {"route": "local", "confidence": c, "local_text": g.text, "fallback_text": None, "fallback_error": None}
        hard = [i for i, go in enumerate(routes) if go]
        if hard:
            answers = self.fallback.read([images[i] for i in hard], [prompts[i] for i in hard])
            for i, answer in zip(hard, answers):
                g = generations[i]
                g.meta.update(route="fallback", fallback_text=answer.text, fallback_error=answer.error)
                if answer.error:  # a served answer beats none: keep the local text
                    log.warning("cascade fallback failed (local text kept): %s", answer.error)
                else:
                    g.text, g.looped = answer.text, False
        return generations

    def count_tokens(self, text: str) -> int:
        return self.local.count_tokens(text)

    def predict(self, records: Sequence[Record], on_batch: Optional[OnBatch] = None) -> list[Generation]:
        if not self.evaluating:
            return predict_in_batches(self.read, records, prompt=self.cfg.prompt.text,
                                      batch_size=self.cfg.eval.batch_size, desc="cascade", on_batch=on_batch)  # fmt: skip
        return self._evaluate(records)

    def _read_local(self, records: Sequence[Record], split: str) -> list[Generation]:
        path = self.run_dir / f"cascade_local_{split}.jsonl"
        return self.local.with_checkpoint(path, f"cascade local {split}").predict(records)

    def _evaluate(self, records: Sequence[Record]) -> list[Generation]:
        """task=eval: every sample read locally (resumable), the threshold fixed, picked on
        ``cascade.calibration_split`` (``auto``) or calibrated on this split (``cascade.calibrate``:
        the fallback then reads every sample too), and the hard samples sent to the fallback."""
        cfg, kind = self.cfg, self.cfg.cascade.confidence
        local = self._read_local(records, self.split)  # refuses duplicate ids: both checkpoints are keyed by id
        confidences = [calc.confidence_of(g, kind) for g in local]
        extra_metrics: dict[str, float] = {}
        paths: dict[str, str] = {}
        if cfg.cascade.calibrate:  # both models read every sample: the whole curve, then route
            from ocrft.evaluation.cascade_curve import calibrate

            fallback = self._read_fallback(records)
            threshold, extra_metrics, paths = calibrate(cfg, records, local=local, confidences=confidences,
                                                        fallback=fallback, info=self.fallback.info, run_dir=self.run_dir)  # fmt: skip
            routes = calc.route(confidences, threshold)
        else:
            threshold = self.resolve_threshold()
            routes = calc.route(confidences, threshold)
            fallback = self._read_fallback([r for r, go in zip(records, routes) if go])
        outputs, costs = routed(records, local=local, confidences=confidences, routes=routes, fallback=fallback,
                                info=self.fallback.info)  # fmt: skip
        log.info("cascade: %d of %d samples fell back (threshold %.4f)", sum(routes), len(routes), threshold)
        summary = {"threshold": threshold, "routed_fraction": sum(routes) / len(routes),
                   **calc.cost_summary(costs, len(records)), **extra_metrics}  # fmt: skip
        files = {side: self.run_dir / f"cascade_{side}_{self.split}.jsonl" for side in ("local", "fallback")}
        checkpoints = {f"cascade_{side}_checkpoint": str(path) for side, path in files.items() if path.exists()}
        extra = {"cascade": {"confidence": kind, "pricing_as_of": self.fallback.info["pricing_as_of"], **summary}}
        self._report = Report(metrics=summary, extra=extra, paths={**paths, **checkpoints})
        return outputs

    def _read_fallback(self, records: Sequence[Record]) -> dict[str, Generation]:
        return {r.id: g for r, g in zip(records, self.fallback.predict(records))}

    def resolve_threshold(self) -> float:
        """``cascade.threshold`` as a number; ``auto``: read on ``cascade.calibration_split`` so
        that at most ``cascade.max_fallback_fraction`` of it falls back."""
        cfg = self.cfg
        if cfg.cascade.threshold != "auto":
            return float(cfg.cascade.threshold)
        from ocrft.data.loading import load_data
        from ocrft.data.record import DataError

        split = cfg.cascade.calibration_split
        try:
            records = load_data(cfg.data, self.run_dir, splits=(split,)).splits[split]
        except DataError:  # a bad file: its own message names it
            raise
        except (ValueError, KeyError) as e:
            raise ConfigError(f"cascade.threshold=auto reads cascade.calibration_split={split!r}, which cannot be loaded"
                              f" ({e}); give that split, a numeric cascade.threshold, or cascade.calibrate=true")  # fmt: skip
        if not records:
            raise DataError(f"cascade.calibration_split={split!r} is empty: nothing to pick cascade.threshold=auto on")
        records = records[: cfg.eval.limit] if cfg.eval.limit else records
        local = self._read_local(records, split)
        threshold = calc.pick_threshold([calc.confidence_of(g, cfg.cascade.confidence) for g in local],
                                        cfg.cascade.max_fallback_fraction)  # fmt: skip
        log.info("cascade: threshold %.4f picked on %d %s samples (at most %.0f%% fall back)", threshold, len(local),
                 split, 100 * cfg.cascade.max_fallback_fraction)  # fmt: skip
        return threshold

    def describe(self) -> dict:
        from ocrft.provenance import describe_model

        local, info = self.local.describe(), self.fallback.info
        remote = describe_model({"backend": "endpoint"}, provider=info["provider"], endpoint=info["url"],
                                remote_model=info["model"])  # fmt: skip
        return {"kind": "cascade", "id": f"cascade-{local['id']}", "local": local, "fallback": remote,
                "name": self.cfg.model.get("name") or f"cascade: {local['name']} -> {remote['name']}"}  # fmt: skip

    def report(self, outputs: Sequence[Generation]) -> Report:
        return self._report

    def close(self) -> None:
        self.fallback.close()


def routed(
    records: Sequence[Record],
    *,
    local: Sequence[Generation],
    confidences: Sequence[float],
    routes: Sequence[bool],
    fallback: dict[str, Generation],
    info: dict,
) -> tuple[list[Generation], list]:
    """Per sample the routed Generation (its meta: route, confidence, local_text, fallback_text
    where it ran, cost), and the routed samples' costs."""
    outputs, costs = [], []
    for record, g, conf, go in zip(records, local, confidences, routes):
        fb = fallback.get(record.id)  # where the fallback ran (every sample with calibrate)
        cost = calc.sample_cost(fb.stats.get("usage"), info["pricing"], info["model"]) if fb else None
        meta = {"route": "fallback" if go else "local", "confidence": conf, "local_text": g.text,
                "fallback_text": fb.text if fb else None, "cost": cost}  # fmt: skip
        chosen = fb if go else g
        outputs.append(Generation(chosen.text, looped=g.looped and not go, error=fb.error if go else None, meta=meta,
                                  mean_logprob=g.mean_logprob, min_logprob=g.min_logprob, num_tokens=g.num_tokens,
                                  attempts=g.attempts))  # fmt: skip
        costs.extend([cost] if go else [])  # what the cascade pays: its routed samples
    return outputs, costs
