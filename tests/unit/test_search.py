"""ocrft.search and the sweeper's pure parts, on real SQLite Optuna storages in tmp_path."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.helpers import CONF, compose

optuna = pytest.importorskip("optuna")
from optuna.trial import TrialState  # noqa: E402

from hydra_plugins.ocrft_optuna_sweeper import study as study_mod  # noqa: E402
from ocrft import search  # noqa: E402


@pytest.fixture()
def study(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    return optuna.create_study(storage=search.open_storage(url), study_name="s", sampler=optuna.samplers.RandomSampler(seed=0))


def parse(override: str):
    """The value Hydra's own parser reads from an override string."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_override(override).value()


# ------------------------------------------------------------------ overrides


@pytest.mark.parametrize(
    "value",
    [1e-5, 3.0e-4, 0.1, 2, -1, 0, True, False, None, "sgd", "true", "1e-3", "null", "it's", "a b,c=d", "back\\slash'",
     ["q_proj", "v_proj"], [], [1, 2.5], {"a": 1}],
)  # fmt: skip
def test_format_override_round_trips_through_hydras_parser(value):
    key, _, _ = search.format_override("a.b", value).partition("=")
    assert key == "a.b"
    assert parse(search.format_override("a.b", value)) == value
    assert type(parse(search.format_override("a.b", value))) is type(value)


def test_encode_decode_choices():
    assert search.encode_choice(["q_proj", "v_proj"]) == '["q_proj", "v_proj"]'
    assert search.decode_choice('["q_proj", "v_proj"]') == ["q_proj", "v_proj"]
    for plain in (None, True, 3, 0.5, "adam", "[not json"):
        assert search.decode_choice(search.encode_choice(plain)) == plain


# ------------------------------------------------------------------ suggest


SPACE = [
    {"path": "train.learning_rate", "type": "float", "low": 1e-5, "high": 5e-4, "log": True},
    {"path": "peft.lora_dropout", "type": "float", "low": 0.0, "high": 0.1, "step": 0.05},
    {"path": "train.num_train_epochs", "type": "float", "low": 1, "high": 3, "step": 1},
    {"path": "peft.r", "type": "int", "low": 4, "high": 64, "log": True},
    {"path": "train.max_steps", "type": "int", "low": 100, "high": 1000, "step": 100},
    {"path": "train.gradient_accumulation_steps", "type": "int", "low": 1, "high": 8},
    {"path": "peft.freeze_vision", "type": "categorical", "choices": [True, False]},
    {"path": "peft.target_modules", "type": "categorical", "choices": [None, ["q_proj", "v_proj"], ["q_proj", "k_proj"]]},
    {"path": "train.lr_scheduler_type", "type": "categorical", "choices": ["cosine", "linear"]},
]


def test_suggest_samples_every_type_into_overrides(study):
    seen_targets = set()
    for _ in range(8):
        trial = study.ask()
        overrides = search.suggest(trial, SPACE)
        values = {o.split("=", 1)[0]: parse(o) for o in overrides}
        assert list(values) == [p["path"] for p in SPACE]  # one override per param, in order
        assert 1e-5 <= values["train.learning_rate"] <= 5e-4
        assert values["peft.lora_dropout"] in (0.0, 0.05, 0.1)
        assert values["train.num_train_epochs"] in (1.0, 2.0, 3.0)
        assert isinstance(values["peft.r"], int) and 4 <= values["peft.r"] <= 64
        assert values["train.max_steps"] % 100 == 0
        assert isinstance(values["peft.freeze_vision"], bool)
        assert values["peft.target_modules"] in (None, ["q_proj", "v_proj"], ["q_proj", "k_proj"])
        seen_targets.add(json.dumps(values["peft.target_modules"]))
        # Optuna stores the list choice as its JSON string; the name is the config path.
        stored = trial.params["peft.target_modules"]
        assert stored is None or isinstance(stored, str)
        assert search.overrides_from_params(SPACE, trial.params) == overrides
        study.tell(trial, 0.5)
    assert len(seen_targets) > 1
    dists = study.trials[0].distributions
    assert dists["train.learning_rate"].log and dists["peft.r"].log
    assert dists["train.max_steps"].step == 100
    assert dists["peft.lora_dropout"].step == 0.05


def test_suggest_rejects_unknown_type(study):
    with pytest.raises(search.SearchSpaceError, match="uniform"):
        search.suggest(study.ask(), [{"path": "a", "type": "uniform", "low": 0, "high": 1}])


