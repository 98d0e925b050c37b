"""ocrft's olmOCR-Bench checks against olmocr's own bench code, test by test.

Takes olmocr's sample bench (olmocr/bench/sample_data: 120 tests on 21 PDFs, a candidate
folder olmocr_pipeline), writes six altered candidates beside it (paragraphs reversed, lines
dropped, 2% of characters changed, table rows shuffled, empty repeats, tables as HTML), scores
each with ocrft (task=eval data=olmocr_bench model=predictions) and with olmocr's tests.py run
by --ref-python from an olmocr checkout (its KaTeX renderer stubbed: math is left out of both),
and prints per candidate how many tests the two disagree on, and ocrft's olmocr/overall.

    python experiments/olmocr_bench_check/crosscheck.py --olmocr /path/to/olmocr --ref-python /tmp/olmoracle/bin/python
"""

from __future__ import annotations

import argparse
import glob
import html
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ORACLE = r'''
import glob, json, os, sys, types
sys.path.insert(0, sys.argv[1])
stub = types.ModuleType("olmocr.bench.katex.render")
stub.render_equation = lambda *a, **k: None
stub.compare_rendered_equations = lambda *a, **k: False
sys.modules["olmocr.bench.katex.render"] = stub
from olmocr.bench.tests import BaselineTest, load_single_test
bench, cand = sys.argv[2], sys.argv[3]
tests = [load_single_test(line) for f in glob.glob(os.path.join(bench, "*.jsonl")) for line in open(f)
         if line.strip() and json.loads(line)["type"] != "math"]
pdfs = [os.path.relpath(p, os.path.join(bench, "pdfs")) for p in glob.glob(os.path.join(bench, "pdfs", "**", "*.pdf"), recursive=True)]
tests += [BaselineTest(id=f"{p}_baseline", pdf=p, page=1, type="baseline") for p in pdfs
          if not any(t.type == "baseline" and t.pdf == p for t in tests)]
out = {}
for t in tests:
    mds = sorted(glob.glob(os.path.join(cand, f"{os.path.splitext(t.pdf)[0]}_pg{t.page}_repeat*.md")))
    passes = [bool(t.run(open(md, encoding="utf-8").read())[0]) for md in mds]
    out[t.id] = bool(passes) and sum(passes) / len(passes) > 0.5
json.dump(out, sys.stdout)
'''


def reversed_paragraphs(text: str, k: int) -> str:
    return text if k == 2 else "\n\n".join(reversed(text.split("\n\n")))


def dropped_lines(text: str, k: int) -> str:
    return "\n".join(line for i, line in enumerate(text.split("\n")) if (i + k) % 3)


def noisy(text: str, k: int) -> str:
    rng = random.Random(k)
    return "".join(rng.choice("abcdefxyz0189") if c.isalnum() and rng.random() < 0.02 else c for c in text)


def shuffled_rows(text: str, k: int) -> str:
    lines = text.split("\n")
    rows = [i for i, line in enumerate(lines) if line.startswith("|") and not set(line) <= set("|-: ")]
    values = [lines[i] for i in rows]
    random.Random(k).shuffle(values)
    for i, value in zip(rows, values):
        lines[i] = value
    return "\n".join(lines)


def empty_repeats(text: str, k: int) -> str:
    return text if k == 1 else ""


def html_tables(text: str, k: int) -> str:
    out, run = [], []

    def flush() -> None:
        if len(run) >= 2:
            rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in run if not set(line) <= set("|-: ")]
            cells = ("".join(f"<{t}>{html.escape(c)}</{t}>" for c in row) for row, t in
                     zip(rows, ["th"] + ["td"] * len(rows)))
            out.append("<table>" + "".join(f"<tr>{c}</tr>" for c in cells) + "</table>")
        else:
            out.extend(run)
        run.clear()

    for line in text.split("\n"):
        if "|" in line:
            run.append(line)
        else:
            flush()
            out.append(line)
    flush()
    return "\n".join(out)


CANDIDATES = {"reversed": reversed_paragraphs, "dropped": dropped_lines, "noisy": noisy,
              "shuffled_rows": shuffled_rows, "empty_repeats": empty_repeats, "html_tables": html_tables}


def write_candidate(source: Path, target: Path, alter) -> None:
    for md in source.rglob("*_repeat1.md"):
        text = md.read_text(encoding="utf-8")
        for k in (1, 2, 3):
            out = target / md.relative_to(source).as_posix().replace("_repeat1.md", f"_repeat{k}.md")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(alter(text, k), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--olmocr", required=True, help="an allenai/olmocr checkout")
    parser.add_argument("--ref-python", required=True, help="a Python with rapidfuzz, fuzzysearch, beautifulsoup4, tqdm")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    bench = work / "bench"
    shutil.copytree(Path(args.olmocr) / "olmocr/bench/sample_data", bench)
    for name, alter in CANDIDATES.items():
        write_candidate(bench / "olmocr_pipeline", bench / name, alter)
    for name in ["olmocr_pipeline", *CANDIDATES]:
        run_dir = work / f"run_{name}"
        subprocess.run([sys.executable, "-m", "ocrft", "task=eval", "data=olmocr_bench", f"data.path={bench}",
                        "model=predictions", f"model.path={bench / name}", "tracking=none", f"run_dir={run_dir}",
                        "data.pdf_dpi=36"], check=True, capture_output=True)  # fmt: skip
        oracle = json.loads(subprocess.run([args.ref_python, "-c", ORACLE, args.olmocr, str(bench), str(bench / name)],
                                           check=True, capture_output=True, text=True).stdout)  # fmt: skip
        results = json.loads((run_dir / "results.json").read_text())
        ours = {c["id"]: c["passed"] for s in results["samples"] for c in s["checks"] if c["passed"] is not None}
        disagree = sorted(k for k in ours if ours[k] != oracle.get(k))
        print(f"{name:16} tests {len(ours):4}  passed {sum(ours.values()):4}  disagree {len(disagree)} {disagree[:5]}  "
              f"olmocr/overall {results['metrics']['olmocr/overall']:.4f}")


if __name__ == "__main__":
    main()
