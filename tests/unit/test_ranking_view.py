"""The studio's Ranking tab (ocrft.studio.ranking_view): the rankings runs wrote are listed,
and a ranking.jsonl renders pages and lines in its order with their crops and signals."""

from __future__ import annotations

import math

from ocrft.evaluation.ranking import RankedLine, rank, rank_line, write_ranking
from ocrft.studio import runs
from ocrft.studio.ranking_view import load_ranking, ranking_choices, ranking_html
from tests.unit.test_studio_views import write_run


def _ranking(folder):
    lines = [rank_line(RankedLine(page=page, line=line, region="r", text=text, image=str(folder / f"{line}.png"),
                                  confidence=math.exp(mean), mean_logprob=mean, min_logprob=mean - 1,
                                  disagreement=None, num_tokens=3, looped=False))
             for page, line, text, mean in (("a.xml", "l1", "sure", -0.05), ("b.xml", "l2", "<b>unsure</b>", -2.0),
                                            ("a.xml", "l3", "so-so", -0.7))]  # fmt: skip
    return write_ranking(rank(lines), folder)[1]


def test_runs_with_a_ranking_are_listed_and_rendered_least_certain_first(tmp_path):
    ranked = _ranking(tmp_path / "pred")
    write_run(tmp_path / "pred", task="predict", paths={"ranking_jsonl": str(ranked)})
    write_run(tmp_path / "other", task="eval", start="2025-01-01T00:00:00")
    assert ranking_choices(runs.scan([tmp_path])) == [("pred · ranking.jsonl", str(ranked))]
    page = ranking_html(load_ranking(ranked), max_pages=10)
    # b.xml (one unsure line) before a.xml; within a.xml the so-so line before the sure one
    assert page.index("b.xml") < page.index("a.xml") and page.index("so-so") < page.index(">sure<")
    assert "&lt;b&gt;unsure&lt;/b&gt;" in page and "<b>unsure" not in page  # the model's text is escaped
    assert f'src="/files/{str((tmp_path / "pred" / "l2.png").resolve()).lstrip("/")}"' in page
    assert "1 more pages" in ranking_html(load_ranking(ranked), max_pages=1)