def test_grid_space():
    grid = study_mod.grid_space(
        [
            {"path": "a", "type": "int", "low": 4, "high": 12, "step": 4},
            {"path": "b", "type": "float", "low": 0.0, "high": 0.1, "step": 0.05},
            {"path": "c", "type": "categorical", "choices": [["x"], "y"]},
        ]
    )
    assert grid == {"a": [4, 8, 12], "b": [0.0, 0.05, 0.1], "c": ['["x"]', "y"]}
    with pytest.raises(search.SearchSpaceError, match="needs a step"):
        study_mod.grid_space([{"path": "lr", "type": "float", "low": 0.1, "high": 1.0}])


# ------------------------------------------------------------------ validation against the real conf


@pytest.mark.parametrize("space", sorted(p.stem for p in (CONF / "search_space").glob("*.yaml") if p.stem != "none"))
def test_shipped_search_spaces_fit_the_composed_config(space):
    train = ["train=grpo"] if space == "grpo" else []  # GRPO's keys exist under train=grpo only
    cfg = compose([f"search_space={space}", "hydra/sweeper=optuna", *train], return_hydra_config=True)
    search.check_search_space(cfg, cfg.search_space.params)
    assert cfg.hydra.sweeper.metric == "val/cer"


def test_check_search_space_lists_every_bad_key():
    cfg = compose([], return_hydra_config=True)
    bad = [
        {"path": "train.learning_rate", "type": "float", "low": 1e-5, "high": 1e-3, "log": True},
        {"path": "train.lerning_rate", "type": "float", "low": 1e-5, "high": 1e-3},
        {"path": "peft.r", "type": "categorical", "choices": [8, "big"]},
        {"path": "train.max_steps", "type": "float", "low": 1, "high": 2.5},
        {"path": "peft.lora_alpha", "type": "int", "low": 64, "high": 8},
        {"path": "peft.lora_dropout", "type": "normal", "low": 0, "high": 1},
    ]
    with pytest.raises(search.SearchSpaceError) as err:
        search.check_search_space(cfg, bad)
    message = str(err.value)
    assert "train.learning_rate" not in message
    for key in ("train.lerning_rate: no such key", "peft.r: value 'big'", "train.max_steps: value 2.5", "peft.lora_alpha", "normal"):
        assert key in message
    with pytest.raises(search.SearchSpaceError, match="empty"):
        search.check_search_space(cfg, [])


def test_study_name_follows_the_command():
    def name(*overrides):
        return study_mod.study_name_for(compose(["hydra/sweeper=optuna", *overrides], return_hydra_config=True))

    assert name("search_space=conservative") == "train-conservative"
    assert name("search_space=conservative", "hydra.sweeper.n_trials=50") == "train-conservative"
    with_data = name("search_space=conservative", "data.num_train=64")
    assert with_data.startswith("train-conservative-") and with_data == name("data.num_train=64", "search_space=conservative")
    assert with_data != name("search_space=conservative", "data.num_train=65")
    assert name("hydra.sweeper.study_name=mine") == "mine"


# ------------------------------------------------------------------ samplers and pruners


def test_build_sampler():
    space = [{"path": "a", "type": "categorical", "choices": [1, 2]}]
    assert isinstance(study_mod.build_sampler({"type": "tpe", "n_startup_trials": 3}, space, 1), optuna.samplers.TPESampler)
    assert isinstance(study_mod.build_sampler({"type": "random"}, space, 1), optuna.samplers.RandomSampler)
    assert isinstance(study_mod.build_sampler({"type": "grid"}, space, 1), optuna.samplers.GridSampler)
    with pytest.raises(ValueError, match="choose one of"):
        study_mod.build_sampler({"type": "bayes"}, space, 1)


def _sweep_study(url: str, pruner_overrides: list[str]):
    """The study OptunaSweeper.sweep creates for ``hydra/sweeper=optuna`` with these overrides:
    its pruner built from the composed ``hydra.sweeper.pruner`` and recorded on the study,
    where the job (another process) rebuilds it from. (The sampler plays no part here.)"""
    cfg = compose(["hydra/sweeper=optuna", *pruner_overrides], return_hydra_config=True)
    spec = OmegaConf.to_container(cfg.hydra.sweeper.pruner, resolve=True)
    study = search.create_study(search.open_storage(url), "s", "minimize", "val/cer",
                                sampler=optuna.samplers.RandomSampler(seed=0), pruner=search.build_pruner(spec))  # fmt: skip
    study.set_user_attr(search.PRUNER_ATTR, spec)
    return study


VALIDATION_STEPS = list(range(2, 20, 2))  # eval.every_n_steps=2 over 18 training steps


