"""Optuna studies: the search space as Hydra overrides, samplers, pruners, and the job's side.

The sweeper (hydra_plugins/ocrft_optuna_sweeper, which also holds the samplers) asks the
study for a trial, turns it into override strings with :func:`suggest` and launches a job with the trial's identity
(``trial.storage``, ``trial.study_name``, ``trial.trial_number``). Inside the job,
:class:`TrialReporter` finds that trial in the shared storage, reports the validation
metric and asks the study's pruner whether to stop (ocrft.training.callbacks does this from
a transformers ``Trainer``). Nothing here imports Optuna or transformers at module import:
the sweeper imports this module when Hydra lists its plugins, on every ``--help``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional

from omegaconf import DictConfig, OmegaConf

from ocrft.config import ConfigError

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

# Study user attribute holding the pruner spec, so a job in another process (or on another
# machine) rebuilds the same pruner as the sweeper that created its trial.
PRUNER_ATTR = "ocrft.pruner"
# Keys each pruner takes from hydra.sweeper.pruner; the others are ignored, so switching
# `pruner.type` on the command line does not trip over the median defaults.
PRUNER_KEYS = {
    "median": ("n_startup_trials", "n_warmup_steps", "interval_steps"),
    "hyperband": ("min_resource", "max_resource", "reduction_factor"),
    "successive_halving": ("min_resource", "reduction_factor"),
    "none": (),
}
PARAM_TYPES = ("float", "int", "categorical")


class SearchSpaceError(ConfigError):
    """A search space that cannot be sampled or names keys the job config lacks."""


# ---------------------------------------------------------------- search space -> overrides


def encode_choice(value: Any) -> Any:
    """An Optuna categorical choice for ``value``: lists and dicts become JSON strings.

    Optuna stores only None/bool/int/float/str choices, so ``[q_proj, v_proj]`` is stored as
    the string ``'["q_proj", "v_proj"]'`` and decoded again when the override is written.
    """
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else value


def decode_choice(value: Any) -> Any:
    """Inverse of :func:`encode_choice` (plain strings pass through)."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            pass
    return value


def format_override(path: str, value: Any) -> str:
    """``path=value`` in Hydra's override grammar (strings quoted, lists as ``[a,b]``)."""
    return f"{path}={_format_value(value)}"


def _format_value(value: Any) -> str:
    from hydra.core.override_parser.types import Quote, QuotedString

    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_format_value(v)}" for k, v in value.items()) + "}"  # keys: plain names
    # Always quoted: an unquoted `true` or `1e-3` would change type on the way in.
    return QuotedString(text=str(value), quote=Quote.single).with_quotes()


def param_dicts(params: Iterable[Any]) -> list[dict]:
    """The space's parameters as plain dicts (from SearchParam nodes, dicts or dataclasses)."""
    out = []
    for p in params:
        p = OmegaConf.to_container(p, resolve=True) if OmegaConf.is_config(p) else p
        out.append(dict(p) if isinstance(p, Mapping) else dict(vars(p)))
    return out


def suggest(trial: "optuna.Trial", params: Iterable[Any]) -> list[str]:
    """Sample every parameter of the space from ``trial`` and return Hydra override strings.

    Args:
        trial: a running trial (from ``study.ask()``).
        params: the space, ``search_space.params``: items with ``path``, ``type``
            (float, int, categorical), ``low``/``high``/``log``/``step`` or ``choices``.

    Returns:
        One ``path=value`` override per parameter, in the order of the space. The Optuna
        parameter is named after its config path (``train.learning_rate``).
    """
    overrides = []
    for p in param_dicts(params):
        path, kind = p["path"], p["type"]
        if kind == "float":
            step = None if p.get("step") is None else float(p["step"])
            value = trial.suggest_float(path, float(p["low"]), float(p["high"]), log=bool(p.get("log")), step=step)
        elif kind == "int":
            value = trial.suggest_int(path, int(p["low"]), int(p["high"]), log=bool(p.get("log")), step=int(p.get("step") or 1))
        elif kind == "categorical":
            value = decode_choice(trial.suggest_categorical(path, [encode_choice(c) for c in p["choices"]]))
        else:
            raise SearchSpaceError(f"search_space.params: {path!r} has type={kind!r}; choose one of {PARAM_TYPES}")
        overrides.append(format_override(path, value))
    return overrides


