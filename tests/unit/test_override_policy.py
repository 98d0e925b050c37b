"""What a launch from the studio may ask for (ocrft.studio.override_policy): ocrft's own config
groups and schema keys, the sweeper's short list, and written paths inside the roots only."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocrft.studio.compose import OverrideError, compose
from ocrft.studio.override_policy import SWEEPER_KEYS, config_groups, schema_has


def composed(tmp_path: Path, overrides: list[str], multirun: bool = False):
    return compose(overrides, multirun=multirun, roots=[tmp_path / "outputs"], cwd=tmp_path)


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        # issue 22's attack: Hydra instantiates callbacks, and shutil.copyfile passes its allowlist
        (["+hydra.callbacks.x._target_=shutil.copyfile", "+hydra.callbacks.x.src=/etc/hostname"], "_target_ names a Python callable"),
        (["+hydra.callbacks.x.cls=shutil.rmtree"], "only hydra/sweeper=<name>"),
        (["hydra.callbacks.mlflow_sweep.foo=1"], "only hydra/sweeper=<name>"),
        (["hydra.run.dir=/tmp/x"], "only hydra/sweeper=<name>"),
        (["hydra/launcher=basic"], "only hydra/sweeper=<name>"),
        (["hydra.sweep.subdir=x"], "only hydra/sweeper=<name>"),
        (["train.rewards={x: {_target_: os.system}}"], "_target_"),
        (["+model@hydra.callbacks.y=tiny_qwen2_vl"], "package (@) override"),
        (["+foo=1"], "foo is neither a config group nor a key"),
        (["+train.foo=1"], "train.foo is neither a config group nor a key"),
        (["model.trust_remote_code=true"], "runs the Python code shipped in the model's folder"),
        (["trial.storage=sqlite:///x.db"], "set by the sweeper only"),
        (["run_dir=/tmp/elsewhere"], "run_dir=/tmp/elsewhere: outside the studio's roots"),
        (["run_dir=outputs/../../x"], "outside the studio's roots"),
        (["run_dir=${oc.env:HOME}/x"], "outside the studio's roots"),
        (["task=prepare", "data.output_dir=/tmp/prepared"], "data.output_dir=/tmp/prepared: outside"),
        (["tracking.uri=sqlite:////tmp/mlflow.db"], "tracking.uri=sqlite:////tmp/mlflow.db: outside"),
        (["tracking.uri=file:///tmp/mlruns"], "outside the studio's roots"),
        (["task=merge", "merge.output_dir=/tmp/merged"], "merge.output_dir=/tmp/merged: outside"),
    ],
)
def test_refused_overrides_name_themselves(tmp_path, overrides, says):
    with pytest.raises(OverrideError) as refused:
        composed(tmp_path, overrides)
    assert says in str(refused.value)


@pytest.mark.parametrize(
    "overrides",
    [
        ["hydra.sweeper.storage=sqlite:////tmp/optuna.db", "+experiment=demo_sweep"],
        ["data.output_dir=outputs/a,/tmp/b", "task=prepare"],  # a swept location: each value would need a check
    ],
)
def test_refused_sweeps(tmp_path, overrides):
    with pytest.raises(OverrideError):
        composed(tmp_path, overrides, multirun=True)


@pytest.mark.parametrize(
    "overrides",
    [
        ["+experiment=demo", "train.max_steps=4"],
        ["++train.max_steps=3", "eval.limit=2"],
        ["run_dir=outputs/mine", "task=prepare", "data.output_dir=outputs/prepared"],
        ["tracking.uri=sqlite:///outputs/mlflow.db"],
        ["tracking.uri=http://127.0.0.1:5000"],  # a server, not a file
    ],
)
def test_ocrfts_own_config_composes(tmp_path, overrides):
    cfg = composed(tmp_path, overrides)
    assert cfg.task in ("train", "prepare")


def test_a_sweep_may_set_the_sweepers_keys(tmp_path):
    cfg = composed(tmp_path, ["+experiment=demo_sweep", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=3",
                              "hydra.sweeper.sampler.seed=1", "hydra.sweeper.storage=sqlite:///outputs/optuna.db",
                              "train.learning_rate=1e-4,2e-4"], multirun=True)  # fmt: skip
    assert cfg.task == "train"
    assert {"n_trials", "storage", "sampler", "pruner"} <= SWEEPER_KEYS


def test_the_same_overrides_on_the_command_line_are_not_policed(tmp_path):
    """Without roots (the CLI's own check) a config is the user's: the policy is the studio's only."""
    cfg = compose(["run_dir=/tmp/elsewhere", "model.trust_remote_code=true"])
    assert cfg.run_dir == "/tmp/elsewhere" and cfg.model.trust_remote_code is True


def test_schema_and_groups():
    assert schema_has("train.learning_rate") and schema_has("eval.loop_guard.ngram") and schema_has("run_dir")
    assert not schema_has("train.nope") and not schema_has("nope") and not schema_has("train.learning_rate.x")
    groups = config_groups()
    assert {"model", "data", "experiment", "hydra/sweeper", "search_space"} <= groups and "hydra" not in groups
