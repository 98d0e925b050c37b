"""train.max_seconds: TimeLimitCallback ends training at the first step end past the budget,
not before, and a run given the budget stops early through the real Trainer loop."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ocrft.training import callbacks
from ocrft.training.callbacks import TimeLimitCallback


def test_stops_at_the_first_step_end_past_the_budget(monkeypatch):
    clock = iter([100.0, 100.5, 101.9, 102.0, 150.0])
    monkeypatch.setattr(callbacks.time, "monotonic", lambda: next(clock))
    cb = TimeLimitCallback(2.0)
    args, control = SimpleNamespace(world_size=1), SimpleNamespace(should_training_stop=False)
    cb.on_train_begin(args, None, control)  # t = 100
    seen = []
    for step in range(1, 4):  # t = 100.5, 101.9, 102.0
        cb.on_step_end(args, SimpleNamespace(global_step=step), control)
        seen.append(control.should_training_stop)
    assert seen == [False, False, True]


@pytest.mark.slow
def test_a_run_with_a_time_budget_ends_before_max_steps(tmp_path):
    from tests.helpers import run

    record = run(["model=tiny_qwen2_vl", "data=synthetic", "data.num_train=64", "data.num_val=0", "data.num_test=2",
                  "train.max_steps=10000", "train.max_seconds=3", "train.per_device_train_batch_size=2",
                  "eval.every_n_steps=0", "eval.before_after=false", "eval.max_new_tokens=4"], tmp_path / "run")  # fmt: skip
    steps = record["metrics"]["train/global_step"]
    assert 1 <= steps < 10000 and record["status"] == "finished"
    assert record["metrics"]["system/train_seconds"] < 60