def overrides_from_params(params: Iterable[Any], values: Mapping[str, Any]) -> list[str]:
    """The overrides of a finished trial, from its ``trial.params`` (categoricals decoded)."""
    return [format_override(p["path"], decode_choice(values[p["path"]])) for p in param_dicts(params) if p["path"] in values]


def check_search_space(cfg: DictConfig, params: Iterable[Any]) -> None:
    """Fail before any trial runs if the space is malformed or does not fit ``cfg``.

    Every ``path`` must exist in the composed job config, and ``low``, ``high`` and every
    choice must be assignable to it under the config's schema (an int key rejects 0.5).

    Raises:
        SearchSpaceError: listing every bad parameter.
    """
    params = param_dicts(params)
    if not params:
        raise SearchSpaceError("search_space.params is empty: choose a search space, e.g. search_space=default")
    job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])  # type: ignore[arg-type]
    missing = object()
    problems = []
    for p in params:
        path, kind = p.get("path"), p.get("type")
        if kind not in PARAM_TYPES:
            problems.append(f"{path}: type={kind!r}, choose one of {PARAM_TYPES}")
            continue
        if kind == "categorical" and not p.get("choices"):
            problems.append(f"{path}: a categorical parameter needs choices")
            continue
        if kind != "categorical" and (p.get("low") is None or p.get("high") is None or p["low"] > p["high"]):
            problems.append(f"{path}: a {kind} parameter needs low <= high")
            continue
        if OmegaConf.select(job, path, default=missing, throw_on_missing=False) is missing:
            problems.append(f"{path}: no such key in the composed config")
            continue
        probes = p["choices"] if kind == "categorical" else [p["low"], p["high"]]
        if kind == "int":
            probes = [int(v) for v in probes]
        for value in probes:
            try:
                OmegaConf.update(job, path, value, merge=True)
            except Exception as err:  # omegaconf's ValidationError and friends name the type
                problems.append(f"{path}: value {value!r} does not fit: {str(err).splitlines()[0]}")
                break
    if problems:
        raise SearchSpaceError("search_space.params: bad search space:\n  " + "\n  ".join(problems))


# ---------------------------------------------------------------- study pieces shared with the job


def build_pruner(spec: Optional[Mapping[str, Any]]) -> "optuna.pruners.BasePruner":
    """The pruner named by ``spec["type"]`` (median, hyperband, successive_halving, none)."""
    import optuna

    kind = (spec or {}).get("type", "none")
    if kind not in PRUNER_KEYS:
        raise ConfigError(f"hydra.sweeper.pruner.type={kind!r}; choose one of {sorted(PRUNER_KEYS)}")
    kwargs = {k: spec[k] for k in PRUNER_KEYS[kind] if spec.get(k) is not None}  # type: ignore[index]
    classes = {
        "median": optuna.pruners.MedianPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
        "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
        "none": optuna.pruners.NopPruner,
    }
    return classes[kind](**kwargs)


def open_storage(url: str, heartbeat_interval: Optional[int] = None, existing: bool = False) -> "optuna.storages.RDBStorage":
    """An RDB storage for ``url``; with a heartbeat, trials of a killed sweep go stale.

    ``existing``: the sweeper already created the tables, so skip creating them and the
    schema check (about a second per job, mostly alembic).
    """
    import random
    import time
    import warnings

    import optuna

    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Several processes write one SQLite file; wait for the lock instead of failing
        # with "database is locked" after SQLite's default 5 s.
        engine_kwargs["connect_args"] = {"timeout": 120}
    for attempt in range(3):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                retry = optuna.storages.RetryHeartbeatStaleTrialCallback() if heartbeat_interval else None
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,
                    heartbeat_stale_trial_callback=retry,
                    skip_compatibility_check=existing,
                    skip_table_creation=existing,
                )
        except Exception:
            # Workers started together race to create the tables of a new database (the
            # loser hits a duplicate alembic version row); the second try finds them made.
            if attempt == 2:
                raise
            time.sleep(1 + random.random())
    raise AssertionError("unreachable")


