"""task=analyze: split sizes, text, image and token statistics, and characters the model never saw.

    python -m ocrft task=analyze data=json_ocr data.path=data/ocr.json tracking=none

Writes ``analysis.json`` (everything), ``analysis.md`` (tables), ``analysis.png``
(text-length histograms, top character frequencies), and the tables for pandas, spreadsheets
and notebooks: ``analysis.csv`` / ``.parquet`` (one row per split) and ``analysis_chars.csv`` /
``.parquet`` (one row per split and character) into the run folder. Characters of the
test (and val) split that never occur in train are the first thing to check when a
fine-tune plateaus: the model cannot learn to emit what it never saw. For a local model
(``model=...``; the default is the tiny test model) it also records each split's token
lengths (prompt + image + target: min, p50, p90, p99, max, and image tokens) with that
model's processor, and how many samples exceed ``train.max_length``.
"""

from __future__ import annotations

import io
import logging
import statistics
from collections import Counter
from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd

from ocrft import atomic
from ocrft.data.record import Record
from ocrft.runner import RunContext, TaskResult

log = logging.getLogger(__name__)

TOP_CHARS = 30  # characters shown in the frequency plot and the markdown table


def _stats(values: Sequence[float]) -> Optional[dict[str, float]]:
    if not values:
        return None
    return {
        "min": min(values),
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "max": max(values),
    }


def _image_size(image: Any) -> Optional[tuple[int, int]]:
    """(width, height) without decoding pixels (PIL reads only the header); None if unreadable."""
    if hasattr(image, "size") and not isinstance(image, (str, Path)):  # an in-memory PIL image
        return tuple(image.size)
    from PIL import Image

    try:
        with Image.open(image) as im:
            return im.size
    except (OSError, ValueError) as err:
        log.warning("analyze: cannot read image %s: %s", image, err)
        return None


def analyze_splits(splits: dict[str, list[Record]]) -> dict:
    """Statistics of each split and the characters of every non-train split unseen in train.

    Returns:
        ``{"splits": {name: {num_samples, text_length, text_length_hist, image_width, image_height,
        unreadable_images, num_chars, distinct_chars, char_freq}}, "unseen_chars": {name:
        {char: count}}, "samples_with_unseen_chars": {name: n}}``; stats are
        min/mean/median/max (None for an empty split) and ``char_freq`` is most-common first.
    """
    out: dict[str, Any] = {"splits": {}, "unseen_chars": {}, "samples_with_unseen_chars": {}}
    freqs: dict[str, Counter] = {}
    for name, records in splits.items():
        lengths = [len(r.text) for r in records]
        sizes = [_image_size(r.image) for r in records]
        ok = [s for s in sizes if s is not None]
        freqs[name] = Counter("".join(r.text for r in records))
        out["splits"][name] = {
            "num_samples": len(records),
            "text_length": _stats(lengths),
            "text_length_hist": dict(sorted(Counter(lengths).items())),
            "image_width": _stats([w for w, _ in ok]),
            "image_height": _stats([h for _, h in ok]),
            "unreadable_images": len(sizes) - len(ok),
            "num_chars": sum(lengths),
            "distinct_chars": len(freqs[name]),
            "char_freq": dict(freqs[name].most_common()),
        }
    seen = freqs.get("train", Counter())
    for name, records in splits.items():
        if name == "train":
            continue
        unseen = Counter({c: n for c, n in freqs[name].items() if c not in seen})
        out["unseen_chars"][name] = dict(unseen.most_common())
        out["samples_with_unseen_chars"][name] = sum(1 for r in records if any(c in unseen for c in r.text))
    return out


def splits_frame(analysis: dict) -> pd.DataFrame:
    """One row per split (index ``split``): sizes, text length and image size min/mean/median/max,
    unreadable images, characters, and (for non-train splits) the unseen characters."""
    rows = []
    for name, s in analysis["splits"].items():
        row = {"split": name, "num_samples": s["num_samples"]}
        for key in ("text_length", "image_width", "image_height"):
            row.update({f"{key}_{stat}": (s[key] or {}).get(stat) for stat in ("min", "mean", "median", "max")})
        row.update({k: s[k] for k in ("unreadable_images", "num_chars", "distinct_chars")})
        row["unseen_chars"] = len(analysis["unseen_chars"][name]) if name in analysis["unseen_chars"] else None
        row["samples_with_unseen_chars"] = analysis["samples_with_unseen_chars"].get(name)
        rows.append(row)
    # A count that does not apply (unseen chars of train itself) is <NA>, not a float NaN.
    counts = {"unseen_chars": "Int64", "samples_with_unseen_chars": "Int64"}
    return pd.DataFrame(rows).set_index("split").astype(counts)