def _job_pruned_at(url: str, number: int, values: list[float]):
    """What a job does (ValidationCallback): report each validation, ask whether to stop.
    The training step it was pruned at, or None if it ran to the end."""
    reporter = search.TrialReporter.from_config(OmegaConf.create({"storage": url, "study_name": "s", "trial_number": number}))
    for step, value in zip(VALIDATION_STEPS, values):
        reporter.report(value, step)
        if reporter.should_prune():
            return step
    return None


@pytest.mark.parametrize(
    "overrides, bad_pruned_at",
    [
        ([], {2}),  # the shipped default: median once 5 trials are complete, from the first report
        # not before step 5; min_resource is hyperband's, and median ignores it
        (["hydra.sweeper.pruner.n_warmup_steps=5", "hydra.sweeper.pruner.min_resource=9"], {6}),
        (["hydra.sweeper.pruner.n_startup_trials=9"], {None}),  # too few complete trials to judge by
        (["hydra.sweeper.pruner.type=successive_halving", "hydra.sweeper.pruner.min_resource=4"], {4}),  # first rung
        # at the first rung of whichever bracket the trial falls in
        (["hydra.sweeper.pruner.type=hyperband", "hydra.sweeper.pruner.min_resource=2",
          "hydra.sweeper.pruner.max_resource=18"], set(VALIDATION_STEPS)),
        (["hydra.sweeper.pruner.type=none"], {None}),
    ],
)  # fmt: skip
def test_each_pruner_config_prunes_a_bad_trial_and_spares_a_good_one(tmp_path, overrides, bad_pruned_at):
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = _sweep_study(url, overrides)
    learning = [0.6 - 0.4 * i / (len(VALIDATION_STEPS) - 1) for i in range(len(VALIDATION_STEPS))]  # 0.6 -> 0.2
    for _ in range(6):  # six trials that learnt, ran to the end and were told their last value
        number = study.ask().number
        assert _job_pruned_at(url, number, learning) is None
        study.tell(number, learning[-1])
    # A trial asked by the sweeper and run as a job; val/cer stays at 1.0 (nothing learnt) ...
    bad = _job_pruned_at(url, study.ask().number, [1.0] * len(VALIDATION_STEPS))
    # ... and one that is better than every finished trial at every step.
    good = _job_pruned_at(url, study.ask().number, [0.1] * len(VALIDATION_STEPS))
    assert bad in bad_pruned_at
    assert good is None
    states = {t.number: t.state for t in optuna.load_study(study_name="s", storage=url).trials}
    assert list(states.values())[-2:] == [TrialState.RUNNING, TrialState.RUNNING]  # the sweeper, not the job, ends them


