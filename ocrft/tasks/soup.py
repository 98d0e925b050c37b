"""task=soup: average the LoRA deltas of several runs exactly, save the soup as a run, score it.

    python -m ocrft task=soup soup.runs=[outputs/train/a,outputs/train/b,outputs/train/c]
    python -m ocrft task=soup soup.sweep=multirun/train/<date> soup.top_k=3

The soup's folder holds ``adapter/`` like a trained run's, so ``model.path=<soup run>`` works
in task=eval, predict, serve and merge. It is scored on ``eval.split`` with the model,
data, prompt and eval settings of the first run (what it was trained and validated with);
``data=...``, ``eval.*`` and the like on the command line win over them.
"""

from __future__ import annotations

import logging
import math
from enum import Enum
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from ocrft.config import ConfigError
from ocrft.runner import RunContext, TaskResult

log = logging.getLogger(__name__)

# Sections a soup takes from its first run unless the command line sets them.
INHERITED = ("model", "data", "prompt", "eval")


def run_soup(cfg: DictConfig, ctx: RunContext) -> TaskResult:
    from ocrft import atomic
    from ocrft.redact import redacted_yaml

    ingredients = soup_ingredients(cfg)  # checked against each other before any weights are read
    runs = [i.run for i in ingredients]
    inherit_first_run(cfg, runs[0], given_overrides())
    adapter = save_soup(cfg, ingredients, ctx.run_dir)
    if cfg.tracking.log_model:
        ctx.tracker.log_artifact(adapter, "model")  # as task=train logs its adapter
    with open_dict(cfg):
        cfg.model.path = str(ctx.run_dir)  # what is scored, and what config.yaml now records
    ctx.tracker.log_artifact(atomic.write_text(ctx.run_dir / "config.yaml", redacted_yaml(cfg)))
    retag(cfg, ctx, runs)
    metrics, paths = score(cfg, ctx)
    return TaskResult(metrics=metrics, paths={"model": str(adapter), **paths}, extra={"soup": {"runs": runs}})


def retag(cfg: DictConfig, ctx: RunContext, runs: list[str]) -> None:
    """Tag the MLflow run with what was souped and scored. The run was opened, and the config
    logged as params, before the first run's sections were inherited: config.yaml and
    these tags are the record of what the soup is."""
    if ctx.tracker.run_id is None:
        return
    from ocrft.tracking.tags import base_tags

    scored = {k: v for k, v in base_tags(cfg, []).items() if k in ("ocrft.model_family", "ocrft.model_path", "ocrft.dataset")}
    ctx.tracker.set_tags({**scored, "ocrft.soup_runs": ", ".join(runs)})  # a sweep's picks are no config value


def soup_ingredients(cfg: DictConfig) -> list:
    """The adapters to average: every run of ``soup.runs``, which must all fit together, or
    the ``soup.top_k`` best finished trials of ``soup.sweep`` that fit with its best trial.

    A sweep may search what a soup cannot mix (``peft.freeze_vision`` changes the target
    modules, a trial may train without LoRA): such trials are left out, said in the log,
    and the next best are taken instead.
    """
    from ocrft.models.soup import check_compatible, read_ingredient

    if not cfg.soup.sweep:
        ingredients = [read_ingredient(str(run)) for run in cfg.soup.runs]
        check_compatible(ingredients)
        return ingredients
    sweep = Path(cfg.soup.sweep)
    ranked = ranked_trials(sweep, f"val/{cfg.eval.metric}", cfg.eval.greater_is_better)
    picked = [read_ingredient(ranked[0], "soup.sweep")]
    for run in ranked[1:]:
        if len(picked) == cfg.soup.top_k:
            break
        try:
            candidate = read_ingredient(run, "soup.sweep")
            check_compatible([picked[0], candidate], "soup.sweep")
        except ConfigError as err:
            log.warning("soup: trial %s left out: %s", run, err)
            continue
        picked.append(candidate)
    if len(picked) < 2:
        raise ConfigError(f"soup.sweep={str(sweep)!r}: no other finished trial fits with the best one, {ranked[0]} "
                          f"(same base, family and target modules); see the log for why each was left out")  # fmt: skip
    log.info("soup: the %d best fitting trials of %s: %s", len(picked), sweep, ", ".join(i.run for i in picked))
    return picked