def create_study(
    storage: Any,
    study_name: str,
    direction: str,
    metric: str,
    sampler: Optional["optuna.samplers.BaseSampler"] = None,
    pruner: Optional["optuna.pruners.BasePruner"] = None,
) -> "optuna.Study":
    """Create the study, or load it to resume; its objective is named ``metric``.

    The name (``study.set_metric_names``) is what optuna-dashboard and
    ``trials_dataframe`` show instead of "Objective 0".

    Raises:
        ConfigError: an existing study that optimises in the other direction.
    """
    import warnings

    import optuna

    study = optuna.create_study(storage=storage, study_name=study_name, direction=direction, sampler=sampler,
                                pruner=pruner, load_if_exists=True)  # fmt: skip
    if study.direction.name.lower() != direction:
        raise ConfigError(f"hydra.sweeper.direction={direction}: study {study_name!r} in this storage was created to "
                          f"{study.direction.name.lower()}; name another study (hydra.sweeper.study_name) or storage")
    if study.metric_names != [metric]:
        if study.metric_names:
            log.warning("study %s named its objective %s; it is now %s", study_name, study.metric_names[0], metric)
        with warnings.catch_warnings():  # set_metric_names is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([metric])
    return study


def absolute_storage_url(url: str, cwd: Optional[Path] = None) -> str:
    """``sqlite:///rel.db`` made absolute, so a job in another directory finds the same file."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str((cwd or Path.cwd()) / url[len(prefix):])
    return url


# ---------------------------------------------------------------- inside the job


class TrialReporter:
    """The job's handle on its Optuna trial, living in a shared storage.

    Works across processes and machines: it loads the study from ``storage``, finds the
    trial by number and reports through ``optuna.Trial`` (which writes each value to the
    storage), with the pruner the sweeper recorded on the study.
    """

    def __init__(self, storage: str, study_name: str, trial_number: int) -> None:
        import optuna

        self.storage_url, self.study_name, self.number = storage, study_name, int(trial_number)
        rdb = open_storage(storage, existing=True)
        study_id = rdb.get_study_id_from_name(study_name)
        trial_id = rdb.get_trial_id_from_study_id_trial_number(study_id, self.number)
        pruner = build_pruner(rdb.get_study_user_attrs(study_id).get(PRUNER_ATTR))
        # The job never samples (the sweeper did), so a RandomSampler avoids TPE's set-up.
        study = optuna.load_study(study_name=study_name, storage=rdb, sampler=optuna.samplers.RandomSampler(), pruner=pruner)
        self._trial = optuna.Trial(study, trial_id)
        self._reported: set[int] = set()
        self._unchecked = False
        self.pruned = False

    @classmethod
    def from_config(cls, trial_cfg: Any) -> Optional["TrialReporter"]:
        """The reporter for ``cfg.trial``, or None outside a sweep (no storage/study/number)."""
        if trial_cfg is None:
            return None
        storage, name, number = trial_cfg.storage, trial_cfg.study_name, trial_cfg.trial_number
        if storage is None or name is None or number is None:
            return None
        return cls(storage, name, number)

    def report(self, value: float, step: int) -> None:
        """Record the validation metric at training ``step`` (a repeated step is ignored)."""
        step = int(step)
        if step in self._reported:
            return
        self._trial.report(float(value), step)
        self._reported.add(step)
        self._unchecked = True

    def should_prune(self) -> bool:
        """Whether the study's pruner stops this trial now, given the values reported so far."""
        if not self.pruned and self._unchecked:
            self._unchecked = False
            self.pruned = bool(self._trial.should_prune())
            if self.pruned:
                log.info("trial %d of study %s pruned at step %d", self.number, self.study_name, max(self._reported))
        return self.pruned

    @property
    def has_unchecked_report(self) -> bool:
        """A value was reported since the last :meth:`should_prune`."""
        return self._unchecked
