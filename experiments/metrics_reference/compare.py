"""ocrft's metrics next to the reference tools' on the same line pairs (docs/metrics.md).

Run from the repository root with the project venv; the reference tools live in a separate
venv so that nothing they pull reaches the project's:

    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install dinglehopper evaluate sacrebleu jiwer "multimethod<2"
    # (dinglehopper 0.11's word_error_rate fails to dispatch under multimethod 2.x)
    # HF evaluate loads its metric scripts from the hub; offline, point it at a checkout of
    # github.com/huggingface/evaluate (metrics/ter/ter.py, metrics/sacrebleu/sacrebleu.py):
    .venv/bin/python experiments/metrics_reference/compare.py --ref-python /tmp/refvenv/bin/python \
        --hf-metrics /path/to/evaluate/metrics

It writes results.json and table.md beside itself. With ``--reference`` the script is the
reference half: run under the reference venv, it prints the reference tools' numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (what the pair shows, reference = ground truth, prediction)
PAIRS = [
    ("long s ſ read as s", "Berliniſche Monatsſchrift.", "Berlinische Monatsschrift."),
    ("ligatures ﬂ ﬁ read as fl fi", "Auf dem ﬂachen Felde ﬁnden", "Auf dem flachen Felde finden"),
    ("combining e above (uͤ) read as u", "Schuͤler und Lehrer", "Schuler und Lehrer"),
    ("ä precomposed vs a + U+0308", "Aufklärung", "Aufkla\u0308rung"),
    ("case", "Zweiter Band", "ZWEITER BAND"),
    ("punctuation spacing", "Was iſt Aufklärung?", "Was iſt Aufklärung ?"),
    ("punctuation misread", "Julius bis December.", "Julius bis December,"),
    ("old Cyrillic ѳ ъ", "Ѳеодоръ Михайловичъ", "Феодор Михайлович"),
    ("empty prediction", "Sapere aude!", ""),
]


def reference_scores(hf_metrics: str | None) -> dict:
    """The reference tools' numbers, per pair and for the corpus (run under the ref venv)."""
    from importlib.metadata import version

    import jiwer
    import sacrebleu
    from dinglehopper.character_error_rate import character_error_rate_n
    from dinglehopper.word_error_rate import word_error_rate_n

    refs, hyps = [p[1] for p in PAIRS], [p[2] for p in PAIRS]
    hf = {}
    if hf_metrics:
        import evaluate

        hf = {name: evaluate.load(str(Path(hf_metrics) / name / f"{name}.py")) for name in ("ter", "sacrebleu")}

    def hf_scores(h: list[str], r: list[str]) -> dict:
        if not hf:
            return {}
        return {"hf_ter": hf["ter"].compute(predictions=h, references=[[x] for x in r])["score"],
                "hf_bleu": hf["sacrebleu"].compute(predictions=h, references=[[x] for x in r])["score"]}  # fmt: skip

    # dinglehopper's corpus numbers as its line-dirs CLI rolls them up: line rates weighted
    # by their reference lengths (total edits / total reference characters or words).
    ding_c = [character_error_rate_n(r, h) for r, h in zip(refs, hyps)]
    ding_w = [word_error_rate_n(r, h) for r, h in zip(refs, hyps)]
    rows = []
    for (_, ref, hyp), (cer, _), (wer, _) in zip(PAIRS, ding_c, ding_w):
        rows.append({
            "jiwer_cer": jiwer.cer(ref, hyp), "jiwer_wer": jiwer.wer(ref, hyp),
            "dinglehopper_cer": cer, "dinglehopper_wer": wer,
            "sacrebleu_ter": sacrebleu.corpus_ter([hyp], [[ref]]).score,
            "sacrebleu_bleu": sacrebleu.corpus_bleu([hyp], [[ref]]).score,
            **hf_scores([hyp], [ref]),
        })  # fmt: skip
    corpus = {
        "jiwer_cer": jiwer.cer(refs, hyps), "jiwer_wer": jiwer.wer(refs, hyps),
        "dinglehopper_cer": sum(c * n for c, n in ding_c) / sum(n for _, n in ding_c),
        "dinglehopper_wer": sum(w * n for w, n in ding_w) / sum(n for _, n in ding_w),
        "sacrebleu_ter": sacrebleu.corpus_ter(hyps, [refs]).score,
        "sacrebleu_bleu": sacrebleu.corpus_bleu(hyps, [refs]).score,
        **hf_scores(hyps, refs),
    }  # fmt: skip
    versions = {p: version(p) for p in ("jiwer", "sacrebleu", "dinglehopper", "evaluate") if p != "evaluate" or hf}
    return {"rows": rows, "corpus": corpus, "versions": versions}


