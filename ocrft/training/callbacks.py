"""The Trainer's callbacks: the run's metrics to the tracker, validation (with best-weights
saving, early stopping and trial pruning), and pruning for a Trainer of one's own."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Mapping, Optional, Sequence

from transformers import TrainerCallback

from ocrft.distributed import world
from ocrft.evaluation.metrics import MetricSettings
from ocrft.progress import ProgressLog
from ocrft.tracking.protocol import Tracker
from ocrft.search import TrialReporter
from ocrft.training.validation import ValidationCallback, make_validate

log = logging.getLogger(__name__)

# Hugging Face Trainer log keys -> our metric names (STYLE.md section 7).
_HF_METRIC_NAMES = {
    "loss": "train/loss",
    "learning_rate": "train/learning_rate",
    "grad_norm": "train/grad_norm",
    "epoch": "train/epoch",
    "train_loss": "train/mean_loss",  # the end-of-training average, not a step value
}


# TRL GRPOTrainer log keys (train=grpo) -> our names: the rewards under train/reward
_GRPO_METRIC_NAMES = {"reward": "train/reward", "reward_std": "train/reward_std"}
_GRPO_PREFIXES = ("completions/", "clip_ratio/", "tools/")  # TRL's per-step groups, kept under train/


def hf_metric_name(key: str) -> str:
    """Our name for a Hugging Face Trainer log key: ``loss`` -> ``train/loss``,
    ``eval_loss`` -> ``eval/loss``; GRPO's ``reward`` -> ``train/reward``,
    ``rewards/cer/mean`` -> ``train/reward/cer``, ``rewards/cer/std`` -> ``train/reward_std/cer``;
    any other key that already has a ``/`` is kept."""
    if key in _GRPO_METRIC_NAMES:
        return _GRPO_METRIC_NAMES[key]
    if key.startswith("rewards/") and key.endswith(("/mean", "/std")):
        name, stat = key[len("rewards/") :].rsplit("/", 1)
        return f"train/reward/{name}" if stat == "mean" else f"train/reward_std/{name}"
    if key.startswith(_GRPO_PREFIXES):
        return f"train/{key}"
    if "/" in key:
        return key
    if key in _HF_METRIC_NAMES:
        return _HF_METRIC_NAMES[key]
    for prefix in ("eval", "train", "test"):
        if key.startswith(prefix + "_"):
            return f"{prefix}/{key[len(prefix) + 1:]}"
    return f"train/{key}"


def last_rewards(log_history: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """GRPO's rewards at its last logging step, under our names (``train/reward``,
    ``train/reward/<name>``, ``train/reward_std/...``); {} for SFT."""
    last = next((logs for logs in reversed(log_history) if "reward" in logs), {})
    return {hf_metric_name(k): float(v) for k, v in last.items() if k.startswith("reward") and v is not None}


class TimeLimitCallback(TrainerCallback):
    """Ends training once ``max_seconds`` have passed since it began (``train.max_seconds``),
    at the end of a step, as reaching max_steps would: the final validation, the best
    weights and the scoring all follow."""

    def __init__(self, max_seconds: float) -> None:
        self.max_seconds = max_seconds
        self.started: Optional[float] = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        over = self.started is not None and time.monotonic() - self.started >= self.max_seconds
        if args.world_size > 1:  # rank 0's clock decides: ranks stopping at different steps would hang
            from accelerate.utils import broadcast_object_list

            over = broadcast_object_list([over])[0]
        if over and not control.should_training_stop:
            log.info("train.max_seconds=%g reached at step %d: training ends", self.max_seconds, state.global_step)
            control.should_training_stop = True
        return control


class TrackerCallback(TrainerCallback):
    """Sends the Trainer's logs (loss, learning rate, grad norm, epoch, eval) to the run's
    tracker (ocrft.tracking) at each logging step, under our metric names, and each step's
    position to the run's progress log (ocrft.progress)."""

    def __init__(self, tracker: Tracker, progress: ProgressLog = ProgressLog(None)) -> None:
        self.tracker = tracker
        self.progress = progress

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:  # a resumed run starts at its checkpoint's step
            self.progress.event("train", step=state.global_step, max_steps=state.max_steps)

    def on_step_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.progress.event("train", step=state.global_step, max_steps=state.max_steps)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            metrics = {hf_metric_name(k): v for k, v in logs.items()}
            self.tracker.log_metrics(metrics, step=state.global_step)
            self.progress.event("train", step=state.global_step, max_steps=state.max_steps, metrics=metrics)

    def on_train_end(self, args, state, control, **kwargs):
        self.tracker.flush()


class PruningCallback(TrainerCallback):
    """Reports ``metric`` to the trial and stops training when the study prunes it.

    For a Trainer of one's own (ocrft's training reports through ValidationCallback). The
    metric is picked up from ``Trainer.log``/``evaluate`` dicts; values reported directly
    with ``reporter.report`` are checked too (at the next step end). After training,
    ``pruned`` says whether the run stopped early: return status "pruned".
    """

    def __init__(self, reporter: TrialReporter, metric: str = "eval/cer") -> None:
        self.reporter, self.metric, self.pruned = reporter, metric, False

    def _observe(self, values: Optional[Mapping[str, Any]], state, control) -> None:
        value = (values or {}).get(self.metric)
        if value is not None:  # NaN too: the median pruner prunes a NaN trial at once
            self.reporter.report(float(value), state.global_step)
        if self.reporter.has_unchecked_report and self.reporter.should_prune():
            self.pruned = True
            control.should_training_stop = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        self._observe(logs, state, control)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self._observe(metrics, state, control)

    def on_step_end(self, args, state, control, **kwargs):
        self._observe(None, state, control)


def make_callbacks(
    tracker: Tracker, predictor: Any, val_records: Sequence, *, eval_cfg: Any, trial_cfg: Any,
    save_best: Callable[[], Any], progress: ProgressLog = ProgressLog(None), start_trained: bool = False,
    max_seconds: Optional[float] = None,
) -> tuple[Optional[ValidationCallback], list[TrainerCallback]]:
    """The tracker's callback and, when the run validates, the validation callback (which
    reads the val subset with ``predictor``, reports to the sweep's trial, if any, and calls
    ``save_best`` on each improvement; with ``start_trained``, the weights training starts
    from are validated at step 0 as well).

    Returns:
        the validation callback (None without validation) and every callback for the Trainer.
    """
    callbacks: list[TrainerCallback] = [TrackerCallback(tracker, progress)]
    if max_seconds:
        callbacks.append(TimeLimitCallback(max_seconds))
    if not (eval_cfg.every_n_steps and val_records):
        if eval_cfg.every_n_steps:
            log.warning("eval.every_n_steps=%d but the val split is empty: no validation", eval_cfg.every_n_steps)
        return None, callbacks
    subset = list(val_records)[: eval_cfg.val_subset]
    # rank 0 validates and reports; the others follow its decision
    reporter = TrialReporter.from_config(trial_cfg) if trial_cfg.storage and world().is_main else None
    validation = ValidationCallback(
        validate=make_validate(predictor, subset, normalization=eval_cfg.normalization,
                               settings=MetricSettings.from_eval(eval_cfg)),  # fmt: skip
        every_n_steps=eval_cfg.every_n_steps,
        metric=eval_cfg.metric,
        greater_is_better=eval_cfg.greater_is_better,
        tracker=tracker,
        save_best=save_best,
        patience=eval_cfg.early_stopping_patience,
        reporter=reporter,
        progress=progress,
        start_trained=start_trained,
    )
    callbacks.append(validation)
    return validation, callbacks
