"""Self-contained HTML pages of results files, rendered from the jinja2 templates beside
this module (autoescaped; the studio renders the same macros).

A page needs no network: images are embedded as downscaled JPEG data URIs, the CSS and the
(vanilla) JS are inline. Every text from a results file is escaped by the templates, and
rows carry only numbers in data attributes, so a label such as ``<script>`` stays text.
"""

from __future__ import annotations

import base64
import functools
import io
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import jinja2

from ocrft.evaluation.alignment import Segment, align, align_pairs, count_confusions
from ocrft.evaluation.comparison import SAME_EPS, compare_counts, match_samples
from ocrft.evaluation.normalize import normalizer, stored_normalization
from ocrft.evaluation.table_diff import cell_diff

log = logging.getLogger(__name__)

# Thumbnail bounds: wide enough to read a text line, small enough that a 2,000-sample
# report stays a few tens of MB.
THUMB_MAX_W, THUMB_MAX_H = 640, 160
TOP_CONFUSIONS = 20  # rows of the confusion table; the rest is a long tail of ones
# Whitespace would be invisible in a table cell.
_VISIBLE = {" ": "␣", "\n": "↵", "\t": "⇥"}


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _num_attr(value: Any) -> str:
    return repr(float(value)) if isinstance(value, (int, float)) and not isinstance(value, bool) else ""


@functools.cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("ocrft.evaluation", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        extensions=["jinja2.ext.do"],
    )
    env.filters.update(
        fmt=_fmt,
        num_attr=_num_attr,
        text=lambda v: "" if v is None else v,
        visible=lambda s: "".join(_VISIBLE.get(ch, ch) for ch in s),
    )
    return env


def diff_html(reference: str, prediction: str) -> str:
    """Character diff of ``prediction`` against ``reference`` as escaped HTML, from the same
    Levenshtein alignment that CER counts."""
    return str(_env().get_template("_macros.html.j2").module.diff(align(reference, prediction)))


def _resolve(image_path: Optional[str], base_dirs: Sequence[Path]) -> Optional[Path]:
    if not image_path:
        return None
    p = Path(image_path)
    for candidate in [p] if p.is_absolute() else [Path.cwd() / p, *(Path(b) / p for b in base_dirs)]:
        if candidate.is_file():
            return candidate
    return None


def thumbnail_uri(path: Path) -> Optional[str]:
    """A JPEG data URI of the image at ``path`` shrunk to THUMB_MAX_W x THUMB_MAX_H, or None
    (with a warning) when it cannot be read."""
    from ocrft.data.images import MAX_IMAGE_PIXELS, decode_image_bytes
    from ocrft.data.record import DataError

    try:
        # the rules the model's input follows (EXIF orientation, 16-bit grey, transparency onto
        # white); JPEG decodes at reduced size
        flat = decode_image_bytes(path.read_bytes(), MAX_IMAGE_PIXELS, path, draft=(THUMB_MAX_W, THUMB_MAX_H))
        flat.thumbnail((THUMB_MAX_W, THUMB_MAX_H))
        buf = io.BytesIO()
        flat.save(buf, "JPEG", quality=80)
    except (OSError, DataError) as err:
        log.warning("report: cannot read image %s: %s", path, err)
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _images(paths: Sequence[Optional[str]], base_dirs: Sequence[Path]) -> list[dict]:
    """{"uri", "path"} of each image (uri None when not found); PIL decodes outside the GIL."""
    resolved = [_resolve(p, base_dirs) for p in paths]
    with ThreadPoolExecutor(max_workers=4) as pool:
        uris = list(pool.map(lambda p: thumbnail_uri(p) if p else None, resolved))
    return [{"uri": uri, "path": p} for p, uri in zip(paths, uris)]


def summary_metrics(results: dict) -> dict:
    """The corpus metrics of a results dict (a Gemma-OCR seed file has only the headline numbers)."""
    m = dict(results.get("metrics") or {})
    if not m:
        m = {"cer": results.get("overall_cer"), "char_f1": results.get("overall_f1")}
    return m


def _predictions(samples: list[dict], norm: Callable[[str], str]) -> list[dict]:
    """{"text", "error", "segments"} per sample: the alignment of the normalized label and
    prediction (the strings the scores compared); a failed sample has no alignment."""
    ok = [i for i, s in enumerate(samples) if not s.get("error")]
    aligned = align_pairs([norm(samples[i]["label"]) for i in ok], [norm(samples[i]["prediction"]) for i in ok])
    segments: dict[int, list[Segment]] = dict(zip(ok, aligned))
    return [
        {"text": s.get("prediction"), "error": s.get("error"), "segments": segments.get(i)}
        for i, s in enumerate(samples)
    ]


def _confusion_table(predictions: Iterable[dict]) -> tuple[list, int]:
    counts = count_confusions(p["segments"] for p in predictions if p["segments"] is not None)
    return counts.most_common(TOP_CONFUSIONS), counts.total()


