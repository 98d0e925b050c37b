"""task=eval with model=cascade: a local model reads every sample, an endpoint the hard ones.

    python -m ocrft task=eval model=cascade model.path=outputs/train/<run> data=... \\
        cascade.fallback.provider=openai cascade.fallback.remote_model=gpt-4o-mini cascade.threshold=auto

Both passes resume: the local one from ``<run_dir>/cascade_local_<split>.jsonl`` (rows keyed
by id, valid only under the same generation fingerprint, like ocrft.evaluation.local), the
fallback one from ``<run_dir>/cascade_fallback_<split>.jsonl`` through
ocrft.evaluation.endpoint_eval.evaluate_endpoint (its workers, retries and checkpoint), so a
killed run re-sends nothing already answered.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from ocrft.config import ConfigError
from ocrft.data.record import Record
from ocrft.evaluation import cascade as calc

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


class LocalPass:
    """The local model over one split, resumable; the model loads at most once, when needed."""

    def __init__(self, cfg: Any, run_dir: Path):
        local_family(cfg)  # refuse a model whose family cannot be known before any work
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self._generator = None

    def read(self, records: Sequence[Record], split: str) -> list[dict]:
        """One checkpoint row per record (ocrft.evaluation.local.checkpoint_row): prediction,
        mean_logprob, min_logprob, num_tokens, looped."""
        from ocrft.evaluation.local import generate_resumable

        path = self.run_dir / f"cascade_local_{split}.jsonl"
        return generate_resumable(self.cfg, records, path, f"cascade local {split}", self._load)

    def _load(self):
        from ocrft.evaluation.generation import build_generator

        self._generator = self._generator or build_generator(self.cfg)
        return self._generator


def fallback_rows(cfg: Any, records: Sequence[Record], run_dir: Path, split: str) -> tuple[dict[str, dict], dict]:
    """Send ``records`` to ``cascade.fallback`` (resumable); returns (rows by id, endpoint info)."""
    from ocrft.evaluation.endpoint import build_client, load_provider
    from ocrft.evaluation.endpoint_eval import evaluate_endpoint, served_model_id

    fallback = cfg.cascade.fallback
    provider = load_provider(fallback.provider or "ocrft")
    client = build_client(fallback)  # a missing key fails here, before any request
    if provider.name == "ocrft" and not fallback.remote_model:
        client.model = served_model_id(client) or client.model  # task=serve answers under any name
    info = {"provider": provider.name, "url": client.url, "model": client.model, "pricing": provider.pricing,
            "pricing_as_of": provider.pricing_as_of}  # fmt: skip
    if not records:
        client.close()
        return {}, info
    try:
        rows = evaluate_endpoint(records, cfg.prompt.text, cfg.prompt.system, client, cfg.eval.workers,
                                 Path(run_dir) / f"cascade_fallback_{split}.jsonl", cfg.eval.save_interval)  # fmt: skip
    finally:
        client.close()
    return {r["id"]: r for r in rows}, info


def resolve_threshold(cfg: Any, local: LocalPass, run_dir: Path) -> float:
    """``cascade.threshold`` as a number; ``auto``: read on ``cascade.calibration_split`` so that
    at most ``cascade.max_fallback_fraction`` of it falls back."""
    if cfg.cascade.threshold != "auto":
        return float(cfg.cascade.threshold)
    from ocrft.data.loading import load_data

    from ocrft.data.record import DataError

    split = cfg.cascade.calibration_split
    try:
        records = load_data(cfg.data, run_dir, splits=(split,)).splits[split]
    except DataError:  # a bad file: its own message names it
        raise
    except (ValueError, KeyError) as e:
        raise ConfigError(f"cascade.threshold=auto reads cascade.calibration_split={split!r}, which cannot be loaded"
                          f" ({e}); give that split, a numeric cascade.threshold, or cascade.calibrate=true")  # fmt: skip
    if not records:
        raise DataError(f"cascade.calibration_split={split!r} is empty: nothing to pick cascade.threshold=auto on")
    records = records[: cfg.eval.limit] if cfg.eval.limit else records
    rows = local.read(records, split)
    threshold = calc.pick_threshold([calc.confidence_of(r, cfg.cascade.confidence) for r in rows],
                                    cfg.cascade.max_fallback_fraction)  # fmt: skip
    log.info("cascade: threshold %.4f picked on %d %s samples (at most %.0f%% fall back)", threshold, len(rows),
             split, 100 * cfg.cascade.max_fallback_fraction)  # fmt: skip
    return threshold


def run_cascade_eval(cfg: Any, records: Sequence[Record], run_dir: Path, *, tracker: Any = None) -> tuple[dict, dict[str, str]]:
    """task=eval with model=cascade: route, score and write results like any evaluation.

    Returns (metrics, paths) for ocrft.tasks.eval.run_eval: the usual scores plus
    ``routed_fraction``, ``threshold`` and, where the fallback is priced, ``cost_total`` and
    ``cost_per_1k_samples``; with ``cascade.calibrate`` also the curve files and
    ``calibrated_threshold`` (the cheapest one meeting ``cascade.target_cer``).
    """
    from ocrft.evaluation.scoring import score_and_write
    from ocrft.provenance import describe_model

    run_dir, split, kind = Path(run_dir), cfg.eval.split, cfg.cascade.confidence
    local = LocalPass(cfg, run_dir)  # its read refuses duplicate ids: both checkpoints are keyed by id
    rows = local.read(records, split)
    confidences = [calc.confidence_of(r, kind) for r in rows]
    paths: dict[str, str] = {}
    extra_metrics: dict[str, float] = {}
    if cfg.cascade.calibrate:  # both models read every sample: the whole curve, then route
        fallback, info = fallback_rows(cfg, records, run_dir, split)
        from ocrft.evaluation.cascade_curve import calibrate

        threshold, extra_metrics, paths = calibrate(cfg, records, rows, confidences, fallback, info, run_dir)
        routes = calc.route(confidences, threshold)
    else:
        threshold = resolve_threshold(cfg, local, run_dir)
        routes = calc.route(confidences, threshold)
        fallback, info = fallback_rows(cfg, [r for r, go in zip(records, routes) if go], run_dir, split)
    samples, predictions, errors, looped, costs = routed_samples(records, rows, confidences, routes, fallback, info)
    local_model = describe_model(local.cfg.model)
    remote = describe_model({"backend": "endpoint"}, provider=info["provider"], endpoint=info["url"],
                            remote_model=info["model"])  # fmt: skip
    model = {"kind": "cascade", "id": f"cascade-{local_model['id']}", "local": local_model, "fallback": remote,
             "name": cfg.model.get("name") or f"cascade: {local_model['name']} -> {remote['name']}"}  # fmt: skip
    summary = {"threshold": threshold, "routed_fraction": sum(routes) / len(routes),
               **calc.cost_summary(costs, len(records)), **extra_metrics}  # fmt: skip
    extra = {"model": model, "cascade": {"confidence": kind, "pricing_as_of": info["pricing_as_of"], **summary}}
    metrics, written = score_and_write(samples, predictions, cfg.eval, model["name"], run_dir, "results",
                                       errors=errors, extra=extra, looped=looped)  # fmt: skip
    log.info("cascade: %d of %d samples fell back (threshold %.4f)", sum(routes), len(routes), threshold)
    files = {side: run_dir / f"cascade_{side}_{split}.jsonl" for side in ("local", "fallback")}
    checkpoints = {f"cascade_{side}_checkpoint": str(path) for side, path in files.items() if path.exists()}
    return {**metrics, **summary}, {**written, **paths, **checkpoints}


def routed_samples(
    records: Sequence[Record],
    rows: Sequence[dict],
    confidences: Sequence[float],
    routes: Sequence[bool],
    fallback: dict[str, dict],
    info: dict,
) -> tuple[list, list, list, list, list]:
    """Per sample the record (its meta: route, confidence, local_text, fallback_text where it
    ran, cost), the routed prediction, its error, its loop flag; and the routed samples' costs."""
    samples, predictions, errors, looped, costs = [], [], [], [], []
    for record, row, conf, go in zip(records, rows, confidences, routes):
        fb = fallback.get(record.id)  # where the fallback ran (every sample with calibrate)
        cost = calc.sample_cost(fb.get("usage"), info["pricing"], info["model"]) if fb else None
        meta = {"route": "fallback" if go else "local", "confidence": conf, "local_text": row["prediction"],
                "fallback_text": fb["prediction"] if fb else None, "cost": cost}  # fmt: skip
        samples.append(replace(record, meta={**record.meta, **meta}))
        predictions.append(fb["prediction"] if go else row["prediction"])
        errors.append(fb.get("error") if go else None)
        looped.append(bool(row.get("looped")) and not go)  # the loop guard cut the text used
        costs.extend([cost] if go else [])  # what the cascade pays: its routed samples
    return samples, predictions, errors, looped, costs
