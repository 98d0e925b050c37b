"""The sweeper: ask the study for trials, launch them as Hydra jobs, tell the study how they ended.

One loop, with the storage as the source of truth (several sweeps may share a study):

1. re-queue trials whose sweep stopped heartbeating (killed machine, SIGKILL);
2. stop when the study has ``n_trials`` COMPLETE + PRUNED trials, or too many failed;
3. ask up to ``n_jobs`` trials, but never more than the study still needs counting the
   trials running or queued anywhere; a trial that loses that race to another worker
   (found by trial number) is told FAIL at once with ``fail_reason=surplus``, unrun;
4. launch them through the configured Hydra launcher, job number = trial number, with the
   trial's params and identity (``trial.storage/study_name/trial_number``) as overrides;
5. tell each trial COMPLETE with the job's metric, PRUNED if the job says so, or FAIL
   with the error (a raise, a NaN, a missing metric) in the trial's ``error`` user attr.

At the end the best trial is logged and written out (see summary.py).
"""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.ocrft_optuna_sweeper import config as _config  # noqa: F401 - registers the schema
from ocrft.config import ConfigError
from ocrft.redact import scrub_text

if TYPE_CHECKING:
    import optuna
    from hydra.core.utils import JobReturn

log = logging.getLogger(__name__)


class SweepStopped(RuntimeError):
    """The sweep ended early because too many trials failed."""


