"""Schema of ``hydra/sweeper=optuna``, stored as ``hydra/sweeper/base_optuna``.

It lives here, not in ocrft.config, because Hydra imports plugin modules when it discovers
them, before composing. ``hydra/sweeper=optuna`` is conf/hydra/sweeper/optuna.yaml, which
extends this schema (an entry named ``optuna`` beside that file would trigger Hydra's
deprecated automatic schema matching). The defaults below are the sweeper's defaults.
"""

# No `from __future__ import annotations`: Hydra scans plugins without registering them in
# sys.modules, and dataclasses then cannot resolve string annotations.

from dataclasses import dataclass, field
from typing import Optional

from hydra.core.config_store import ConfigStore


@dataclass
class SamplerConf:
    type: str = "tpe"  # tpe, random, grid, cmaes (cmaes needs `pip install cmaes`)
    # Trial N is sampled with seed + N (grid: seed), so parallel workers on one study do
    # not draw the same points and a study is reproducible whatever the number of workers.
    seed: Optional[int] = 42
    n_startup_trials: Optional[int] = None  # tpe, cmaes: random trials first (None: Optuna's 10 / 1)


@dataclass
class PrunerConf:
    type: str = "median"  # median, hyperband, successive_halving, none
    # median: prune when the best value so far is worse than the median of completed trials
    # at the same step; steps are the training steps the job reports at.
    n_startup_trials: Optional[int] = 5  # complete trials before any pruning
    n_warmup_steps: Optional[int] = 0  # never prune before this step
    interval_steps: Optional[int] = None
    # hyperband / successive_halving (None: Optuna's defaults)
    min_resource: Optional[int] = None
    max_resource: Optional[int] = None  # hyperband; None = "auto"
    reduction_factor: Optional[int] = None


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.ocrft_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    # SQLAlchemy URL. Relative SQLite paths are taken from the directory the sweep starts in,
    # so re-running a command from the same place resumes its study (the sweep dir has a
    # timestamp; a database in it would start afresh every time). Several machines:
    # postgresql://user@host/db (password from PGPASSWORD or ~/.pgpass, not the URL).
    storage: str = "sqlite:///optuna.db"
    study_name: Optional[str] = None  # None: <experiment_name or task>-<search_space>[-<hash of overrides>]
    direction: str = "minimize"  # minimize, maximize
    metric: str = "val/cer"  # key of the dict the job returns
    n_trials: int = 20  # COMPLETE + PRUNED trials the study ends with (failed ones are replaced)
    n_jobs: int = 1  # trials per batch, launched together by the Hydra launcher
    # Stop when more than this share of ended trials failed (raised, NaN, no metric), once
    # at least failure_min_trials trials ended; failures don't count toward n_trials.
    max_failure_rate: float = 0.5
    failure_min_trials: int = 4
    # Seconds between heartbeats of running trials. A trial whose sweep stopped (killed
    # machine, SIGKILL) goes stale after 2 heartbeats and is re-queued with its params.
    heartbeat_interval: int = 60
    sampler: SamplerConf = field(default_factory=SamplerConf)
    pruner: PrunerConf = field(default_factory=PrunerConf)


ConfigStore.instance().store(group="hydra/sweeper", name="base_optuna", node=OptunaSweeperConf, provider="ocrft")