def test_a_study_without_a_recorded_pruner_never_prunes(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(storage=search.open_storage(url), study_name="s")  # not made by our sweeper
    for _ in range(6):
        _finished_trial(study, [0.2] * len(VALIDATION_STEPS))
    assert _job_pruned_at(url, study.ask().number, [1.0] * len(VALIDATION_STEPS)) is None


def test_cmaes_without_the_package_says_what_to_install():
    import importlib.util

    if importlib.util.find_spec("cmaes") is not None:
        pytest.skip("cmaes is installed")
    with pytest.raises(ImportError, match="pip install cmaes"):
        study_mod.build_sampler({"type": "cmaes"}, [], 0)


def test_absolute_storage_url(tmp_path):
    assert search.absolute_storage_url("sqlite:///optuna.db", tmp_path) == f"sqlite:///{tmp_path}/optuna.db"
    assert search.absolute_storage_url("sqlite:////abs/o.db", tmp_path) == "sqlite:////abs/o.db"
    assert search.absolute_storage_url("postgresql://u@h/db", tmp_path) == "postgresql://u@h/db"


def test_create_study_names_its_objective_and_resumes(tmp_path):
    from optuna_dashboard._named_objectives import get_objective_names

    url = f"sqlite:///{tmp_path}/optuna.db"
    study = search.create_study(search.open_storage(url), "s", "minimize", "val/cer")
    assert study.metric_names == ["val/cer"]
    # what optuna-dashboard reads for its column headers (instead of "Objective 0")
    assert get_objective_names(study._storage.get_study_system_attrs(study._study_id)) == ["val/cer"]
    _finished_trial(study, [0.5])
    again = search.create_study(search.open_storage(url, existing=True), "s", "minimize", "val/wer")
    assert len(again.trials) == 1 and again.metric_names == ["val/wer"]  # resumed, renamed to what it optimises now
    with pytest.raises(ValueError, match="hydra.sweeper.direction=maximize: study .* created to minimize"):
        search.create_study(search.open_storage(url, existing=True), "s", "maximize", "val/cer")


# ------------------------------------------------------------------ the job side


def _finished_trial(study, values: list[float]) -> None:
    trial = study.ask()
    for step, v in enumerate(values):
        trial.report(v, step)
    study.tell(trial, values[-1])


def test_trial_reporter_reports_to_the_shared_storage_and_prunes(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(storage=search.open_storage(url), study_name="s")
    study.set_user_attr(search.PRUNER_ATTR, {"type": "median", "n_startup_trials": 2, "n_warmup_steps": 1})
    for _ in range(2):
        _finished_trial(study, [0.5, 0.3, 0.2])
    number = study.ask().number  # what the sweeper does; the job only gets the number
    cfg = OmegaConf.create({"storage": url, "study_name": "s", "trial_number": number})
    reporter = search.TrialReporter.from_config(cfg)
    reporter.report(0.9, 0)
    assert not reporter.should_prune()  # warm-up step
    reporter.report(0.9, 0)  # repeated step: ignored
    reporter.report(0.8, 1)
    assert reporter.should_prune() and reporter.pruned
    # Another process (a fresh study object) sees the values the job reported.
    again = optuna.load_study(study_name="s", storage=url).trials[number]
    assert again.state == TrialState.RUNNING and again.intermediate_values == {0: 0.9, 1: 0.8}


def test_trial_reporter_from_config_outside_a_sweep():
    assert search.TrialReporter.from_config(OmegaConf.create({"storage": None, "study_name": None, "trial_number": None})) is None
    assert search.TrialReporter.from_config(compose([]).trial) is None


@pytest.mark.slow  # imports transformers
def test_pruning_callback_stops_the_trainer(tmp_path):
    from transformers import TrainerControl, TrainerState

    from ocrft.training.callbacks import PruningCallback

    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(storage=search.open_storage(url), study_name="s")
    study.set_user_attr(search.PRUNER_ATTR, {"type": "median", "n_startup_trials": 1})
    _finished_trial(study, [0.4, 0.2])
    reporter = search.TrialReporter(url, "s", study.ask().number)
    callback = PruningCallback(reporter, metric="eval/cer")
    state, control = TrainerState(), TrainerControl()
    state.global_step = 0
    callback.on_log(None, state, control, logs={"loss": 2.0})  # no metric: nothing to report
    assert not control.should_training_stop and not callback.pruned
    callback.on_evaluate(None, state, control, metrics={"eval/cer": 0.3})  # better than the median
    assert not control.should_training_stop
    state.global_step = 1
    reporter.report(0.9, 1)  # a value reported by the training code itself ...
    callback.on_step_end(None, state, control)  # ... is checked at the next step end
    assert control.should_training_stop and callback.pruned
    assert optuna.load_study(study_name="s", storage=url).trials[1].intermediate_values == {0: 0.3, 1: 0.9}


# ------------------------------------------------------------------ how a job ends its trial


def _job(status, value):
    from hydra.core.utils import JobReturn, JobStatus

    ret = JobReturn()
    ret.status = JobStatus[status]
    ret.return_value = value
    return ret


@pytest.mark.parametrize(
    "status, value, state, told, error",
    [
        ("COMPLETED", {"val/cer": 0.25, "status": "finished"}, TrialState.COMPLETE, 0.25, None),
        ("COMPLETED", {"val/cer": 0.9, "status": "pruned"}, TrialState.PRUNED, None, None),
        ("COMPLETED", {"val/cer": math.nan, "status": "finished"}, TrialState.FAIL, None, "nan"),
        ("COMPLETED", {"eval/cer": 0.2, "status": "finished"}, TrialState.FAIL, None, "has no 'val/cer'"),
        ("COMPLETED", {"status": "failed"}, TrialState.FAIL, None, "status 'failed'"),
        ("COMPLETED", 0.125, TrialState.COMPLETE, 0.125, None),
        ("FAILED", RuntimeError("CUDA out of memory"), TrialState.FAIL, None, "RuntimeError: CUDA out of memory"),
    ],
)
def test_job_outcome(status, value, state, told, error):
    from hydra_plugins.ocrft_optuna_sweeper.study import job_outcome

    got_state, got_value, got_error = job_outcome(_job(status, value), "val/cer")
    assert (got_state, got_value) == (state, told)
    assert (got_error is None) if error is None else (error in got_error)


def test_consecutive_runs():
    from hydra_plugins.ocrft_optuna_sweeper.study import consecutive_runs

    assert consecutive_runs([4, 5, 6]) == [(0, 3)]
    assert consecutive_runs([3, 10, 11]) == [(0, 1), (1, 3)]
    assert consecutive_runs([]) == []
