"""model=cascade end to end: the shipped demo base reads every line, a demo-adapted run served
by `task=serve` (a real subprocess on 127.0.0.1) reads the ones the base is unsure of.

The adaptation (100 steps on 400 lines, ~25 s on one idle CPU core) takes the demo's test CER
from 0.50 (base) to 0.20 (150 steps on 600 lines: 0.17); a cascade routing some lines must
land strictly between the two, and its calibration curve must run from the base-only CER to
the server-only CER.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import REPO, run

pytestmark = [pytest.mark.slow, pytest.mark.integration]

DEMO = ["+experiment=demo", "eval.max_new_tokens=16", "eval.batch_size=32"]
ADAPT = ["train.max_steps=100", "data.num_train=400", "eval.before_after=false", "eval.every_n_steps=0"]


@pytest.fixture(scope="module")
def train_overrides() -> list[str]:
    """The demo base adapted to the demo's lines: the run `served` (tests/fixtures/runs.py) serves."""
    return [*DEMO, *ADAPT]


def test_cascade_lies_between_its_two_models(served, tmp_path):
    base = run(["task=eval", *DEMO], tmp_path / "base")["metrics"]
    remote = run(["task=eval", *DEMO, "model=endpoint", f"model.base_url={served}"], tmp_path / "remote")["metrics"]
    assert remote["eval/cer"] < base["eval/cer"] - 0.1, (base, remote)  # the adaptation clearly helps

    cascade = ["task=eval", *DEMO, "model=cascade", "model.path=asset:demo_base", f"cascade.fallback.base_url={served}"]
    out = tmp_path / "cascade"
    auto = run([*cascade, "cascade.threshold=auto"], out)["metrics"]
    assert remote["eval/cer"] < auto["eval/cer"] < base["eval/cer"], (base, auto, remote)
    assert 0 < auto["eval/routed_fraction"] < 1
    assert auto["eval/threshold"] <= 0 and "eval/cost_total" not in auto  # task=serve has no price

    results = json.loads((out / "results.json").read_text())
    samples = results["samples"]
    local_rows = {json.loads(line)["id"]: json.loads(line) for line in (out / "cascade_local_test.jsonl").open()}
    assert len(local_rows) == len(samples) == 64 and results["cascade"]["confidence"] == "mean_logprob"
    for s in samples:
        assert s["confidence"] == pytest.approx(local_rows[s["id"]]["mean_logprob"])
        assert s["route"] == ("fallback" if s["confidence"] < auto["eval/threshold"] else "local")
        assert s["local_text"] == local_rows[s["id"]]["prediction"] and s["cost"] is None
        assert s["prediction"] == (s["fallback_text"] if s["route"] == "fallback" else s["local_text"])
        assert (s["fallback_text"] is None) == (s["route"] == "local")
    assert sum(s["route"] == "fallback" for s in samples) / 64 == auto["eval/routed_fraction"]
    # auto: at most max_fallback_fraction (0.3) of the val split falls back
    val = [json.loads(line) for line in (out / "cascade_local_val.jsonl").open()]
    assert sum(r["mean_logprob"] < auto["eval/threshold"] for r in val) <= 0.3 * len(val)

    # calibrate in the same folder: the local pass resumes, the fallback reads the rest; the
    # curve runs from the base alone to the server alone through the auto threshold's CER
    calibrated = run([*cascade, "cascade.calibrate=true", "cascade.target_cer=0.3"], out)["metrics"]
    curve = json.loads((out / "cascade_curve.json").read_text())["points"]
    assert curve[0]["routed_fraction"] == 0 and curve[0]["cer"] == pytest.approx(base["eval/cer"])
    assert curve[-1]["routed_fraction"] == 1 and curve[-1]["cer"] == pytest.approx(remote["eval/cer"])
    at_auto = next(p for p in curve if p["threshold"] >= auto["eval/threshold"])
    assert at_auto["cer"] == pytest.approx(auto["eval/cer"])
    chosen = [p for p in curve if p["chosen"]]
    assert len(chosen) == 1 and chosen[0]["cer"] <= 0.3
    assert all(p["routed_fraction"] >= chosen[0]["routed_fraction"] for p in curve if p["meets_target"])
    assert calibrated["eval/calibrated_cer"] == pytest.approx(calibrated["eval/cer"]) == pytest.approx(chosen[0]["cer"])
    assert (out / "cascade_curve.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "cascade_curve.csv").read_text().count("\n") == len(curve) + 1


def test_predict_records_route_and_confidence(served, tmp_path):
    import shutil

    from tests.helpers import compose

    from ocrft.data.loading import load_data

    images = tmp_path / "images"
    images.mkdir()
    records = load_data(compose(DEMO).data, tmp_path, splits=("test",)).splits["test"][:6]
    for i, r in enumerate(records):
        shutil.copy(r.image, images / f"{i}.png")
    # a threshold above any log-probability sends every line: each text is the server's
    everything = run(["task=predict", *DEMO, "model=cascade", "model.path=asset:demo_base",
                      f"cascade.fallback.base_url={served}", "cascade.threshold=0.5", f"predict.input={images}"],
                     tmp_path / "all")  # fmt: skip
    rows = [json.loads(line) for line in (tmp_path / "all" / "predictions.jsonl").open()]
    assert everything["metrics"]["predict/routed_fraction"] == 1
    assert all(r["route"] == "fallback" and r["prediction"] == r["fallback_text"] and r["confidence"] <= 0 for r in rows)
    assert sum(r["prediction"] != r["local_text"] for r in rows) >= 1  # the two models read differently


@pytest.mark.parametrize(
    "args, names",
    [
        (["task=eval", "data=tiny_ocr", "model.path=some-org/some-vlm"], "cascade.family"),  # family unknowable
        (["task=predict", "model.path=asset:demo_base", "predict.input=."], "cascade.threshold=auto"),
        (["task=eval", "model.path=asset:demo_base", "cascade.confidence=entropy"], "cascade.confidence"),
    ],
)
def test_bad_cascade_config_is_one_line_exit_2(tmp_path, args, names):
    proc = subprocess.run([sys.executable, "-m", "ocrft", "tracking=none", "model=cascade", f"run_dir={tmp_path}", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ocrft: error:")]
    assert proc.returncode == 2 and len(errors) == 1 and names in errors[0], proc.stderr[-2000:]