def ocrft_scores() -> dict:
    from importlib.metadata import version

    from ocrft.config import NormalizationConfig
    from ocrft.evaluation.metrics import MetricSettings, score

    default, nfkc = NormalizationConfig(), NormalizationConfig(nfkc=True)
    grapheme = MetricSettings(cer_unit="grapheme")

    def scores(h: list[str], r: list[str]) -> dict:
        m, g, k = score(h, r, default), score(h, r, default, grapheme), score(h, r, nfkc)
        return {"ocrft_cer": m["cer"], "ocrft_cer_grapheme": g["cer"], "ocrft_cer_nfkc": k["cer"],
                "ocrft_wer": m["wer"], "ocrft_ter": m["ter"], "ocrft_bleu": m["bleu"]}  # fmt: skip

    refs, hyps = [p[1] for p in PAIRS], [p[2] for p in PAIRS]
    return {
        "rows": [scores([h], [r]) for _, r, h in PAIRS],
        "corpus": scores(hyps, refs),
        "versions": {"ocrft": version("ocrft"), "sacrebleu": version("sacrebleu")},
        "signatures": MetricSettings().signatures(),
    }


COLUMNS = [
    ("ocrft_cer", "ocrft CER"), ("ocrft_cer_grapheme", "ocrft CER grapheme"), ("ocrft_cer_nfkc", "ocrft CER nfkc"),
    ("jiwer_cer", "jiwer cer"), ("dinglehopper_cer", "dinglehopper CER"),
    ("ocrft_wer", "ocrft WER"), ("jiwer_wer", "jiwer wer"), ("dinglehopper_wer", "dinglehopper WER"),
    ("ocrft_ter", "ocrft TER"), ("sacrebleu_ter", "sacrebleu TER"), ("hf_ter", "HF evaluate ter"),
    ("ocrft_bleu", "ocrft BLEU"), ("sacrebleu_bleu", "sacrebleu BLEU"), ("hf_bleu", "HF evaluate sacrebleu"),
]  # fmt: skip


def _cell(value) -> str:
    if value is None:
        return "–"
    return "inf" if value == float("inf") else f"{value:.3f}" if value < 10 else f"{value:.1f}"


def table(ours: dict, theirs: dict, prefixes: tuple[str, ...]) -> str:
    """A markdown table of the columns whose key ends in one of ``prefixes`` (cer, wer, ...)."""
    cols = [(k, name) for k, name in COLUMNS if (k in ours["rows"][0] or k in theirs["rows"][0])
            and k.split("_")[1] in prefixes]  # fmt: skip
    lines = ["| pair | reference | prediction | " + " | ".join(n for _, n in cols) + " |",
             "|---|---|---|" + "---|" * len(cols)]  # fmt: skip
    for (what, ref, hyp), a, b in zip(PAIRS, ours["rows"], theirs["rows"]):
        row = {**a, **b}
        lines.append(f"| {what} | `{ref}` | `{hyp}` | " + " | ".join(_cell(row.get(k)) for k, _ in cols) + " |")
    row = {**ours["corpus"], **theirs["corpus"]}
    lines.append("| **corpus** (all pairs) | | | " + " | ".join(_cell(row.get(k)) for k, _ in cols) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", action="store_true", help="print the reference tools' numbers (ref venv)")
    parser.add_argument("--ref-python", default="/tmp/refvenv/bin/python", help="python of the reference venv")
    parser.add_argument("--hf-metrics", help="folder holding HF evaluate's metrics/<name>/<name>.py scripts")
    args = parser.parse_args()
    if args.reference:
        json.dump(reference_scores(args.hf_metrics), sys.stdout, ensure_ascii=False)
        return
    cmd = [args.ref_python, __file__, "--reference"] + (["--hf-metrics", args.hf_metrics] if args.hf_metrics else [])
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # HF evaluate must not reach for the hub
    theirs = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout)
    ours = ocrft_scores()
    (HERE / "results.json").write_text(
        json.dumps({"pairs": PAIRS, "ocrft": ours, "reference": theirs}, ensure_ascii=False, indent=1) + "\n"
    )
    versions = {**theirs["versions"], **ours["versions"]}
    text = table(ours, theirs, ("cer", "wer")) + "\n" + table(ours, theirs, ("ter", "bleu"))
    text += "\nVersions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) + "\n"
    text += "".join(f"\nocrft {k.upper()} signature: `{v}`" for k, v in ours["signatures"].items()) + "\n"
    (HERE / "table.md").write_text(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
