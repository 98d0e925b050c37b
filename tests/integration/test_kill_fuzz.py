"""Kill fuzzing: train (SFT and GRPO), eval, prepare, endpoint eval and a sweep, SIGKILLed at seeded random points.

Each test hands one ``python -m ocrft`` command to tests/killfuzz.py's :func:`fuzz`: an
unkilled reference run, then kills a random delay after the run's first progress signal,
each followed by the same command again (which resumes, and may be killed in turn), until
``OCRFT_KILL_POINTS`` kills (default 2; ``make fuzz`` runs 10) have landed. After every kill
every file must parse and no id may be there twice; at the end of every chain of kills the
outputs must equal the unkilled run's: the same predictions per id, the same prepared lines
and images, the same number of counted trials, the same adapter weights.

The kills and where they landed are logged, and appended to ``OCRFT_KILL_REPORT`` when set
(experiments/kill_fuzz has the recorded 10-kill run). The deterministic kill tests with
their own fault injection (a torn Trainer checkpoint, a cut checkpoint line) are in
tests/integration/test_kill_resume.py, whose helpers these reuse.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from tests.fake_openai import FakeOpenAI, sha256
from tests.killfuzz import (
    FuzzTask,
    append_report,
    assert_every_file_parses,
    checkpoint_rows,
    complete_checkpoints,
    fuzz,
    kill_points,
)

log = logging.getLogger(__name__)
pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "sk-fuzz-0123456789abcdefghijklmnop"
STEPS, SAVE_STEPS = 8, 2
N_LINES = 24  # line images: eval reads them all, train trains on them
# The resumed adapter equals the unkilled one exactly: the Trainer's checkpoint holds the
# optimizer, scheduler, RNG states (rng_state.pth) and step, and the batch order is seeded.
ADAPTER_TOLERANCE = 0.0


def ocrft(run_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "ocrft", "tracking=none", f"run_dir={run_dir}", *overrides]


WORDS = ["ember", "quill", "vortex", "lumen", "gable", "sable", "cinder", "marsh"]
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf")


def write_lines(folder: Path, n: int) -> Path:
    """``n`` distinct line images in the demo base's face and length (DejaVu Serif, up to 8
    characters) and a Gemma-OCR JSON file of their labels; returns the file."""
    from PIL import ImageFont

    font = ImageFont.truetype(str(FONT), 22) if FONT.is_file() else ImageFont.load_default()
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        label = f"{WORDS[i % len(WORDS)][: 6]}{i}"
        image = Image.new("L", (150, 36), 255)
        ImageDraw.Draw(image).text((6, 4), label, fill=i % 40, font=font)
        image.save(folder / f"l{i:02d}.png")
        rows.append({"img_path": str(folder / f"l{i:02d}.png"), "ocr_results": label})
    path = folder / "labels.json"
    path.write_text(json.dumps(rows))
    return path


def report(result, **extra) -> None:
    for k in result.kills:
        log.info("%s seed %d chain %d: killed %.2f s after the signal: %s", k.task, k.seed, k.chain, k.delay_s, k.point)
    append_report(result, extra)
    assert len(result.kills) == kill_points()
    assert result.chains >= 1


def clear(*paths: Path) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def status(run_dir: Path) -> str:
    try:
        return json.loads((run_dir / "run.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        return "no run.json"


def predictions(run_dir: Path) -> dict[str, str] | None:
    """results.json's prediction per id; fails on a duplicate id."""
    path = run_dir / "results.json"
    if not path.is_file():
        return None
    samples = json.loads(path.read_text())["samples"]
    ids = [s["id"] for s in samples]
    assert len(ids) == len(set(ids)), f"duplicate ids in {path}"
    return {s["id"]: s["prediction"] for s in samples}


def rows_check(ckpt: Path) -> tuple[int, int]:
    """An append-only checkpoint after a kill: whole lines with unique ids, at most the last cut."""
    rows, cut = checkpoint_rows(ckpt)
    assert cut <= 1, f"{ckpt}: {cut} cut lines"  # a kill mid-append cuts the last one (dropped on load)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), f"{ckpt}: an id twice"
    return len(rows), cut


# --- train -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lines(tmp_path_factory) -> Path:
    return write_lines(tmp_path_factory.mktemp("lines"), N_LINES)


# train=grpo: each step reads 1 line twice by sampling; the resumed run must sample the same reads
METHODS = {"sft": (), "grpo": ("train=grpo", "train.num_generations=2")}


