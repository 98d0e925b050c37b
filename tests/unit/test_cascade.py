"""model=cascade's pure parts: thresholds (ties), routing, the CER-versus-cost curve, AUROC,
costs, the family lookup, and CascadePredictor's batch routing with a stand-in local model and endpoint."""

from __future__ import annotations

import json
import math
import random

import pytest

from ocrft.config import ConfigError
from ocrft.evaluation import cascade as calc
from ocrft.evaluation.cascade_eval import CascadePredictor
from ocrft.evaluation.endpoint import Completion
from ocrft.evaluation.generation import Generation
from tests.helpers import compose


def test_pick_threshold_sends_at_most_the_fraction():
    conf = [-0.9, -0.1, -0.5, -0.3, -0.7, -0.2, -0.05, -0.6, -0.4, -0.8]
    t = calc.pick_threshold(conf, 0.3)
    assert t == -0.6  # the 4th smallest: exactly 3 of 10 lie strictly below it
    assert sorted(c for c, go in zip(conf, calc.route(conf, t)) if go) == [-0.9, -0.8, -0.7]
    assert sum(calc.route(conf, calc.pick_threshold(conf, 0.35))) == 3


def test_pick_threshold_never_splits_a_tie():
    conf = [-1.0, -0.5, -0.5, -0.5, -0.1]
    # 40% = 2 samples allowed, but -0.5 is shared by three: only -1.0 may go
    t = calc.pick_threshold(conf, 0.4)
    assert calc.route(conf, t) == [True, False, False, False, False]
    # 80% = 4: the tie fits as a whole
    assert calc.route(conf, calc.pick_threshold(conf, 0.8)) == [True, True, True, True, False]
    assert not any(calc.route([-0.2] * 5, calc.pick_threshold([-0.2] * 5, 0.5)))


def test_pick_threshold_edges():
    conf = [-0.3, -0.2, -0.1]
    assert not any(calc.route(conf, calc.pick_threshold(conf, 0.0)))
    assert all(calc.route(conf, calc.pick_threshold(conf, 1.0)))
    with pytest.raises(ValueError, match="empty"):
        calc.pick_threshold([], 0.3)
    with pytest.raises(ValueError, match="max_fraction"):
        calc.pick_threshold(conf, 1.5)


def test_curve_runs_from_local_only_to_fallback_only():
    conf = [-0.1, -0.9, -0.5, -0.5]
    local = [(0, 10), (5, 10), (2, 10), (4, 10)]  # the unsure ones are wrong
    fallback = [(1, 10), (0, 10), (0, 10), (1, 10)]
    costs = [0.01, 0.02, 0.03, 0.04]
    curve = calc.cascade_curve(conf, local, fallback, costs)
    assert [p["routed_fraction"] for p in curve] == [0.0, 0.25, 0.75, 1.0]
    assert curve[0]["cer"] == pytest.approx(11 / 40) and curve[0]["cost_total"] == 0.0
    assert curve[1]["cer"] == pytest.approx(6 / 40) and curve[1]["cost_total"] == pytest.approx(0.02)
    assert curve[2]["cer"] == pytest.approx(1 / 40) and curve[2]["cost_total"] == pytest.approx(0.09)
    assert curve[3]["cer"] == pytest.approx(2 / 40) and curve[3]["cost_total"] == pytest.approx(0.10)
    assert curve[3]["threshold"] > -0.1
    # each point is what routing at its threshold gives
    for p in curve:
        routes = calc.route(conf, p["threshold"])
        edits = sum(f[0] if go else loc[0] for loc, f, go in zip(local, fallback, routes))
        assert p["cer"] == pytest.approx(edits / 40)
    assert calc.cheapest_meeting(curve, 0.05)["routed_fraction"] == 0.75  # 1.0 also meets it, dearer
    assert calc.cheapest_meeting(curve, 0.2)["routed_fraction"] == 0.25
    assert calc.cheapest_meeting(curve, 0.001) is None


def test_unpriced_curve_has_no_cost_and_picks_the_fewest_routed():
    curve = calc.cascade_curve([-0.2, -0.8], [(0, 5), (3, 5)], [(0, 5), (0, 5)], [None, None])
    assert [p["cost_total"] for p in curve] == [0.0, None, None]
    assert calc.cheapest_meeting(curve, 0.0)["routed_fraction"] == 0.5


