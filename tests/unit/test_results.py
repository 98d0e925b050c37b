"""Results files: building, scoring rows with failures, writing, loading and rejecting."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
import sacrebleu
from omegaconf import OmegaConf

from ocrft.config import EvalConfig, NormalizationConfig, ReportConfig
from ocrft.evaluation.metrics import MetricSettings
from ocrft.evaluation.results import build_results, load_results, rescore_results, score_samples, write_results

# The example from the Gemma-OCR seed's README ("Output Format"), verbatim.
SEED_RESULTS = {
    "overall_cer": 0.0234,
    "overall_f1": 0.9876,
    "total_samples": 100,
    "timestamp": "2025-12-16T10:30:00",
    "model_name": "mistralai3",
    "samples": [
        {
            "image_path": "path/to/image.png",
            "label": "ground truth text",
            "prediction": "predicted text",
            "cer_score": 0.0123,
            "f1_score": 0.9890,
        }
    ],
}


def rows():
    return [
        {"id": "a", "image_path": "a.png", "label": "abcd", "prediction": "abcc"},
        {"id": "b", "image_path": "b.png", "label": "Hello  World", "prediction": "hello world"},
        {"id": "c", "image_path": "c.png", "label": "xyz", "prediction": None, "error": "HTTP 500 after 5 retries"},
    ]


def test_score_samples_excludes_failed_rows_but_counts_them():
    metrics, scored = score_samples(rows(), {"lowercase": True})
    assert metrics["num_samples"] == 2 and metrics["num_errors"] == 1
    assert metrics["error_rate"] == pytest.approx(1 / 3)
    # Scored rows under lowercase + default collapse: "abcc" vs "abcd" 1 edit, the other exact.
    assert metrics["cer"] == pytest.approx(1 / (4 + 11))
    assert metrics["exact_match"] == pytest.approx(1 / 2)
    assert scored[0]["cer_score"] == pytest.approx(1 / 4) and scored[0]["f1_score"] == pytest.approx(0.75)
    assert scored[1]["cer_score"] == 0.0 and scored[1]["exact_match"] is True
    assert scored[2]["cer_score"] is None and scored[2]["error"] == "HTTP 500 after 5 retries"
    # Raw text is kept as given; the input rows are not modified.
    assert scored[1]["label"] == "Hello  World"
    assert "cer_score" not in rows()[0]


def test_score_samples_names_the_bad_row():
    bad = rows()
    bad[1]["prediction"] = 42
    with pytest.raises(TypeError, match=r"sample 1 \(id='b'\): prediction is int"):
        score_samples(bad, None)


def test_score_samples_when_every_row_failed():
    failed = [dict(r, error="timeout", prediction=None) for r in rows()]
    metrics, scored = score_samples(failed, None)
    assert metrics == {"num_samples": 0, "num_errors": 3, "error_rate": 1.0}
    assert all(r["cer_score"] is None for r in scored)


def test_json_rows_get_json_scores():
    ref = '{"a": "1", "b": "2"}'
    metrics, scored = score_samples([{"id": "x", "label": ref, "prediction": '{"a": "1"}'}], None)
    assert metrics["json_field_recall"] == pytest.approx(0.5)
    assert scored[0]["json_valid"] is True and scored[0]["json_field_f1"] == pytest.approx(2 / 3)


def test_build_results_has_the_seed_keys_and_ours():
    metrics, scored = score_samples(rows(), None)
    res = build_results(scored, "tiny", {"lowercase": True}, metrics, extra={"split": "test"})
    for key in ("overall_cer", "overall_f1", "total_samples", "timestamp", "model_name", "samples"):
        assert key in res
    assert res["overall_cer"] == metrics["cer"] and res["overall_f1"] == metrics["char_f1"]
    assert res["total_samples"] == 3 and res["model_name"] == "tiny" and res["split"] == "test"
    assert res["normalization"]["lowercase"] is True and res["normalization"]["nfc"] is True
    assert res["normalization"]["nfkc"] is False
    # How the scores were counted: the default settings, with sacrebleu's signatures.
    assert res["metric_settings"] == MetricSettings().as_dict() and res["metric_settings"]["cer_unit"] == "codepoint"
    assert res["signatures"] == MetricSettings().signatures()
    datetime.fromisoformat(res["timestamp"])
    with pytest.raises(ValueError, match="overwrite core"):
        build_results(scored, "tiny", None, metrics, extra={"samples": []})


def test_write_then_load_round_trips_and_writes_null_for_nan(tmp_path):
    metrics, scored = score_samples(rows(), None)
    metrics["weird"] = float("nan")
    res = build_results(scored, "tiny", None, metrics, extra=None)
    path = write_results(tmp_path / "out" / "results.json", res)
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temp file left behind
    loaded = load_results(path)
    assert loaded["metrics"]["weird"] is None  # NaN is not JSON
    assert loaded["samples"] == json.loads(json.dumps(scored))


def test_seed_results_file_loads_and_rescores(tmp_path):
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(SEED_RESULTS))
    loaded = load_results(path)
    assert loaded["overall_cer"] == 0.0234
    res = rescore_results(loaded, {"lowercase": True})
    # "ground truth text" -> "predicted text": scores recomputed from the raw text.
    assert res["samples"][0]["cer_score"] == pytest.approx(res["metrics"]["cer"])
    assert res["samples"][0]["prediction"] == "predicted text"
    assert res["model_name"] == "mistralai3"
    assert res["rescored_from"]["overall_cer"] == 0.0234 and res["rescored_from"]["normalization"] is None
    assert res["normalization"]["lowercase"] is True


def test_settings_are_recorded_and_rescoring_replaces_them(tmp_path):
    hist = [{"id": "1", "label": "Schu\u0364ler", "prediction": "Schuler"},
            {"id": "2", "label": "The Man.", "prediction": "the man"}]  # fmt: skip
    grapheme = MetricSettings(cer_unit="grapheme", ter_case_sensitive=True)
    metrics, scored = score_samples(hist, None, grapheme)
    res = build_results(scored, "tiny", None, metrics, extra=None, settings=grapheme)
    assert scored[0]["cer_score"] == pytest.approx(1 / 7)  # graphemes: "uͤ" is one character
    assert res["metric_settings"]["cer_unit"] == "grapheme" and res["metric_settings"]["ter_case_sensitive"] is True
    assert "case:mixed" in res["signatures"]["ter"]
    hyps, refs = [r["prediction"] for r in hist], [r["label"] for r in hist]
    assert metrics["ter"] == pytest.approx(sacrebleu.corpus_ter(hyps, [refs], case_sensitive=True).score)
    path = write_results(tmp_path / "r.json", res)

    again = rescore_results(load_results(path), None)  # defaults: code points, TER ignores case
    assert again["samples"][0]["cer_score"] == pytest.approx(1 / 8)
    assert again["metrics"]["ter"] == pytest.approx(sacrebleu.corpus_ter(hyps, [refs]).score)
    assert again["metric_settings"]["cer_unit"] == "codepoint" and "case:lc" in again["signatures"]["ter"]
    assert again["rescored_from"]["metric_settings"]["cer_unit"] == "grapheme"
    assert again["rescored_from"]["signatures"] == res["signatures"]


def test_file_from_before_nfc_loads_and_rescores_under_the_current_convention(tmp_path):
    # Written by ocrft when nfkc=true was the default: no nfc flag, no metric_settings.
    old = {**SEED_RESULTS, "metrics": {"cer": 0.0}, "overall_cer": 0.0,
           "normalization": {"nfkc": True, "collapse_whitespace": True, "lowercase": False,
                             "remove_punctuation": False, "fullwidth_to_halfwidth": False},
           "samples": [{"id": "a", "image_path": "a.png", "label": "Berlini\u017fche", "prediction": "Berlinische",
                        "cer_score": 0.0, "f1_score": 1.0}]}  # fmt: skip
    loaded = load_results(_write(tmp_path, json.dumps(old)))
    res = rescore_results(loaded, NormalizationConfig())
    assert res["overall_cer"] == pytest.approx(1 / 11)  # ſ/s is an error now
    assert res["rescored_from"]["normalization"] == old["normalization"]
    assert res["rescored_from"]["metric_settings"] is None and res["normalization"]["nfc"] is True


class _TagRecorder:
    """A tracker that keeps what it is given (the NullTracker's interface)."""

    def __init__(self):
        self.tags, self.metrics = {}, {}

    def set_tags(self, tags):
        self.tags.update(tags)

    def log_metrics(self, metrics, step=None):
        self.metrics.update(metrics)

    def log_artifact(self, path, artifact_path=None):
        pass


def test_eval_and_report_thread_the_settings_from_cfg_eval(tmp_path):
    from ocrft.data.record import Record
    from ocrft.evaluation.scoring import score_and_write
    from ocrft.tasks.report import run_report
    from ocrft.runner import RunContext

    eval_cfg = OmegaConf.structured(EvalConfig(cer_unit="grapheme", ter_no_punct=True))
    records = [Record(id="1", image="none.png", text="Schu\u0364ler."), Record(id="2", image="none.png", text="Band")]
    metrics, paths = score_and_write(records, ["Schuler", "Band"], eval_cfg, model_name="tiny", out_dir=tmp_path)
    written = load_results(paths["results"])
    assert metrics["cer"] == pytest.approx(2 / (8 + 4))  # graphemes: "uͤ" one character, "." dropped
    assert written["metric_settings"] == MetricSettings(cer_unit="grapheme", ter_no_punct=True).as_dict()
    assert "punct:no" in written["signatures"]["ter"] and written["metrics"]["ter"] == pytest.approx(
        sacrebleu.corpus_ter(["Schuler", "Band"], [["Schu\u0364ler.", "Band"]], no_punct=True).score)

    # task=report re-scores under the report run's eval settings and tags their signatures.
    cfg = OmegaConf.create({"report": OmegaConf.structured(ReportConfig(results=paths["results"])),
                            "eval": OmegaConf.structured(EvalConfig())})  # fmt: skip
    tracker = _TagRecorder()
    result = run_report(cfg, RunContext(run_dir=tmp_path / "report", tracker=tracker))
    rescored = load_results(result.paths["results"])
    assert rescored["metric_settings"]["cer_unit"] == "codepoint"
    assert rescored["overall_cer"] == pytest.approx(2 / (9 + 4))  # code points this time
    assert tracker.tags["report/cer_unit"] == "codepoint"
    assert tracker.tags["report/ter_signature"] == rescored["signatures"]["ter"]


def _write(tmp_path, text: str):
    path = tmp_path / "r.json"
    path.write_text(text)
    return path


def test_truncated_json_names_the_file(tmp_path):
    path = _write(tmp_path, json.dumps(SEED_RESULTS)[:-40])
    with pytest.raises(ValueError, match=r"r\.json: not valid JSON \(truncated"):
        load_results(path)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r.pop("samples"), "missing key 'samples'"),
        (lambda r: r.update(samples={"a": 1}), "missing key 'samples'"),
        (lambda r: r["samples"][1].pop("label"), r"samples\[1\] has no 'label' key"),
        (lambda r: r["samples"][1].pop("prediction"), r"samples\[1\] has no 'prediction' key"),
        (lambda r: r["samples"][1].update(prediction=["a"]), r"samples\[1\]\.prediction must be a string, got list"),
        (lambda r: r["samples"][1].update(prediction=None), r"samples\[1\]\.prediction must be a string"),
        (lambda r: r["samples"][1].update(label=7), r"samples\[1\]\.label must be a string, got int"),
        (lambda r: r["samples"][1].update(cer_score="low"), r"samples\[1\]\.cer_score must be a number"),
        (lambda r: r.update(overall_cer="0.1"), "'overall_cer' must be a number"),
        (lambda r: r["samples"].__setitem__(1, "x"), r"samples\[1\] must be an object"),
    ],
)
def test_wrong_schema_names_file_and_place(tmp_path, mutate, message):
    res = json.loads(json.dumps(SEED_RESULTS))
    res["samples"].append(dict(res["samples"][0]))  # a second, valid sample to break
    mutate(res)
    path = _write(tmp_path, json.dumps(res))
    with pytest.raises(ValueError, match=message) as err:
        load_results(path)
    assert str(path) in str(err.value)


def test_top_level_must_be_an_object(tmp_path):
    with pytest.raises(ValueError, match="expected a JSON object"):
        load_results(_write(tmp_path, "[]"))


def test_failed_sample_may_have_null_prediction(tmp_path):
    res = json.loads(json.dumps(SEED_RESULTS))
    res["samples"].append({"image_path": "x.png", "label": "x", "prediction": None, "error": "timeout"})
    assert load_results(_write(tmp_path, json.dumps(res)))["samples"][1]["error"] == "timeout"