@pytest.mark.parametrize("method", METHODS)
def test_train_killed_at_random_points_ends_with_the_unkilled_adapter(tmp_path, lines, method):
    run_dir = tmp_path / "run"
    ckpts = run_dir / "checkpoints"
    cmd = ocrft(run_dir, "model=demo_base", "prompt=ocr_line", "data=json_ocr", f"data.train_file={lines}", f"data.val_file={lines}",
                f"data.test_file={lines}", "eval.limit=4", *METHODS[method], f"train.max_steps={STEPS}",
                f"train.save_steps={SAVE_STEPS}", "train.per_device_train_batch_size=2", "train.logging_steps=1",
                "eval.before_after=false", "eval.max_new_tokens=8", "eval.batch_size=4")  # fmt: skip

    def point() -> str:
        done = complete_checkpoints(ckpts)
        parts = [f"checkpoint-{done[-1]} complete" if done else "no checkpoint yet"]
        parts += [f"{p.name} mid-save ({len(list(p.iterdir()))} files)" for p in sorted(ckpts.glob("checkpoint-*"))
                  if int(p.name.split("-")[1]) not in done]  # fmt: skip
        parts += [f"{p.name} mid-swap" for p in sorted(run_dir.glob(".adapter.*"))]
        parts += [name for name in ("adapter", "results.json") if (run_dir / name).exists()]
        return ", ".join(parts) + f"; run.json {status(run_dir)}"

    def check() -> None:
        assert_every_file_parses(run_dir)
        for step in complete_checkpoints(ckpts):
            state = json.loads((ckpts / f"checkpoint-{step}" / "trainer_state.json").read_text())
            logged = [h["step"] for h in state["log_history"] if "loss" in h]
            assert logged == list(range(1, step + 1)), f"checkpoint-{step} logged steps {logged}"

    def outcome() -> dict:
        from safetensors.torch import load_file

        state = json.loads((ckpts / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
        return {
            "status": status(run_dir),
            "losses": [(h["step"], h["loss"]) for h in state["log_history"] if "loss" in h],
            "adapter": load_file(run_dir / "adapter" / "adapter_model.safetensors"),
            "predictions": predictions(run_dir),
        }

    diffs: list[float] = []

    def compare(ref: dict, got: dict) -> None:
        assert got["status"] == ref["status"] == "finished"
        assert got["adapter"].keys() == ref["adapter"].keys()
        diff = max(float((got["adapter"][k] - ref["adapter"][k]).abs().max()) for k in ref["adapter"])
        diffs.append(diff)
        assert diff <= ADAPTER_TOLERANCE, f"resumed adapter differs from the unkilled one by {diff}"
        assert got["losses"] == ref["losses"]  # every step once, with the same loss
        assert got["predictions"] == ref["predictions"] and len(ref["predictions"]) == 4

    name = "train" if method == "sft" else f"train_{method}"
    task = FuzzTask(name, cmd, r"trainable parameters", point, check, outcome, lambda: clear(run_dir), compare)
    result = fuzz(task, kill_points(), seed=18, logs=tmp_path / "logs")
    report(result, adapter_max_abs_diff=max(diffs))


# --- eval with a local model ------------------------------------------------------------------


def test_local_eval_killed_at_random_points_ends_with_the_unkilled_predictions(tmp_path, lines):
    run_dir = tmp_path / "run"
    ckpt = run_dir / "eval_checkpoint.jsonl"
    cmd = ocrft(run_dir, "task=eval", "model=demo_base", "prompt=ocr_line", "data=json_ocr", f"data.test_file={lines}",
                "eval.batch_size=2", "eval.max_new_tokens=12")  # fmt: skip

    def point() -> str:
        rows, cut = checkpoint_rows(ckpt)
        where = f"after {len(rows)} of {N_LINES} samples ({len(rows) // 2} batches)" + (", a line cut" if cut else "")
        return where + (", results.json written" if (run_dir / "results.json").exists() else "") + f"; run.json {status(run_dir)}"

    def check() -> None:
        assert_every_file_parses(run_dir)
        rows_check(ckpt)

    def outcome() -> dict:
        rows, cut = checkpoint_rows(ckpt)
        return {"status": status(run_dir), "predictions": predictions(run_dir), "checkpoint_rows": len(rows), "cut": cut}

    task = FuzzTask("eval", cmd, r"loading \w+ from", point, check, outcome, lambda: clear(run_dir))
    report(fuzz(task, kill_points(), seed=19, logs=tmp_path / "logs"))


# --- prepare: a PAGE-XML export -----------------------------------------------------------------

NS2019 = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"


def make_export(root: Path, pages: int) -> int:
    """A Transkribus-style export: ``pages`` 300x160 scans, page k with k % 5 + 2 lines. Returns the lines."""
    total = 0
    for k in range(pages):
        doc = root / f"Doc_{k % 3}"
        (doc / "page").mkdir(parents=True, exist_ok=True)
        image = Image.new("L", (300, 160), 255 - 3 * k)  # distinct: identical scans are deduplicated
        draw = ImageDraw.Draw(image)
        n = k % 5 + 2
        body = ""
        for i in range(n):
            y = 4 + 22 * i
            draw.text((6, y + 4), f"page {k} line {i}", fill=0)
            body += (f'<TextLine id="l{i}"><Coords points="2,{y} 298,{y} 298,{y + 20} 2,{y + 20}"/>'
                     f"<TextEquiv><Unicode>page {k} line {i}</Unicode></TextEquiv></TextLine>")  # fmt: skip
        image.save(doc / f"{k:04d}.png")
        (doc / "page" / f"{k:04d}.xml").write_text(
            f'<?xml version="1.0" encoding="UTF-8"?><PcGts xmlns="{NS2019}"><Page imageFilename="{k:04d}.png" '
            f'imageWidth="300" imageHeight="160"><TextRegion id="r1">{body}</TextRegion></Page></PcGts>'
        )
        total += n
    return total


def test_prepare_killed_at_random_points_ends_with_the_unkilled_lines(tmp_path):
    export, work = tmp_path / "export", tmp_path / "work"
    total = make_export(export, pages=40)
    work.mkdir()
    out, run_dir = work / "prepared", tmp_path / "run"
    cmd = ocrft(run_dir, "task=prepare", "data=page_xml", f"data.input_dir={export}", f"data.output_dir={out}",
                "data.target_height=24")  # fmt: skip

    def point() -> str:
        builds = sorted(work.glob(".prepared.tmp-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
        parts = ["output in place" if out.is_dir() else "no output"]
        if builds:  # the killed run's is the newest
            splits = sorted(p.name for p in builds[-1].glob("*.jsonl"))
            parts.append(f"building: {len(list(builds[-1].glob('lines/**/*.png')))} of {total} line images"
                         + (f", {splits} written" if splits else ""))  # fmt: skip
        if len(builds) > 1:
            parts.append(f"{len(builds) - 1} builds of earlier killed runs beside it")
        parts += [f"{p.name} (the previous output, mid-swap)" for p in sorted(work.glob("prepared.old-*"))]
        return "; ".join(parts)

    def check() -> None:  # the output is whole or absent, whatever else is beside it
        if not out.exists():
            return
        report = json.loads((out / "prepare_report.json").read_text())
        rows = [json.loads(line) for split in ("train", "val", "test") for line in (out / f"{split}.jsonl").read_text().splitlines()]
        assert len(rows) == report["lines_written"]["total"] == total
        assert len({r["id"] for r in rows}) == len(rows)
        assert all((out / r["image"]).is_file() for r in rows)

    def outcome() -> dict:
        images = {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*.png")}
        report = json.loads((out / "prepare_report.json").read_text())
        del report["created"]
        return {
            "splits": {s: (out / f"{s}.jsonl").read_text() for s in ("train", "val", "test")},
            "images": images,
            "report": report,
            "beside the output": sorted(p.name for p in work.iterdir() if p != out),  # leftovers of killed runs
        }

    # A chain after the first starts with the previous chain's output in place, as a re-run
    # over an earlier prepare does: a kill must then leave that output whole.
    reset = lambda: clear(run_dir, *(p for p in work.iterdir() if p != out))  # noqa: E731
    task = FuzzTask("prepare", cmd, r"importing \d+ page files", point, check, outcome, reset)
    report(fuzz(task, kill_points(), seed=20, logs=tmp_path / "logs"))


# --- eval through an endpoint ---------------------------------------------------------------


def test_endpoint_eval_killed_at_random_points_resends_no_finished_sample(tmp_path, lines):
    records = json.loads(lines.read_text())
    labels = {sha256(Path(r["img_path"]).read_bytes()): r["ocr_results"] for r in records}
    run_dir = tmp_path / "run"
    ckpt = run_dir / "endpoint_checkpoint.jsonl"
    finished_at_kill: list[tuple[int, set[str]]] = []  # (server log length, image shas checkpointed) per kill
    # every answer takes 0.25 s: two workers need ~1.5 s for the 12 samples, a window to kill in
    with FakeOpenAI(labels, api_key=KEY, script={sha: ["slow:0.25"] * 50 for sha in labels}) as server:
        cmd = ocrft(run_dir, "task=eval", "model=endpoint", "model.provider=ocrft", f"model.base_url={server.url}",
                    "data=json_ocr", f"data.test_file={lines}", "eval.workers=2")  # fmt: skip

        def point() -> str:
            rows, cut = checkpoint_rows(ckpt)
            done = {sha256(Path(r["image_path"]).read_bytes()) for r in rows if r.get("error") is None}
            finished_at_kill.append((len(server.log), done))
            in_flight = sum(e["outcome"] is None for e in server.log)
            return (f"after {len(rows)} of {N_LINES} answers checkpointed, {in_flight} requests in flight"
                    + (", a line cut" if cut else "") + f"; run.json {status(run_dir)}")  # fmt: skip

        def check() -> None:
            assert_every_file_parses(run_dir)
            rows_check(ckpt)

        def outcome() -> dict:
            resent = sorted(labels[sha] for start, done in finished_at_kill for sha in done
                            if any(e["sha"] == sha for e in server.log[start:]))  # fmt: skip
            finished_at_kill.clear()
            return {"status": status(run_dir), "predictions": predictions(run_dir), "finished yet sent again": resent}

        def reset() -> None:
            clear(run_dir)
            finished_at_kill.clear()

        task = FuzzTask("endpoint_eval", cmd, r"endpoint .*: \d+ samples", point, check, outcome, reset,
                        env={"OCRFT_SERVE_KEY": KEY})  # fmt: skip
        result = fuzz(task, kill_points(), seed=21, logs=tmp_path / "logs")
    report(result)
    assert all(p == r["ocr_results"] for p, r in zip(predictions(run_dir).values(), records))


# --- an Optuna sweep ------------------------------------------------------------------------------

N_TRIALS = 3


def test_sweep_killed_at_random_points_counts_each_trial_once(tmp_path):
    db, sweep = tmp_path / "optuna.db", tmp_path / "sweep"
    cmd = [sys.executable, "-m", "ocrft", "--multirun", "+experiment=demo_sweep", "tracking=none",
           "search_space=conservative", "train.max_steps=2", "eval.every_n_steps=2", "data.num_train=8", "data.num_val=2",
           "data.num_test=2", "eval.val_subset=2", "eval.max_new_tokens=4", f"hydra.sweeper.n_trials={N_TRIALS}",
           "hydra.sweeper.pruner.type=none", f"hydra.sweeper.storage=sqlite:///{db}", "hydra.sweeper.study_name=s",
           "hydra.sweeper.heartbeat_interval=1", f"hydra.sweep.dir={sweep}"]  # fmt: skip

    def trials() -> list[tuple[int, str, float | None, tuple]]:
        """(number, state, value, params) per trial, read with sqlite3 (no optuna import per poll)."""
        if not db.exists():
            return []
        with sqlite3.connect(db) as con:
            try:
                rows = con.execute("SELECT trial_id, number, state FROM trials ORDER BY number").fetchall()
            except sqlite3.OperationalError:  # no tables yet
                return []
            values = dict(con.execute("SELECT trial_id, value FROM trial_values").fetchall())
            params: dict[int, list] = {}
            for tid, name, value in con.execute("SELECT trial_id, param_name, param_value FROM trial_params"):
                params.setdefault(tid, []).append((name, value))
        return [(n, s, values.get(tid), tuple(sorted(params.get(tid, [])))) for tid, n, s in rows]

    def point() -> str:
        ts = trials()
        if not ts:
            return "no study yet"
        return ", ".join(f"trial {n} {s.lower()}" for n, s, _, _ in ts) + ("; best.yaml written" if (sweep / "best.yaml").exists() else "")

    def check() -> None:
        ts = trials()
        assert len({n for n, *_ in ts}) == len(ts)
        assert sum(s == "COMPLETE" for _, s, _, _ in ts) <= N_TRIALS
        if sweep.exists():
            assert_every_file_parses(sweep)

    def outcome() -> dict:
        ts = trials()
        counted = [t for t in ts if t[1] == "COMPLETE"]
        for n, _, value, _ in counted:  # each counted trial's own job finished with the value the study holds
            record = json.loads((sweep / str(n) / "run.json").read_text())
            assert record["status"] == "finished" and record["metrics"]["val/cer"] == value
        return {"complete": len(counted), "running": [n for n, s, *_ in ts if s == "RUNNING"],
                "values": {p: v for _, _, v, p in counted}, "best.yaml": (sweep / "best.yaml").is_file()}  # fmt: skip

    def compare(ref: dict, got: dict) -> None:
        assert got["complete"] == ref["complete"] == N_TRIALS  # none lost, none counted twice
        assert got["running"] == [] and got["best.yaml"]
        # A killed trial is re-run with its params, new ones are sampled afresh, so only the
        # trials with the reference's params can be compared: the same params, the same value.
        for params in got["values"].keys() & ref["values"].keys():
            assert got["values"][params] == ref["values"][params]

    # Its jobs print "finished" one by one: the window runs to the sweep's exit, whose last
    # steps (best.yaml, the plots, the sweep's run.json) are worth a kill too.
    task = FuzzTask("sweep", cmd, r"Optuna study", point, check, outcome, lambda: clear(db, sweep), compare,
                    finished=None, cwd=tmp_path, timeout=600)  # fmt: skip
    report(fuzz(task, kill_points(), seed=22, logs=tmp_path / "logs"))