def test_char_counts_add_up_to_the_corpus_cer():
    from ocrft.evaluation.metrics import score

    preds, labels = ["Hello  world", "ſchön", "abc", ""], ["Hello world", "schön", "abd", "x"]
    for unit in ("codepoint", "grapheme"):
        cfg = compose([f"eval.cer_unit={unit}"]).eval
        counts = calc.char_counts(preds, labels, cfg.normalization, unit)
        from ocrft.evaluation.metrics import MetricSettings

        expected = score(preds, labels, cfg.normalization, MetricSettings.from_eval(cfg))["cer"]
        assert sum(c[0] for c in counts) / sum(c[1] for c in counts) == pytest.approx(expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_sklearn_with_ties(seed):
    from sklearn.metrics import roc_auc_score

    rng = random.Random(seed)
    scores = [round(rng.uniform(-1, 0), 1) for _ in range(60)]  # one decimal: many ties
    labels = [rng.random() < 0.3 + 0.5 * (s + 1) for s in scores]
    assert calc.auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))


def test_auroc_hand_checked_and_degenerate():
    assert calc.auroc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75
    assert calc.auroc([0.5, 0.5], [True, False]) == 0.5
    assert calc.auroc([0.1, 0.2], [True, True]) is None


def test_costs():
    pricing = {"m": {"input": 1.0, "output": 4.0}}
    assert calc.sample_cost({"prompt_tokens": 1000, "completion_tokens": 500}, pricing, "m") == pytest.approx(0.003)
    assert calc.sample_cost({"prompt_tokens": None, "completion_tokens": 5}, pricing, "m") is None
    assert calc.sample_cost({"prompt_tokens": 1, "completion_tokens": 5}, pricing, "other") is None
    summary = calc.cost_summary([0.003, None, 0.001], num_samples=10)
    assert summary["cost_total"] == pytest.approx(0.004)
    assert summary["cost_per_1k_samples"] == pytest.approx(0.4)
    assert summary["cost_unpriced_samples"] == 1
    assert calc.cost_summary([None], 10) == {} and calc.cost_summary([], 10) == {}


def test_confidence_of_reads_generations_and_rows():
    g = Generation("ab", False, -0.25, -0.9, num_tokens=3)
    assert calc.confidence_of(g, "mean_logprob") == -0.25
    assert calc.confidence_of({"mean_logprob": -0.25, "min_logprob": -0.9}, "min_logprob") == -0.9


def test_local_family_from_card_or_config(tmp_path):
    from ocrft.evaluation.cascade_eval import local_family

    assert local_family(compose(["model=cascade", "model.path=asset:demo_base"])) == "qwen2_vl"
    assert local_family(compose(["model=cascade", "model.path=some/hub-id", "cascade.family=gemma3"])) == "gemma3"
    with pytest.raises(ConfigError, match="cascade.family"):
        local_family(compose(["model=cascade", "model.path=some/hub-id"]))
    with pytest.raises(ConfigError, match="cascade.family='nope'"):
        local_family(compose(["model=cascade", "model.path=asset:demo_base", "cascade.family=nope"]))


class FakeLocal:
    """Generation per image from a table: image name -> (text, mean_logprob)."""

    def __init__(self, table):
        self.table = table
        self.calls = []

    def read(self, images, prompts, max_new_tokens=None):
        self.calls.append(list(images))
        return [Generation(self.table[i][0], mean_logprob=self.table[i][1], min_logprob=self.table[i][1] - 1, num_tokens=2)
                for i in images]

    def count_tokens(self, text):
        return len(text)


class FakeClient:
    def __init__(self, fail=()):
        self.sent, self.fail, self.closed = [], set(fail), False

    def transcribe(self, image, prompt, system=None):
        self.sent.append((image, prompt, system))
        if image in self.fail:
            return Completion("", {"prompt_tokens": None, "completion_tokens": None}, 0.1, 3, error="gave up")
        return Completion(f"API:{image}", {"prompt_tokens": 10, "completion_tokens": 2}, 0.1, 0)

    def close(self):
        self.closed = True


