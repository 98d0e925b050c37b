"""model=cascade on the demo: the shipped demo base locally, a demo-adapted run behind task=serve.

Prints, on the demo's test lines, CER and fallback fraction of the base alone, the server
alone, and the cascade at three thresholds (each picked on the val split to send at most
10 / 30 / 50 % of it) beside the expected CER of routing as many lines at random; and how
well the local confidence ranks the base's errors (AUROC of confidence against exact match:
0.5 = no better than chance, 1 = every correct line is more confident than every wrong one).

Every number comes from one run of each model over the split (the cascade's own resumable
checkpoints, written by `task=eval model=cascade cascade.calibrate=true`); routing at a
threshold is arithmetic on them (ocrft.evaluation.cascade), nothing is generated twice.

    python bench/bench_cascade.py [--steps 150] [--num-train 600] [--adapted RUN_DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = ["+experiment=demo", "eval.max_new_tokens=16", "eval.batch_size=32", "tracking=none"]
FRACTIONS = (0.1, 0.3, 0.5)  # cascade.max_fallback_fraction of the three thresholds


def ocrft(args: list[str], log: Path) -> None:
    """``python -m ocrft ARGS``, its output to ``log``; raises if it fails."""
    with log.open("w") as out:
        subprocess.run([sys.executable, "-m", "ocrft", *args], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                       check=True)  # fmt: skip


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(adapted: Path, out: Path) -> tuple[subprocess.Popen, str]:
    """task=serve on the adapted run; returns the process and its /v1 URL once it answers."""
    port = free_port()
    log = (out / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "ocrft", "task=serve", "tracking=none", "model=demo_base",
                             "prompt=ocr_line", f"model.path={adapted}", f"serve.port={port}", "eval.max_new_tokens=16",
                             f"run_dir={out / 'serve'}"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 300
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return proc, f"http://127.0.0.1:{port}/v1"
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"task=serve did not come up: see {out / 'serve.log'}")
            time.sleep(0.5)


def rows(path: Path) -> dict[str, dict]:
    return {(r := json.loads(line))["id"]: r for line in path.open()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150, help="training steps of the adaptation")
    parser.add_argument("--num-train", type=int, default=600)
    parser.add_argument("--adapted", type=Path, help="an existing demo-adapted run folder (skips training)")
    parser.add_argument("--out", type=Path, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    out = (args.out or Path(tempfile.mkdtemp(prefix="ocrft-bench-cascade-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OCRFT_CACHE", str(out / "cache"))

    from ocrft.config import NormalizationConfig
    from ocrft.evaluation import cascade as calc
    from ocrft.evaluation.metrics import score_sample

    adapted = args.adapted
    if adapted is None:
        adapted = out / "adapted"
        start = time.perf_counter()
        ocrft([*DEMO, f"train.max_steps={args.steps}", f"data.num_train={args.num_train}", "eval.before_after=false",
               "eval.every_n_steps=0", f"run_dir={adapted}"], out / "train.log")  # fmt: skip
        print(f"adaptation: {args.steps} steps on {args.num_train} lines in {time.perf_counter() - start:.0f} s")
    proc, url = serve(adapted, out)
    try:
        cascade = ["task=eval", *DEMO, "model=cascade", "model.path=asset:demo_base", f"cascade.fallback.base_url={url}",
                   f"run_dir={out / 'cascade'}"]  # fmt: skip
        ocrft([*cascade, "cascade.threshold=auto"], out / "cascade_auto.log")  # reads val: the thresholds' data
        ocrft([*cascade, "cascade.calibrate=true"], out / "cascade_calibrate.log")  # the server reads every line
    finally:
        proc.terminate()
        proc.wait(timeout=60)

    folder = out / "cascade"
    local, fallback = rows(folder / "cascade_local_test.jsonl"), rows(folder / "cascade_fallback_test.jsonl")
    val = list(rows(folder / "cascade_local_val.jsonl").values())
    ids = list(local)
    labels = [local[i]["label"] for i in ids]
    norm = NormalizationConfig()
    local_counts = calc.char_counts([local[i]["prediction"] for i in ids], labels, norm, "codepoint")
    fallback_counts = calc.char_counts([fallback[i]["prediction"] for i in ids], labels, norm, "codepoint")
    ref = sum(c[1] for c in local_counts)
    exact = [score_sample(local[i]["prediction"], local[i]["label"], norm)["exact_match"] for i in ids]

    print(f"demo test split: {len(ids)} lines; local = shipped demo base, fallback = the adapted run behind task=serve")
    local_edits, fallback_edits = sum(c[0] for c in local_counts), sum(c[0] for c in fallback_counts)
    # the same fraction routed at random: the baseline a confidence has to beat
    at_random = lambda fraction: (local_edits + fraction * (fallback_edits - local_edits)) / ref  # noqa: E731
    print(f"{'what':<38} {'threshold':>9} {'fallback':>9} {'CER':>7} {'random':>7}")
    print(f"{'local only (demo base)':<38} {'-':>9} {0:>9.3f} {local_edits / ref:>7.4f}")
    for kind in calc.CONFIDENCES:
        conf = [calc.confidence_of(local[i], kind) for i in ids]
        for fraction in FRACTIONS:
            t = calc.pick_threshold([calc.confidence_of(r, kind) for r in val], fraction)
            routes = calc.route(conf, t)
            edits = sum(f[0] if go else loc[0] for loc, f, go in zip(local_counts, fallback_counts, routes))
            what = f"cascade {kind}, <= {fraction:.0%} of val"
            fraction_routed = sum(routes) / len(routes)
            print(f"{what:<38} {t:>9.4f} {fraction_routed:>9.3f} {edits / ref:>7.4f} {at_random(fraction_routed):>7.4f}")
    print(f"{'fallback only (adapted, served)':<38} {'-':>9} {1:>9.3f} {fallback_edits / ref:>7.4f}")
    print(f"local exact match: {sum(exact) / len(exact):.3f}")
    for kind in calc.CONFIDENCES:
        score = calc.auroc([calc.confidence_of(local[i], kind) for i in ids], exact)
        print(f"AUROC of {kind} against exact match: {score:.3f}")
    print(f"work folder: {out}")


if __name__ == "__main__":
    main()
