"""The sweeper's side of a study: samplers, study names, trial counts, outcomes, heartbeats.

(What the job needs too, pruners and storages, is in ocrft.search.)
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from ocrft.config import ConfigError
from ocrft.search import SearchSpaceError, encode_choice, param_dicts

if TYPE_CHECKING:
    import optuna
    from hydra.core.utils import JobReturn

log = logging.getLogger(__name__)

# Keys each sampler takes from hydra.sweeper.sampler (see PRUNER_KEYS in ocrft.search).
SAMPLER_KEYS = {"tpe": ("n_startup_trials",), "random": (), "grid": (), "cmaes": ("n_startup_trials",)}


def build_sampler(spec: Mapping[str, Any], params: Iterable[Any], seed: Optional[int]) -> "optuna.samplers.BaseSampler":
    """The sampler named by ``spec["type"]`` (tpe, random, grid, cmaes), seeded with ``seed``."""
    import importlib.util

    import optuna

    kind = spec["type"]
    if kind not in SAMPLER_KEYS:
        raise ConfigError(f"hydra.sweeper.sampler.type={kind!r}; choose one of {sorted(SAMPLER_KEYS)}")
    kwargs = {k: spec[k] for k in SAMPLER_KEYS[kind] if spec.get(k) is not None}
    if kind == "tpe":
        # constant_liar: trials still running (other workers, the rest of a batch) count as
        # bad guesses, so parallel trials spread out instead of piling on one point.
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, **kwargs)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "grid":
        return _grid_sampler_class()(grid_space(params), seed=seed)
    if importlib.util.find_spec("cmaes") is None:
        raise ImportError("hydra.sweeper.sampler.type=cmaes needs the cmaes package: pip install cmaes")
    return optuna.samplers.CmaEsSampler(seed=seed, **kwargs)


def _grid_sampler_class():
    import optuna

    class GridSampler(optuna.samplers.GridSampler):
        """GridSampler whose ``after_trial`` does not call ``Study.stop``: that only works
        inside ``Study.optimize``; the sweeper checks ``is_exhausted`` itself."""

        def after_trial(self, study, trial, state, values) -> None:
            pass

    return GridSampler


def grid_space(params: Iterable[Any]) -> dict[str, list]:
    """The grid for GridSampler: categorical choices, or low..high by ``step`` (int: by 1)."""
    grid = {}
    for p in param_dicts(params):
        if p["type"] == "categorical":
            grid[p["path"]] = [encode_choice(c) for c in p["choices"]]
        elif p["type"] == "int":
            grid[p["path"]] = list(range(int(p["low"]), int(p["high"]) + 1, int(p.get("step") or 1)))
        elif p.get("step") is not None:
            n = int(round((p["high"] - p["low"]) / p["step"]))
            grid[p["path"]] = [round(p["low"] + i * p["step"], 12) for i in range(n + 1)]
        else:
            raise SearchSpaceError(f"search_space.params: float parameter {p['path']!r} needs a step or choices "
                                   "(hydra.sweeper.sampler.type=grid)")
    return grid


def study_name_for(config: DictConfig) -> str:
    """``hydra.sweeper.study_name``, or one derived from the command so re-running it resumes.

    Derived: ``<experiment_name or task>-<search_space>``, plus a short hash of the other
    job overrides when there are any, so that a run on other data or another model does not
    continue a study it does not belong to (hydra.* overrides such as n_trials don't count).
    """
    explicit = OmegaConf.select(config, "hydra.sweeper.study_name")
    if explicit:
        return str(explicit)
    base = OmegaConf.select(config, "experiment_name") or OmegaConf.select(config, "task") or config.hydra.job.name
    space = OmegaConf.select(config, "hydra.runtime.choices.search_space") or "space"
    ignored = ("hydra", "experiment", "search_space", "trial.")
    keys = [o for o in config.hydra.overrides.task if not o.lstrip("+~").startswith(ignored)]
    suffix = "-" + hashlib.sha1("\n".join(sorted(keys)).encode()).hexdigest()[:6] if keys else ""
    return f"{base}-{space}{suffix}"


class Tally:
    """Counts of a study's trials as the loop needs them."""

    def __init__(self, finished: int, running: list, waiting: list, failed: int, last_error: Optional[str]) -> None:
        self.finished, self.running, self.waiting, self.failed, self.last_error = finished, running, waiting, failed, last_error

    @classmethod
    def of(cls, trials: Sequence["optuna.trial.FrozenTrial"]) -> "Tally":
        from optuna.trial import TrialState

        # Only failures of the job itself count against max_failure_rate; trials failed as
        # surplus, interrupted or stale were never judged (and are re-run where needed).
        failed = [t for t in trials if t.state == TrialState.FAIL and "error" in t.user_attrs]
        return cls(
            finished=sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials),
            running=[t for t in trials if t.state == TrialState.RUNNING],
            waiting=[t for t in trials if t.state == TrialState.WAITING],
            failed=len(failed),
            last_error=failed[-1].user_attrs["error"] if failed else None,
        )


def job_outcome(result: "JobReturn", metric: str) -> tuple["optuna.trial.TrialState", Optional[float], Optional[str]]:
    """How a finished job ends its trial: (state, value, error).

    A job that raised, returned ``status: failed``, or lacks a finite ``metric`` is FAIL;
    ``status: pruned`` is PRUNED (Optuna then keeps the last reported value); else COMPLETE.
    """
    from hydra.core.utils import JobStatus
    from optuna.trial import TrialState

    ret = result._return_value
    if result.status != JobStatus.COMPLETED:
        return TrialState.FAIL, None, f"{type(ret).__name__}: {ret}"
    if isinstance(ret, Mapping):
        status = ret.get("status")
        if status == "pruned":
            return TrialState.PRUNED, None, None
        if status == "failed":
            return TrialState.FAIL, None, "the job returned status 'failed'"
        value = ret.get(metric)
        if value is None:
            return TrialState.FAIL, None, f"the job's result has no {metric!r}; it has {sorted(ret)}"
    else:
        value = ret
    if not finite(value):
        return TrialState.FAIL, None, f"{metric} is {value!r}, not a finite number"
    return TrialState.COMPLETE, float(value), None


class Heartbeat:
    """Records a heartbeat for ``trial_ids`` every ``interval`` seconds while its block runs."""

    def __init__(self, storage: Any, trial_ids: list[int], interval: int) -> None:
        self.storage, self.trial_ids, self.interval = storage, trial_ids, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="optuna-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            for trial_id in self.trial_ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as err:  # a missed beat is retried next interval
                    log.debug("heartbeat of trial id %d failed: %s", trial_id, err)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def consecutive_runs(numbers: list[int]) -> list[tuple[int, int]]:
    """Index ranges of ``numbers`` that count up by one (one launcher call each)."""
    ranges, start = [], 0
    for i in range(1, len(numbers) + 1):
        if i == len(numbers) or numbers[i] != numbers[i - 1] + 1:
            ranges.append((start, i))
            start = i
    return ranges


def finite(value: Any) -> bool:
    """A real, finite number (the only objective value a trial may be told)."""
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def shared_keys(a: Sequence[str], b: Sequence[str]) -> list[str]:
    """Keys set by both override lists, e.g. a key fixed on the command line and searched."""
    def keys(overrides: Sequence[str]) -> set[str]:
        return {o.split("=", 1)[0].lstrip("+~") for o in overrides}

    return sorted(keys(a) & keys(b))