def render_report_html(results: dict, base_dirs: Sequence[Path] = ()) -> str:
    """One self-contained HTML report of a results dict: summary, the most frequent
    character confusions, then one sortable and filterable row per sample with its image,
    label, prediction and character diff (over the normalized text that was scored).
    Relative image paths are looked up under the current directory, then under ``base_dirs``."""
    samples = results["samples"]
    preds = _predictions(samples, normalizer(stored_normalization(results.get("normalization"))))
    images = _images([s.get("image_path") for s in samples], base_dirs)
    rows = [
        {
            "id": s.get("id"),
            "cer": s.get("cer_score"),
            "f1": s.get("f1_score"),
            "bad": "1" if s.get("error") or (s.get("cer_score") or 0) > 0 else "0",
            "degenerate": bool(s.get("degenerate")),
            "image": img,
            "label": s["label"],
            "prediction": p,
            # a sample scored by TEDS also shows its tables cell by cell
            "tables": sample_tables(s),
            "checks": s.get("checks") or [],  # olmOCR-Bench samples
        }
        for s, p, img in zip(samples, preds, images)
    ]
    confusions, total = _confusion_table(preds)
    return _env().get_template("report.html.j2").render(
        results=results, metrics=summary_metrics(results), confusions=confusions, confusion_total=total, rows=rows
    )


def _delta(a: Any, b: Any) -> Optional[float]:
    return b - a if isinstance(a, float) and isinstance(b, float) else None


def render_comparison_html(a: dict, b: dict, base_dirs: Sequence[Path] = ()) -> str:
    """One self-contained HTML page comparing two results dicts sample by sample: CER of A
    and B, delta (B - A, negative = B better), both predictions' diffs; sorted by delta,
    B's worst regressions first."""
    key, pairs, _, _ = match_samples(a["samples"], b["samples"])
    sa_all, sb_all = a["samples"], b["samples"]

    def delta(p: tuple[int, int]) -> float:
        ca, cb = sa_all[p[0]].get("cer_score"), sb_all[p[1]].get("cer_score")
        return float("-inf") if ca is None or cb is None else cb - ca

    pairs.sort(key=delta, reverse=True)
    preds_a = _predictions(sa_all, normalizer(stored_normalization(a.get("normalization"))))
    preds_b = _predictions(sb_all, normalizer(stored_normalization(b.get("normalization"))))
    # The image of a pair: A's path, or B's when A's file did not record one.
    images = _images([sa_all[i].get("image_path") or sb_all[j].get("image_path") for i, j in pairs], base_dirs)
    rows = []
    for (i, j), img in zip(pairs, images):
        sa, sb = sa_all[i], sb_all[j]
        ca, cb = sa.get("cer_score"), sb.get("cer_score")
        d = cb - ca if ca is not None and cb is not None else None
        rows.append({
            "key": sa.get(key),
            "cer_a": ca,
            "cer_b": cb,
            "delta": d,
            "cls": "" if d is None or abs(d) < SAME_EPS else ("better" if d < 0 else "worse"),
            "bad": "1" if sa.get("error") or sb.get("error") or (ca or 0) > 0 or (cb or 0) > 0 else "0",
            "changed": "1" if d is None or abs(d) >= SAME_EPS else "0",
            "image": img,
            "label": sa["label"],
            "a": preds_a[i],
            "b": preds_b[j],
        })
    warn = (a.get("normalization") or None) != (b.get("normalization") or None)
    if warn:
        log.warning("comparing results scored under different normalizations; use report.rescore=true")
    ma, mb = summary_metrics(a), summary_metrics(b)
    metric_rows = [(k, ma.get(k), mb.get(k), _delta(ma.get(k), mb.get(k))) for k in dict.fromkeys([*ma, *mb])]
    (conf_a, total_a), (conf_b, total_b) = _confusion_table(preds_a), _confusion_table(preds_b)
    return _env().get_template("comparison.html.j2").render(
        a=a, b=b, key=key, n_pairs=len(pairs), counts=compare_counts(a, b), warn=warn, metric_rows=metric_rows,
        confusions_a=conf_a, confusion_total_a=total_a, confusions_b=conf_b, confusion_total_b=total_b, rows=rows,
    )


# The pieces the studio (ocrft.studio) renders a page of samples with, so it and these
# reports share one diff, one thumbnail and one confusion table.


def macros() -> Any:
    """The jinja2 macros of _macros.html.j2 (diff, texts, image, confusions, head, legend)."""
    return _env().get_template("_macros.html.j2").module


def sample_images(paths: Sequence[Optional[str]], base_dirs: Sequence[Path]) -> list[dict]:
    """{"uri", "path"} thumbnails of image paths, as the report embeds them."""
    return _images(paths, base_dirs)


def sample_predictions(samples: list[dict], normalization: Optional[dict]) -> list[dict]:
    """{"text", "error", "segments"} per sample, aligned over the normalized (scored) text."""
    return _predictions(samples, normalizer(stored_normalization(normalization)))


def sample_tables(sample: dict) -> list:
    """A sample's tables cell by cell (ocrft.evaluation.table_diff) when TEDS scored it, else []."""
    return cell_diff(sample.get("prediction") or "", sample["label"]) if sample.get("teds") is not None else []


def top_confusions(predictions: Iterable[dict]) -> tuple[list, int]:
    """(the TOP_CONFUSIONS most frequent character edits, all edits) of sample_predictions."""
    return _confusion_table(predictions)