def ranked_trials(sweep_dir: Path, default_objective: str, greater_is_better: bool) -> list[str]:
    """The run folders of a multirun folder's finished trials, best first.

    Ranked by the sweep's objective as its run.json records it (the Optuna sweeper writes
    ``study.metric`` and ``study.direction``), else by ``default_objective``, read from each
    trial's run.json (``<sweep>/<job>/run.json``, ocrft.run_record); ties in job order.
    """
    from ocrft.run_record import RunRecord

    if not sweep_dir.is_dir():
        raise ConfigError(f"soup.sweep={str(sweep_dir)!r} is not a folder (a multirun folder, e.g. multirun/train/<date>)")
    sweep = RunRecord.read(sweep_dir)
    study = (sweep.extra.get("study") if sweep else None) or {}
    objective = study.get("metric", default_objective)
    greater = study["direction"] == "maximize" if "direction" in study else greater_is_better
    # Hydra numbers a multirun's job folders: 2 before 10
    jobs = sorted((p.parent for p in sweep_dir.glob("*/run.json")),
                  key=lambda d: (int(d.name), "") if d.name.isdigit() else (math.inf, d.name))  # fmt: skip
    scored = []
    for job in jobs:
        record = RunRecord.read(job)
        value = record.metrics.get(objective) if record and record.status == "finished" else None
        if isinstance(value, (int, float)) and math.isfinite(value):
            scored.append((value, str(job)))
    if len(scored) < 2:
        raise ConfigError(f"soup.sweep={str(sweep_dir)!r}: {len(scored)} finished trial(s) report {objective}; "
                          f"a soup needs 2 or more")  # fmt: skip
    scored.sort(key=lambda item: -item[0] if greater else item[0])  # stable: ties stay in job order
    log.info("soup: %d finished trials of %s by %s: %s", len(scored), sweep_dir, objective,
             ", ".join(f"{Path(run).name} ({value:.4g})" for value, run in scored))  # fmt: skip
    return [run for _, run in scored]


def given_overrides() -> list[str]:
    """The overrides typed on the command line (none when Hydra did not start this run)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def inherit_first_run(cfg: DictConfig, first_run: str, overrides: list[str]) -> None:
    """Give ``cfg`` the ``model``, ``data``, ``prompt`` and ``eval`` sections of ``first_run``'s
    config, each with the command line's ``overrides`` of it applied on top; a section chosen
    on the command line (``data=invoice_json``) is kept whole."""
    from ocrft.validate import validate_config

    saved = run_config(first_run)
    if saved is None:
        log.warning("soup: %s has no config.yaml; the soup is scored with this run's model, data and eval settings",
                    first_run)  # fmt: skip
        return
    keys = [o.lstrip("+~").split("=", 1)[0] for o in overrides]
    with open_dict(cfg):
        for section in INHERITED:
            if section in keys:  # a group chosen on the command line: that group, as composed
                continue
            given = {k: OmegaConf.select(cfg, k) for k in keys if k.startswith(f"{section}.")}
            schema = OmegaConf.structured(OmegaConf.get_type(cfg[section]))  # the section's dataclass, typed
            cfg[section] = OmegaConf.merge(schema, enums_by_value(OmegaConf.to_container(saved[section]), schema))
            for key, value in given.items():
                OmegaConf.update(cfg, key, value, merge=False)
    validate_config(cfg)  # the first run's sections were valid for its task; check them for this one


def enums_by_value(saved: dict, schema: DictConfig) -> dict:
    """``saved`` with its enum values typed: config.yaml holds an enum by its value
    (``on_error: raise``), which OmegaConf would read as a member's name (``raise_``)."""
    for key, value in saved.items():
        node = schema.get(key) if key in schema else None
        if isinstance(node, Enum) and isinstance(value, str):
            saved[key] = type(node)(value)
        elif isinstance(node, DictConfig) and isinstance(value, dict):
            enums_by_value(value, node)
    return saved


def run_config(run: str) -> DictConfig | None:
    """The resolved config a run recorded: ``<run>/config.yaml``, or beside its adapter."""
    from ocrft.models.loading import resolve_model

    candidates = [Path(run) / "config.yaml"]
    adapter = resolve_model(None, run).adapter_path
    if adapter:
        candidates.append(Path(adapter) / "ocrft_config.yaml")
    found = next((path for path in candidates if path.is_file()), None)
    return OmegaConf.load(found) if found else None


def save_soup(cfg: DictConfig, ingredients, run_dir: Path) -> Path:
    """Load the base once, average the adapters onto it, save ``<run_dir>/adapter``."""
    from ocrft.models.bundle import load_bundle
    from ocrft.models.soup import average_adapters
    from ocrft.training.checkpoints import save_model

    first = ingredients[0].resolved
    bundle = load_bundle(OmegaConf.merge(cfg.model, {"path": first.base_path}))  # the base alone
    model = average_adapters(bundle.model, ingredients)
    saved = save_model(model, bundle.processor, first, cfg, run_dir=run_dir)
    log.info("soup of %d adapters written to %s", len(ingredients), saved)
    return saved


def score(cfg: DictConfig, ctx: RunContext) -> tuple[dict[str, float], dict[str, str]]:
    """The soup scored on ``eval.split`` as task=eval scores a run folder (ocrft.evaluation.evaluate)."""
    from ocrft.evaluation.evaluate import evaluate_split, load_eval_split, log_evaluation

    records = load_eval_split(cfg, ctx.run_dir, ctx.tracker)
    metrics, paths = evaluate_split(cfg, records, ctx.run_dir, tracker=ctx.tracker)
    return log_evaluation(ctx.tracker, cfg.eval, metrics, paths), paths