def cascade(local, client, *overrides, tmp_path):
    from types import SimpleNamespace

    from ocrft.evaluation.endpoint_eval import EndpointPredictor

    cfg = compose(["task=serve", "model=cascade", "model.path=asset:demo_base", *overrides])
    fallback = EndpointPredictor(SimpleNamespace(provider="openai", remote_model="m"), prompt="p", system="sys",
                                 workers=2, checkpoint=tmp_path / "fb.jsonl", client=client)  # fmt: skip
    return CascadePredictor(cfg, task="serve", local=local, fallback=fallback)


def test_cascade_routes_low_confidence_rows_of_a_batch(tmp_path):
    local = FakeLocal({"a": ("la", -0.1), "b": ("lb", -2.0), "c": ("lc", -0.5), "d": ("ld", -3.0)})
    client = FakeClient(fail={"d"})
    gen = cascade(local, client, "cascade.threshold=-0.4", tmp_path=tmp_path)
    out = gen.read(["a", "b", "c", "d"], ["p"] * 4, 8)
    assert [o.meta["route"] for o in out] == ["local", "fallback", "fallback", "fallback"]
    assert [o.text for o in out] == ["la", "API:b", "API:c", "ld"]  # d's request failed: local text kept
    assert out[3].meta["fallback_error"] == "gave up" and out[1].meta["local_text"] == "lb"
    assert out[0].meta["fallback_text"] is None and out[3].error is None  # a served answer beats none
    assert sorted(s[0] for s in client.sent) == ["b", "c", "d"] and {s[2] for s in client.sent} == {"sys"}
    assert [o.text for o in gen.read(["a"], ["p"])] == ["la"] and len(client.sent) == 3  # confident: no request
    assert gen.count_tokens("abc") == 3
    min_gen = cascade(local, FakeClient(), "cascade.threshold=-1.2", "cascade.confidence=min_logprob", tmp_path=tmp_path)
    assert [o.meta["route"] for o in min_gen.read(["a", "c"], ["p", "p"])] == ["local", "fallback"]
    with pytest.raises(ConfigError, match="cascade.confidence"):
        cascade(local, client, "cascade.threshold=-1", "cascade.confidence=entropy", tmp_path=tmp_path)


def test_cascade_refuses_auto_outside_eval():
    cfg = compose(["task=serve", "model=cascade", "model.path=asset:demo_base"])
    with pytest.raises(ConfigError, match="cascade.threshold=auto"):
        CascadePredictor(cfg, task="serve")


def test_curve_files(tmp_path):
    from ocrft.evaluation.cascade_curve import write_curve

    curve = calc.cascade_curve([-0.1, -0.9], [(0, 4), (2, 4)], [(1, 4), (0, 4)], [None, None])
    for p in curve:
        p.update(meets_target=p["cer"] <= 0.1, chosen=p["routed_fraction"] == 0.5)
    paths = write_curve(curve, tmp_path, 0.1)
    lines = (tmp_path / "cascade_curve.csv").read_text().splitlines()
    assert lines[0] == "threshold,routed_fraction,cer,cost_total,meets_target,chosen"
    assert len(lines) == 4 and lines[2].endswith(",0.5,0.0,,True,True")
    assert json.loads((tmp_path / "cascade_curve.json").read_text())["points"][1]["chosen"] is True
    assert (tmp_path / "cascade_curve.png").read_bytes().startswith(b"\x89PNG")
    assert set(paths) == {"cascade_curve_csv", "cascade_curve", "cascade_curve_png"}
    assert math.isfinite(curve[-1]["threshold"])


def test_auto_threshold_names_a_calibration_split_it_cannot_load(tmp_path):
    cfg = compose(["task=eval", "model=cascade", "model.path=asset:demo_base", "data=tiny_ocr",
                   "cascade.calibration_split=nope"])  # fmt: skip
    predictor = CascadePredictor(cfg, task="eval", run_dir=tmp_path, local=FakeLocal({}), fallback=object())
    with pytest.raises(ConfigError, match="cascade.calibration_split='nope'"):
        predictor.resolve_threshold()  # fails before any model is needed
    cfg.cascade.threshold = -0.25
    assert predictor.resolve_threshold() == -0.25