def chars_frame(analysis: dict) -> pd.DataFrame:
    """One row per split and character: ``split, char, code_point, count, seen_in_train``
    (most common first within a split; ``seen_in_train`` is True for the train split itself)."""
    rows = [
        {"split": name, "char": c, "code_point": f"U+{ord(c):04X}", "count": n,
         "seen_in_train": c not in analysis["unseen_chars"].get(name, {})}
        for name, s in analysis["splits"].items()
        for c, n in s["char_freq"].items()
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["split", "char", "code_point", "count", "seen_in_train"])


def write_tables(analysis: dict, run_dir: Path) -> dict[str, str]:
    """analysis.csv/.parquet (:func:`splits_frame`) and analysis_chars.csv/.parquet (:func:`chars_frame`)."""
    paths = {}
    for stem, frame in (("analysis", splits_frame(analysis)), ("analysis_chars", chars_frame(analysis))):
        index = stem == "analysis"  # the split names are the index of the per-split table
        paths[f"{stem}_csv"] = str(atomic.write_text(run_dir / f"{stem}.csv", frame.to_csv(index=index)))
        paths[f"{stem}_parquet"] = str(atomic.write_bytes(run_dir / f"{stem}.parquet", frame.to_parquet(index=index)))
    return paths


def _char_label(c: str) -> str:
    # Show whitespace and control characters by name, so a table cell is never blank.
    return {" ": "␣", "\t": "\\t", "\n": "\\n"}.get(c, c if c.isprintable() else f"U+{ord(c):04X}")


def _fmt_stats(s: Optional[dict]) -> str:
    if not s:
        return "–"
    return " / ".join(f"{s[k]:.1f}" if isinstance(s[k], float) else str(s[k]) for k in ("min", "mean", "median", "max"))


