"""predict.rank's ordering and files (ocrft.evaluation.ranking): least certain first, pages by
the mean of their lines, disagreement between sampled readings lowering certainty."""

from __future__ import annotations

import csv
import json
import math

import pytest

from ocrft.evaluation.generation import Generation
from ocrft.evaluation.ranking import RankedLine, confidence, disagreement, rank, rank_line, write_ranking


def _line(page: str, line: str, mean: float, *, low: float = -1.0, spread: float | None = None) -> RankedLine:
    return rank_line(RankedLine(page=page, line=line, region="r", text=line, image=f"{line}.png",
                                confidence=math.exp(mean), mean_logprob=mean, min_logprob=low, disagreement=spread,
                                num_tokens=3, looped=False))  # fmt: skip


def test_confidence_is_exp_mean_logprob_and_zero_without_a_reading():
    assert confidence(Generation("abc", mean_logprob=-0.5, num_tokens=4)) == pytest.approx(math.exp(-0.5))
    assert confidence(Generation("", mean_logprob=-0.1, num_tokens=1)) == 0.0
    assert confidence(Generation("abc", mean_logprob=-0.1, num_tokens=2, error="timeout")) == 0.0


def test_disagreement_is_the_mean_pairwise_normalized_edit_distance():
    assert disagreement(["abcd", "abcd", "abcd"]) == 0.0
    # pairs: (abcd, abcx) 1/4, (abcd, wxyz) 4/4, (abcx, wxyz) 4/4
    assert disagreement(["abcd", "abcx", "wxyz"]) == pytest.approx((0.25 + 1 + 1) / 3)
    assert disagreement(["only one"]) == 0.0


def test_lines_and_pages_least_certain_first(tmp_path):
    lines = [_line("p1.xml", "a", -0.1), _line("p1.xml", "b", -2.0), _line("p2.xml", "c", -1.0),
             _line("p2.xml", "d", -1.2), _line("p3.xml", "e", -0.05)]  # fmt: skip
    pages = rank(lines)
    # page means: p1 (e^-0.1 + e^-2) / 2 = 0.52, p2 0.33, p3 0.95
    assert [p["page"] for p in pages] == ["p2.xml", "p1.xml", "p3.xml"]
    assert [p["page_rank"] for p in pages] == [1, 2, 3]
    assert pages[1]["certainty"] == pytest.approx((math.exp(-0.1) + math.exp(-2.0)) / 2, abs=1e-6)
    assert [ln["line"] for ln in pages[1]["lines"]] == ["b", "a"]
    assert {ln["line"]: ln["line_rank"] for p in pages for ln in p["lines"]} == {"b": 1, "d": 2, "c": 3, "a": 4, "e": 5}
    csv_path, jsonl_path = write_ranking(pages, tmp_path)
    rows = list(csv.DictReader(csv_path.open()))
    assert [(r["page_rank"], r["page"], r["line"]) for r in rows] == [
        ("1", "p2.xml", "d"), ("1", "p2.xml", "c"), ("2", "p1.xml", "b"), ("2", "p1.xml", "a"), ("3", "p3.xml", "e")]
    assert rows[0]["image"] == "d.png" and float(rows[0]["confidence"]) == pytest.approx(math.exp(-1.2), abs=1e-6)
    assert [json.loads(line)["page"] for line in jsonl_path.open()] == ["p2.xml", "p1.xml", "p3.xml"]


def test_disagreement_lowers_certainty_and_ties_go_to_the_worst_token():
    sure_but_unstable = _line("p.xml", "a", -0.1, spread=0.5)
    steady = _line("p.xml", "b", -0.3, spread=0.0)
    assert sure_but_unstable.certainty == pytest.approx(math.exp(-0.1) * 0.5)
    assert [ln["line"] for ln in rank([steady, sure_but_unstable])[0]["lines"]] == ["a", "b"]
    worse_token = _line("p.xml", "c", -0.3, low=-5.0)
    assert [ln["line"] for ln in rank([steady, worse_token])[0]["lines"]] == ["c", "b"]


@pytest.mark.parametrize("overrides, key", [
    (["model=cascade", "model.path=asset:demo_base", "cascade.threshold=-0.5", "predict.rank=true"], "predict.rank"),
    (["model=tiny_qwen2_vl", "predict.rank=true", "predict.samples=-1"], "predict.samples"),
    (["model=tiny_qwen2_vl", "predict.rank=true", "predict.temperature=0"], "predict.temperature"),
])  # fmt: skip
def test_predict_rank_settings_are_checked_before_any_model_loads(overrides, key):
    from ocrft.config import ConfigError
    from ocrft.validate import validate_config
    from tests.helpers import compose

    with pytest.raises(ConfigError, match=f"^{key}="):
        validate_config(compose(["task=predict", "tracking=none", "run_dir=unused", *overrides]))
