"""Generation-based validation during training: CER on generated text, not loss on logits.

Every ``eval.every_n_steps`` the model transcribes a fixed subset of the val split; the
metric is logged, reported to an Optuna trial (which may prune), drives best-checkpoint
selection and early stopping.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Optional, Sequence

from transformers import TrainerCallback

from ocrft.config import ConfigError
from ocrft.data.record import Record
from ocrft.evaluation.metrics import MetricSettings, count_looped, score_detailed
from ocrft.models.sharding import is_sharded
from ocrft.progress import ProgressLog
from ocrft.tracking.protocol import Tracker

log = logging.getLogger(__name__)


class ValidationCallback(TrainerCallback):
    """Runs validation on step ends and at the end of training.

    Args:
        validate: scores the model now (``make_validate``), returns metric name -> value.
        tracker: the run's tracker (ocrft.tracking), which gets ``val/<name>`` at each validation.
        save_best: saves the current weights as the best ones.
        reporter: the sweep trial to report to (``ocrft.search.TrialReporter``), or None.
        progress: the run's progress log (ocrft.progress), which gets each validation.
        start_trained: training continues trained weights (an ocrft run's adapter): they are
            validated at step 0 too, so that a run that only makes them worse keeps them as
            its best (GRPO after SFT can; issue 24).
    """

    def __init__(
        self,
        validate: Callable[[], dict],
        every_n_steps: int,
        metric: str,
        greater_is_better: bool,
        tracker: Tracker,
        save_best: Callable[[], Any],
        patience: Optional[int] = None,
        reporter: Any = None,
        progress: ProgressLog = ProgressLog(None),
        start_trained: bool = False,
    ):
        self.validate = validate
        self.start_trained = start_trained
        self.every = every_n_steps
        self.metric = metric
        self.sign = 1 if greater_is_better else -1
        self.tracker = tracker
        self.save_best = save_best
        self.patience = patience
        self.reporter = reporter
        self.progress = progress
        self.best: Optional[float] = None
        self.best_step: Optional[int] = None
        self.bad_rounds = 0
        self.pruned = False
        self.last_step = -1
        self.history: list[tuple[int, float]] = []

    def _run(self, step: int, control, is_main: bool = True) -> None:
        """Validate; on a sharded model every rank runs this (they generate together and
        gather the weights to save them together), and the results are rank 0's."""
        if step == self.last_step:
            return
        self.last_step = step
        metrics = self.validate()
        value = metrics[self.metric]
        self.history.append((step, value))
        if is_main:
            named = {f"val/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}
            self.tracker.log_metrics(named, step=step)
            self.progress.event("validation", step=step, metrics=named)
            log.info("step %d: val/%s = %.4f", step, self.metric, value)
        if self.best is None or (not math.isnan(value) and self.sign * value > self.sign * self.best):
            self.best, self.best_step, self.bad_rounds = value, step, 0
            self.save_best()
        else:
            self.bad_rounds += 1
            if self.patience and self.bad_rounds >= self.patience:
                log.info("early stopping: no improvement in %d validations", self.bad_rounds)
                control.should_training_stop = True
        if self.reporter is not None:
            self.reporter.report(value, step)
            if self.reporter.should_prune():
                log.info("trial pruned at step %d (val/%s = %.4f)", step, self.metric, value)
                self.pruned = True
                control.should_training_stop = True

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.every and self.start_trained and state.global_step == 0:  # not on resume: the first run did
            if state.is_world_process_zero or _sharded(model):
                self._run(0, control, state.is_world_process_zero)
            if args.world_size > 1:
                self._follow_rank_zero(control)
        return control

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every and state.global_step % self.every == 0:
            if state.is_world_process_zero or _sharded(model):
                self._run(state.global_step, control, state.is_world_process_zero)
            if args.world_size > 1:
                self._follow_rank_zero(control)
        return control

    def _follow_rank_zero(self, control) -> None:
        # Rank 0 validates while the others wait here for its decision: a rank that stopped
        # (early stopping, pruning) alone would leave the rest at a mismatched collective.
        from accelerate.utils import broadcast_object_list

        stop, self.pruned = broadcast_object_list([(control.should_training_stop, self.pruned)])[0]
        control.should_training_stop = stop

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.every and not self.pruned and (state.is_world_process_zero or _sharded(model)):
            self._run(state.global_step, control, state.is_world_process_zero)
        return control


def _sharded(model) -> bool:
    return model is not None and is_sharded(model)


def make_validate(predictor: Any, records: Sequence[Record], *, normalization: Any, settings: MetricSettings) -> Callable[[], dict]:
    """A closure scoring the model on a fixed subset with ``predictor`` (an
    ocrft.evaluation.local.LocalPredictor around the model in training; no files written)."""
    references = [r.text for r in records]

    def validate() -> dict:
        outputs = predictor.predict(records)
        metrics, samples = score_detailed([g.text for g in outputs], references, normalization, settings)
        count_looped(metrics, samples, [g.looped for g in outputs])
        return metrics

    return validate


def check_validation_data(every_n_steps: int, val_records: Sequence, data_format: str, val_source: str) -> None:
    """Stop a run asked to validate (``eval.every_n_steps > 0``) whose val split is empty.

    Called before the model loads: a run without validation would train blind (no best
    checkpoint, no early stopping, nothing for a sweep to prune on) and say so only in a log line.

    Raises:
        ConfigError: naming the data source and the two ways out.
    """
    if every_n_steps and not val_records:
        raise ConfigError(
            f"eval.every_n_steps={every_n_steps} validates during training, but the val split is empty "
            f"(data.format={data_format}; val from {val_source}). Set data.val_from_train=0.1 to move a tenth "
            "of train (whole pages or images) into val, or eval.every_n_steps=0 to train without validation"
        )