def analysis_markdown(analysis: dict) -> str:
    """The analysis as markdown tables (what analysis.md holds)."""
    lines = [
        "# Dataset analysis",
        "",
        "| split | samples | text length min / mean / median / max | image width | image height "
        "| unreadable images | distinct chars |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in analysis["splits"].items():
        lines.append(
            f"| {name} | {s['num_samples']} | {_fmt_stats(s['text_length'])} | {_fmt_stats(s['image_width'])} "
            f"| {_fmt_stats(s['image_height'])} | {s['unreadable_images']} | {s['distinct_chars']} |"
        )
    if analysis.get("skipped"):
        lines += ["", f"Records skipped while reading (by reason): {analysis['skipped']}"]
    lines += tokens_markdown(analysis.get("tokens"))
    for name, unseen in analysis["unseen_chars"].items():
        n = analysis["samples_with_unseen_chars"][name]
        lines += ["", f"## Characters in {name} never seen in train: {len(unseen)} ({n} samples affected)"]
        if unseen:
            lines.append("")
            lines += ["| char | code point | count |", "|---|---|---|"]
            # A literal "|" would split the markdown cell.
            lines += [f"| {_char_label(c).replace('|', '&#124;')} | U+{ord(c):04X} | {n} |" for c, n in unseen.items()]
    for name, s in analysis["splits"].items():
        top = list(s["char_freq"].items())[:TOP_CHARS]
        # A backtick needs a longer fence to show as inline code.
        codes = [f"`` {c} ``" if c == "`" else f"`{_char_label(c)}`" for c, _ in top]
        counts = " ".join(f"{code}×{n}" for code, (_, n) in zip(codes, top))
        lines += ["", f"## Top characters in {name}", "", counts or "–"]
    return "\n".join(lines) + "\n"


def plot_analysis(analysis: dict, path: Path) -> Path:
    """Text-length histograms per split and top-character relative frequencies, as a PNG."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = analysis["splits"]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 7))
    hists = {name: {int(k): v for k, v in s["text_length_hist"].items()} for name, s in splits.items()}
    all_lengths = [n for h in hists.values() for n in h]
    # Shared bins and shares of samples, so a 50-sample test split is comparable to a 5,000-sample train.
    bins = min(30, max(all_lengths, default=0) - min(all_lengths, default=0) + 1)
    span = (min(all_lengths, default=0), max(all_lengths, default=1) + 1)
    for name, hist in hists.items():  # JSON turns the int keys into str, hence int() above
        if hist:
            count = sum(hist.values())
            ax1.hist(list(hist), bins=bins, range=span, weights=[v / count for v in hist.values()],
                     histtype="step", linewidth=1.5, label=f"{name} (n={splits[name]['num_samples']})")
    ax1.set(title="Text length per split", xlabel="characters", ylabel="share of samples")
    ax1.legend()
    total = Counter()
    for s in splits.values():
        total.update(s["char_freq"])
    top = [c for c, _ in total.most_common(TOP_CHARS)]
    width = 0.8 / max(len(splits), 1)
    for k, (name, s) in enumerate(splits.items()):
        n = s["num_chars"] or 1
        shares = [s["char_freq"].get(c, 0) / n for c in top]
        ax2.bar([i + k * width for i in range(len(top))], shares, width, label=name)
    ax2.set_xticks([i + 0.4 - width / 2 for i in range(len(top))], [_char_label(c) for c in top])
    ax2.set(title=f"Top {len(top)} characters (share of each split's characters)", ylabel="share")
    ax2.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # glyphs missing from the font (CJK) are drawn as boxes
        fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return atomic.write_bytes(path, buf.getvalue())


def analyze_tokens(cfg, splits: dict[str, list[Record]]) -> Optional[dict]:
    """Token lengths per split for the configured local model (ocrft.training.token_lengths
    ``token_report``); None for endpoints, other engines' outputs, or a config without a model."""
    from ocrft.models.registry import FAMILIES

    model = cfg.get("model")
    if model is None or model.family not in FAMILIES:
        return None
    from ocrft.data.record import DataError
    from ocrft.training.token_lengths import token_report

    try:
        return token_report(model, splits, cfg.prompt.text, cfg.prompt.system, max_length=cfg.train.max_length)
    except (DataError, OSError) as err:  # an unreadable image is reported above; the rest stands
        log.warning("analyze: token lengths not computed: %s", err)
        return {"error": str(err)}


def tokens_markdown(tokens: Optional[dict]) -> list[str]:
    """The token-length table of analysis.md (empty without a local model)."""
    if not tokens or "splits" not in tokens:
        return []
    model = tokens["model"]
    budget = ", ".join(f"{k}={v}" for k, v in model.items() if k not in ("family", "path"))
    lines = ["", f"## Token lengths (prompt + image + target) for {model['path']} ({model['family']}, {budget})", "",
             f"train.max_length={tokens['max_length']}; task=train refuses longer samples (or skips them with "
             "data.on_error=skip).", "",
             "| split | min | p50 | p90 | p99 | max | image tokens min / p50 / max | over max_length |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, s in tokens["splits"].items():
        if s:
            t, i = s["total"], s["image"]
            lines.append(f"| {name} | {t['min']} | {t['p50']} | {t['p90']} | {t['p99']} | {t['max']} "
                         f"| {i['min']} / {i['p50']} / {i['max']} | {s['over_max_length']} |")  # fmt: skip
    return lines


def run_analyze(cfg, ctx: RunContext) -> TaskResult:
    """task=analyze: load the configured data, write analysis.json, .md, .png, .csv and .parquet."""
    from ocrft.data.loading import load_data

    data = load_data(cfg.data, ctx.run_dir)
    ctx.tracker.log_datasets(cfg.data, data.splits, data.sources, generated=data.generated)  # MLflow's Dataset column
    analysis = analyze_splits(data.splits)
    analysis["skipped"] = dict(data.skipped)
    analysis["tokens"] = analyze_tokens(cfg, data.splits)
    paths = {
        "analysis": str(atomic.write_json(ctx.run_dir / "analysis.json", analysis)),
        "analysis_md": str(atomic.write_text(ctx.run_dir / "analysis.md", analysis_markdown(analysis))),
        "analysis_plot": str(plot_analysis(analysis, ctx.run_dir / "analysis.png")),
        **write_tables(analysis, ctx.run_dir),
    }
    metrics: dict[str, float] = {}
    for name, s in analysis["splits"].items():
        metrics[f"analyze/{name}/num_samples"] = s["num_samples"]
        metrics[f"analyze/{name}/distinct_chars"] = s["distinct_chars"]
    for name, unseen in analysis["unseen_chars"].items():
        metrics[f"analyze/{name}/unseen_chars"] = len(unseen)
        metrics[f"analyze/{name}/samples_with_unseen_chars"] = analysis["samples_with_unseen_chars"][name]
    for name, s in ((analysis["tokens"] or {}).get("splits") or {}).items():
        if s:
            metrics.update({f"analyze/{name}/tokens_p99": s["total"]["p99"], f"analyze/{name}/tokens_max": s["total"]["max"],
                            f"analyze/{name}/over_max_length": s["over_max_length"]})  # fmt: skip
    ctx.tracker.log_metrics(metrics)
    for p in paths.values():
        ctx.tracker.log_artifact(p)
    return TaskResult(metrics=metrics, paths=paths)
