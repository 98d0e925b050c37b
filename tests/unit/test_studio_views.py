"""The studio's pure functions: the runs table and sweeps, paging, filters, the results page
and the comparison (ocrft.studio.runs, results_view, compare_view; no browser, no server)."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from ocrft.studio import compare_view, results_view, runs
from ocrft.studio.app import parse_auth, studio_css


def write_run(folder: Path, task: str = "train", status: str = "finished", start: str = "2024-01-01T00:00:00",
              metrics: dict | None = None, paths: dict | None = None, **extra) -> Path:  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    record = {"task": task, "status": status, "start_time": start, "duration_s": 1.5, "metrics": metrics or {},
              "paths": {"run_dir": str(folder), **(paths or {})}, "mlflow_run_id": "abcdef0123456789", **extra}  # fmt: skip
    (folder / "run.json").write_text(json.dumps(record))
    (folder / "config.yaml").write_text("model:\n  path: tiny:qwen2_vl\ndata:\n  format: synthetic\n  path: null\n")
    return folder


def results_dict(n: int, seed: int = 0, wrong_every: int = 3) -> dict:
    rng = random.Random(seed)
    samples = []
    for i in range(n):
        label = "".join(rng.choice("abcdefgh ") for _ in range(20))
        pred = label if i % wrong_every else label[:-3] + "xyz"
        cer = 0.0 if pred == label else 3 / 20
        samples.append({"id": f"s{i}", "image_path": None, "label": label, "prediction": pred, "cer_score": cer, "f1_score": 1 - cer})
    cer = sum(s["cer_score"] for s in samples) / max(1, n)
    return {"overall_cer": cer, "overall_f1": 1 - cer, "total_samples": n, "model_name": f"m{seed}",
            "metrics": {"cer": cer, "char_f1": 1 - cer}, "normalization": {}, "samples": samples}  # fmt: skip


def test_runs_table_filters_sorts_and_links(tmp_path):
    report = tmp_path / "outputs" / "b" / "report.html"
    write_run(tmp_path / "outputs" / "a", metrics={"eval/cer": 0.5}, start="2024-01-01T00:00:00")
    write_run(tmp_path / "outputs" / "b", task="eval", status="failed", metrics={"eval/cer": 0.1},
              start="2024-02-01T00:00:00", paths={"results": str(tmp_path / "r.json"), "report": str(report)})  # fmt: skip
    (tmp_path / "outputs" / "a" / "checkpoints").mkdir()
    write_run(tmp_path / "outputs" / "a" / "checkpoints" / "x")  # inside a run's checkpoints: not a run
    found = runs.scan([tmp_path / "outputs", tmp_path / "missing"])
    assert [Path(r["run_dir"]).name for r in found] == ["a", "b"]
    frame = runs.runs_frame(found, mlflow_url="http://mlflow:5000")
    assert list(frame["run"].map(lambda p: Path(p).name)) == ["b", "a"]  # newest first
    assert frame.loc[0, "model"] == "tiny:qwen2_vl" and frame.loc[0, "data"] == "synthetic"
    assert frame.loc[0, "mlflow"] == "[abcdef01](http://mlflow:5000/#/runs/abcdef0123456789)"
    assert frame.loc[0, "report"].startswith("[report](/files/") and frame.loc[0, "report"].endswith("report.html)")
    assert "eval_before/cer" not in frame.columns  # no run has it
    by_cer = runs.runs_frame(found, sort_by="eval/cer", descending=False)
    assert list(by_cer["eval/cer"]) == [0.1, 0.5]
    assert list(runs.runs_frame(found, query="FAILED")["status"]) == ["failed"]
    assert runs.runs_frame(found, query="nothing like this").empty
    assert runs.runs_frame([]).empty


def test_sweep_shows_its_study_and_trials(tmp_path):
    sweep = write_run(tmp_path / "multirun" / "s", task="sweep",
                      study={"name": "demo", "metric": "val/cer", "direction": "minimize", "trials": {"complete": 2, "pruned": 1}})  # fmt: skip
    for n, status, value in ((10, "finished", 0.2), (2, "pruned", 0.9), (0, "finished", 0.4)):
        write_run(sweep / str(n), status=status, metrics={"val/cer": value})
    found = runs.scan([tmp_path / "multirun"])
    (study,) = [r for r in found if r["task"] == "sweep"]
    trials = runs.trials_frame(study, found)
    assert list(trials["trial"]) == ["0", "2", "10"] and list(trials["state"]) == ["finished", "pruned", "finished"]
    assert list(trials["value"]) == [0.4, 0.9, 0.2]
    text = runs.sweeps_markdown(found, dashboard_url="http://127.0.0.1:8080")
    assert "**demo**" in text and "complete 2, pruned 1" in text and "(http://127.0.0.1:8080)" in text


def test_results_choices_lists_existing_results_files(tmp_path):
    (tmp_path / "r.json").write_text("{}")
    write_run(tmp_path / "a", paths={"results": str(tmp_path / "r.json"), "results_before": str(tmp_path / "gone.json"),
                                     "results_report": str(tmp_path / "r.html")})  # fmt: skip
    assert runs.results_choices(runs.scan([tmp_path])) == [("a · results", str(tmp_path / "r.json"))]


def test_select_filters_and_sorts():
    samples = results_dict(9)["samples"]
    samples[4]["error"], samples[4]["cer_score"] = "timeout", None
    worst = results_view.select(samples, sort="CER, worst first")
    assert worst[0] == 4 and {samples[i]["cer_score"] for i in worst[1:4]} == {0.15}
    assert results_view.select(samples, errors_only=True, sort="file order") == [0, 3, 4, 6]
    assert results_view.select(samples, query="S7", sort="file order") == [7]
    assert results_view.select(samples, sort="CER, best first")[-1] == 4


def test_paging_clamps():
    assert results_view.page_of(range(10), 2, 4) == ([4, 5, 6, 7], 2, 3)
    assert results_view.page_of(range(10), 99, 4) == ([8, 9], 3, 3)
    assert results_view.page_of([], 0, 4) == ([], 1, 1)


def test_histogram_bins():
    bins = results_view.histogram([0.0, 0.05, 0.95, 1.0, None, 2.0], bins=4)
    assert [n for _, _, n in bins] == [2, 1, 1, 1] and bins[-1][1] == 2.0


def test_under_roots_refuses_traversal(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "secret.txt").write_text("x")
    (tmp_path / "root" / "link").symlink_to(tmp_path / "secret.txt")
    assert results_view.under_roots(tmp_path / "root" / "a.json", [tmp_path / "root"]) is not None
    assert results_view.under_roots(tmp_path / "root" / ".." / "secret.txt", [tmp_path / "root"]) is None
    assert results_view.under_roots(tmp_path / "root" / "link", [tmp_path / "root"]) is None


def test_ten_thousand_samples_page_fast(tmp_path):
    path = tmp_path / "big.json"
    path.write_text(json.dumps(results_dict(10_000)))
    results_view.load(path)  # aligned once when opened
    t0 = time.perf_counter()
    header, confusions, hist, table, page, status = results_view.render(str(path), "", True, "CER, worst first", page=3, page_size=50)
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.5, elapsed
    assert status == "3334 of 10000 samples · page 3 of 67" and page == 3
    assert table.count("<tr data-index=") == 50 and "xyz" in table
    assert "substitute" in confusions and "cer" in header


def test_page_escapes_text(tmp_path):
    results = results_dict(2)
    results["samples"][0]["label"] = "<script>alert(1)</script>"
    path = tmp_path / "r.json"
    path.write_text(json.dumps(results))
    table = results_view.render(str(path), "", False, "file order", page=1, page_size=50)[3]
    assert "<script>" not in table and "&lt;script&gt;" in table


def test_page_shows_tables_by_cell_and_checks(tmp_path):
    results = results_dict(2)
    results["samples"][0].update(label="| A |\n|---|\n| <b>1</b> |", prediction="| A |\n|---|\n| 2 |", teds=0.5)
    results["samples"][1]["checks"] = [{"id": "t1", "type": "present", "passed": False, "explanation": "not <found>"}]
    path = tmp_path / "r.json"
    path.write_text(json.dumps(results))
    table = results_view.render(str(path), "", False, "file order", page=1, page_size=50)[3]
    assert '<td class="changed">&lt;b&gt;1&lt;/b&gt; → 2</td>' in table
    assert '<li class="fail">✗ present t1: not &lt;found&gt;</li>' in table


def test_compare_deltas_counts_and_worse_first(tmp_path):
    a, b = results_dict(6, wrong_every=2), results_dict(6, wrong_every=3)  # same labels: seed 0
    deltas = {k: d for k, _, _, d in compare_view.metric_deltas(a, b)}
    assert deltas["cer"] == pytest.approx(b["metrics"]["cer"] - a["metrics"]["cer"])
    order = compare_view.worse_first(a, b)
    assert [d for _, _, d in order][:1] == [0.15]  # s3 got worse first
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    summary, table, page, status = compare_view.render(str(tmp_path / "a.json"), str(tmp_path / "b.json"), False, 1, page_size=50)
    assert "1 worse" in summary and "2 better" in summary and "3 the same" in summary
    assert status.startswith("6 pairs") and table.index("s3") < table.index("s0")
    changed = compare_view.render(str(tmp_path / "a.json"), str(tmp_path / "b.json"), True, 1, page_size=50)[3]
    assert changed.startswith("3 pairs")


def test_auth_parsing_and_css():
    assert parse_auth(None) is None and parse_auth("u:p:q") == ("u", "p:q")
    with pytest.raises(ValueError) as err:
        parse_auth("nocolon-secret")
    assert "secret" not in str(err.value)
    assert "ins{" in studio_css() and "body{" not in studio_css()