class OptunaSweeper(Sweeper):
    """``hydra/sweeper=optuna``: an Optuna study driven through the Hydra launcher."""

    def __init__(
        self,
        storage: str,
        study_name: Optional[str],
        direction: str,
        metric: str,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        failure_min_trials: int,
        heartbeat_interval: int,
        sampler: Any,
        pruner: Any,
    ) -> None:
        super().__init__()
        self.storage_url, self.direction, self.metric = storage, direction, metric
        self.n_trials, self.n_jobs = int(n_trials), max(int(n_jobs), 1)
        self.max_failure_rate, self.failure_min_trials = float(max_failure_rate), int(failure_min_trials)
        self.heartbeat_interval = int(heartbeat_interval)
        self.sampler_spec = _plain(sampler)
        self.pruner_spec = _plain(pruner)
        self.hydra_context: Optional[HydraContext] = None
        self.config: Optional[DictConfig] = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # ------------------------------------------------------------------ the loop

    def _open_study(self, arguments: list[str]) -> "optuna.Study":
        """Check the overrides and the space, then create or load the study."""
        from hydra_plugins.ocrft_optuna_sweeper.study import build_sampler, grid_space, study_name_for
        from ocrft.search import PRUNER_ATTR, absolute_storage_url, build_pruner, create_study, open_storage

        assert self.config is not None
        self.fixed = _fixed_overrides(arguments)
        self.params = self._search_params()
        self.study_name = study_name_for(self.config)
        self.job_storage = absolute_storage_url(self.storage_url)
        self.rdb = open_storage(self.job_storage, self.heartbeat_interval)
        self.grid = self.sampler_spec["type"] == "grid"
        if self.grid:
            size = math.prod(len(values) for values in grid_space(self.params).values())
            if self.n_trials > size:
                log.info("n_trials=%d capped at the grid's %d points", self.n_trials, size)
                self.n_trials = size
        self.seed = self.sampler_spec.get("seed")
        self.build_sampler = lambda seed: build_sampler(self.sampler_spec, self.params, seed)
        study = create_study(self.rdb, self.study_name, self.direction, self.metric,
                             sampler=self.build_sampler(self.seed), pruner=build_pruner(self.pruner_spec))  # fmt: skip
        self.study_id = self.rdb.get_study_id_from_name(self.study_name)
        # The job rebuilds the pruner from here (it may run in another process or machine).
        study.set_user_attr(PRUNER_ATTR, self.pruner_spec)
        study.set_user_attr("ocrft.metric", self.metric)
        return study

    def sweep(self, arguments: list[str]) -> list[Sequence["JobReturn"]]:
        from hydra_plugins.ocrft_optuna_sweeper import summary
        from hydra_plugins.ocrft_optuna_sweeper.study import Tally

        assert self.config is not None and self.launcher is not None
        try:
            study = self._open_study(arguments)
        except ConfigError as err:
            # a bad sweeper or search_space value: one paragraph, as a run's own errors are
            # (ocrft/__main__.py), not Hydra's traceback
            from ocrft.runner import EXIT_USER_ERROR, user_error_message

            sys.stderr.write(f"ocrft: error: {user_error_message(err)}\n")
            raise SystemExit(EXIT_USER_ERROR) from None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        # Hydra's own sweepers save the config as typed; a key given on the command line stays out.
        from ocrft import atomic
        from ocrft.redact import redacted_sweep_yaml

        atomic.write_text(sweep_dir / "multirun.yaml", redacted_sweep_yaml(self.config))
        log.info(
            "Optuna study %r in %s: %d trials, %s %s, sampler %s, pruner %s",
            self.study_name, scrub_text(self.job_storage), self.n_trials, self.direction, self.metric,
            self.sampler_spec["type"], self.pruner_spec["type"],
        )
        started = summary.now()
        returns: list[Sequence[JobReturn]] = []
        stop_reason: Optional[str] = None
        waited_for: list[int] = []
        while True:
            self._requeue_stale(study)
            tally = Tally.of(study.get_trials(deepcopy=False))
            stop_reason = self._failure_stop(tally)
            if stop_reason or tally.finished >= self.n_trials or (self.grid and study.sampler.is_exhausted(study)):
                break
            free = self.n_trials - tally.finished - len(tally.running) - len(tally.waiting)
            n_ask = min(self.n_jobs, max(free, 0) + len(tally.waiting))
            if n_ask <= 0:
                # The rest of the study is running elsewhere: wait for it to end (or go stale).
                running = [t.number for t in tally.running]
                if running != waited_for:
                    log.info("waiting for trials %s, running elsewhere, to end", running)
                    waited_for = running
                time.sleep(min(self.heartbeat_interval, 10))
                continue
            batch = self._ask(study, n_ask)
            if batch:
                returns.append(self._run(study, batch))

        summary.finish(self, study, sweep_dir, started=started, stop_reason=stop_reason)
        if stop_reason:
            raise SweepStopped(stop_reason)
        return returns

    def _search_params(self) -> list[dict]:
        """The space from the composed config, checked against it before any trial runs."""
        from hydra_plugins.ocrft_optuna_sweeper.study import shared_keys
        from ocrft.search import check_search_space

        space = OmegaConf.select(self.config, "search_space.params")
        if space is None:
            raise ConfigError("search_space.params is not set: hydra/sweeper=optuna needs a search_space group "
                              "(e.g. search_space=default)")
        params = OmegaConf.to_container(space, resolve=True)
        check_search_space(self.config, params)
        both = shared_keys(self.fixed, [p["path"] + "=" for p in params])
        if both:
            raise ConfigError(f"{', '.join(both)}: set on the command line and searched by search_space; drop one")
        return params

    def _failure_stop(self, tally: Any) -> Optional[str]:
        ended = tally.finished + tally.failed
        if ended >= self.failure_min_trials and tally.failed / ended > self.max_failure_rate:
            return (
                f"{tally.failed} of {ended} ended trials failed (max_failure_rate={self.max_failure_rate}); "
                f"last error: {tally.last_error}"
            )
        return None

    def _requeue_stale(self, study: "optuna.Study") -> None:
        import optuna

        before = {t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        after = {t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
        if before - after:
            log.warning("trials %s stopped heartbeating (their sweep died): failed and re-queued", sorted(before - after))

    def _ask(self, study: "optuna.Study", n: int) -> list[tuple["optuna.Trial", list[str]]]:
        from optuna.trial import TrialState

        from hydra_plugins.ocrft_optuna_sweeper.study import Tally
        from ocrft.search import suggest

        asked = []
        for _ in range(n):
            with warnings.catch_warnings():
                # "Heartbeat of storage is supposed to be used with Study.optimize": we beat ourselves.
                warnings.simplefilter("ignore", UserWarning)
                trial = study.ask()
            self.rdb.record_heartbeat(self._trial_id(trial.number))
            asked.append(trial)

        # Several sweeps may have asked at once: the trials beyond the study's budget, by trial
        # number among all running and queued ones, are surplus; the lower numbers run.
        trials = study.get_trials(deepcopy=False)
        tally = Tally.of(trials)
        claimed = sorted(t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING))
        allowed = set(claimed[: max(self.n_trials - tally.finished, 0)])
        batch = []
        for trial in asked:
            if trial.number not in allowed:
                trial.set_user_attr("fail_reason", "surplus")
                study.tell(trial, state=TrialState.FAIL)
                log.info("trial %d not run: the study already has its %d trials", trial.number, self.n_trials)
                continue
            if not self.grid and self.seed is not None:
                # Seed per trial number: workers sharing a study draw different points.
                study.sampler = self.build_sampler(self.seed + trial.number)
            try:
                overrides = suggest(trial, self.params)
            except Exception as err:
                trial.set_user_attr("error", f"{type(err).__name__}: {err}")
                study.tell(trial, state=TrialState.FAIL)
                raise
            batch.append((trial, overrides))
        return batch

    def _run(self, study: "optuna.Study", batch: list[tuple["optuna.Trial", list[str]]]) -> list["JobReturn"]:
        from optuna.trial import TrialState

        from hydra_plugins.ocrft_optuna_sweeper.study import Heartbeat, consecutive_runs
        from ocrft.search import format_override

        jobs = []
        for trial, overrides in batch:
            identity = [
                format_override("trial.storage", self.job_storage),
                format_override("trial.study_name", self.study_name),
                format_override("trial.trial_number", trial.number),
            ]
            jobs.append([*self.fixed, *overrides, *identity])
            log.info("trial %d: %s", trial.number, " ".join(overrides))
        try:
            self.validate_batch_is_legal(jobs)
        except Exception as err:
            for trial, _ in batch:
                trial.set_user_attr("error", f"config: {err}")
                study.tell(trial, state=TrialState.FAIL)
            raise

        results: list[JobReturn] = []
        with Heartbeat(self.rdb, [self._trial_id(t.number) for t, _ in batch], self.heartbeat_interval):
            try:
                # Job number = trial number: run dirs <sweep dir>/<trial number> never collide,
                # across resumed sweeps and workers sharing one sweep dir.
                for start, stop in consecutive_runs([t.number for t, _ in batch]):
                    results += self.launcher.launch(jobs[start:stop], initial_job_idx=batch[start][0].number)
            finally:
                # Ctrl-C or a launcher error: tell what ended, re-queue what did not.
                for (trial, _), result in zip(batch, results):
                    self._tell(study, trial, result)
                for trial, _ in batch[len(results):]:
                    self._fail_and_requeue(study, trial, "interrupted")
        return results

    def _tell(self, study: "optuna.Study", trial: "optuna.Trial", result: "JobReturn") -> None:
        from hydra_plugins.ocrft_optuna_sweeper import summary
        from hydra_plugins.ocrft_optuna_sweeper.study import job_outcome

        state, value, error = job_outcome(result, self.metric)
        run_dir = OmegaConf.select(result.hydra_cfg, "hydra.runtime.output_dir") if result.hydra_cfg else None
        if run_dir:
            trial.set_user_attr("run_dir", str(run_dir))
        if error:
            trial.set_user_attr("error", error[:2000])
            exc = result._return_value if isinstance(result._return_value, BaseException) else None
            log.warning("trial %d failed: %s", trial.number, error, exc_info=exc)
        frozen = study.tell(trial, value, state=state, skip_if_finished=True)
        log.info("trial %d %s%s", trial.number, frozen.state.name, "" if frozen.value is None else f": {self.metric}={frozen.value:.6g}")
        summary.tag_child_run(result, run_dir, trial.number, frozen.state.name)

    def _fail_and_requeue(self, study: "optuna.Study", trial: "optuna.Trial", reason: str) -> None:
        import optuna

        trial.set_user_attr("fail_reason", reason)
        frozen = study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        frozen.user_attrs.pop("fail_reason", None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.RetryHeartbeatStaleTrialCallback()(study, frozen)
        log.warning("trial %d %s: re-queued with the same params", trial.number, reason)

    def _trial_id(self, number: int) -> int:
        return self.rdb.get_trial_id_from_study_id_trial_number(self.study_id, number)


def _fixed_overrides(arguments: list[str]) -> list[str]:
    """The command line's overrides, which every trial gets; sweep syntax is refused."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for override in OverridesParser.create().parse_overrides(arguments):
        if override.is_sweep_override():
            raise ConfigError(
                f"{override.key_or_group}: {override.input_line!r} sweeps it, but hydra/sweeper=optuna searches "
                "the search_space group; put the parameter there instead of sweeping it on the command line"
            )
    return list(arguments)


def _plain(node: Any) -> dict:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
