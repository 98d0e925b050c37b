"""The Results tab: one results.json read as the OCR itself: the metrics header, a page of
samples (image, label, prediction, character diff; tables cell by cell, olmOCR-Bench checks)
sorted and filtered, the most frequent
character confusions and a CER histogram.

The diff, thumbnails and confusion table are the HTML report's (ocrft.evaluation.html).
A file is aligned once when opened (cached by path and mtime); a page then renders only
its own ``page_size`` samples, so 10,000 samples stay responsive.
"""

from __future__ import annotations

import functools
import html
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from ocrft.evaluation.html import macros, sample_images, sample_predictions, sample_tables, summary_metrics, top_confusions
from ocrft.evaluation.results import load_results

log = logging.getLogger(__name__)

SORTS = ("CER, worst first", "CER, best first", "file order")
HIST_BINS = 10


@dataclass
class Loaded:
    """A results file with what every page needs: its folder (for relative image paths) and
    each sample's alignment."""

    path: Path
    results: dict
    predictions: list[dict]  # sample_predictions: {"text", "error", "segments"}
    confusions: list
    confusion_total: int


def under_roots(path: str | Path, roots: Sequence[str | Path]) -> Optional[Path]:
    """``path`` resolved (symlinks and .. included), or None when it is outside every root."""
    from ocrft.studio.override_policy import within

    return within(path, [Path(r) for r in roots], Path.cwd())


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int) -> Loaded:
    results = load_results(path)
    preds = sample_predictions(results["samples"], results.get("normalization"))
    confusions, total = top_confusions(preds)
    return Loaded(Path(path), results, preds, confusions, confusion_total=total)


def load(path: str | Path) -> Loaded:
    """The results file at ``path``, aligned once per version of the file."""
    p = Path(path).resolve()
    return _load(str(p), p.stat().st_mtime_ns)


def _is_error(sample: dict) -> bool:
    return bool(sample.get("error")) or (sample.get("cer_score") or 0) > 0


def select(samples: Sequence[dict], query: str = "", errors_only: bool = False, sort: str = SORTS[0]) -> list[int]:
    """Indices of the samples whose id, label or prediction contains ``query``
    (case-insensitive), only the misread or failed ones with ``errors_only``, in ``sort`` order
    (a sample without a CER sorts as the worst)."""
    q = query.strip().lower()
    keep = [
        i for i, s in enumerate(samples)
        if (not errors_only or _is_error(s))
        and (not q or q in f"{s.get('id', '')}\n{s.get('label', '')}\n{s.get('prediction') or ''}".lower())
    ]  # fmt: skip
    if sort == SORTS[2]:
        return keep

    def cer(i: int) -> float:
        value = samples[i].get("cer_score")
        return math.inf if value is None else float(value)

    return sorted(keep, key=cer, reverse=sort == SORTS[0])


def page_of(indices: Sequence[int], page: int, page_size: int) -> tuple[list[int], int, int]:
    """(the indices on ``page`` (1-based, clamped), that page, the number of pages)."""
    n_pages = max(1, math.ceil(len(indices) / max(1, page_size)))
    page = min(max(1, int(page or 1)), n_pages)
    start = (page - 1) * page_size
    return list(indices[start : start + page_size]), page, n_pages


def header_html(results: dict) -> str:
    """Model, sample count, normalization and the corpus metrics, as the report heads its page."""
    metrics = summary_metrics(results)
    cells = "".join(
        f"<div><span class='k'>{html.escape(str(k))}</span> <b>{v:.4f}</b></div>" if isinstance(v, float)
        else f"<div><span class='k'>{html.escape(str(k))}</span> <b>{html.escape(str(v))}</b></div>"
        for k, v in metrics.items() if v is not None and not isinstance(v, (dict, list))
    )  # fmt: skip
    return f"<div class='ocrft'><p>{macros().head(results, len(results['samples']))}</p><div class='metrics'>{cells}</div></div>"


def page_html(loaded: Loaded, indices: Sequence[int]) -> str:
    """A table of the samples at ``indices``: number, id, CER, image, label, prediction, diff."""
    m = macros()
    samples = loaded.results["samples"]
    images = sample_images([samples[i].get("image_path") for i in indices], [loaded.path.parent])
    rows = []
    for i, img in zip(indices, images):
        s = samples[i]
        cer = s.get("cer_score")
        texts = m.texts(s["label"], [("prediction", "diff", loaded.predictions[i])])
        texts += m.table_diff(sample_tables(s)) + m.checks(s.get("checks") or [])  # tables by cell, olmOCR checks
        rows.append(
            f"<tr data-index='{i}'><td class='num'>{i}</td><td>{html.escape(str(s.get('id', '')))}</td>"
            f"<td class='num cer'>{'–' if cer is None else f'{cer:.4f}'}</td><td class='sample'>{m.image(img)}{texts}</td></tr>"
        )
    if not rows:
        return "<div class='ocrft'><p>no sample matches</p></div>"
    head = "<tr><th>#</th><th>id</th><th>CER</th><th>image · label · prediction · diff</th></tr>"
    return f"<div class='ocrft'>{m.legend()}<table id='samples'>{head}{''.join(rows)}</table></div>"


def confusions_html(loaded: Loaded) -> str:
    return f"<div class='ocrft'>{macros().confusions(loaded.confusions, loaded.confusion_total)}</div>"


def histogram(cers: Sequence[Optional[float]], bins: int = HIST_BINS) -> list[tuple[float, float, int]]:
    """(low, high, count) of the per-sample CERs in ``bins`` equal bins over [0, max(1, worst)];
    the last bin includes its upper edge."""
    values = [float(c) for c in cers if c is not None]
    top = max([1.0, *values])
    width = top / bins
    counts = [0] * bins
    for v in values:
        counts[min(int(v / width), bins - 1)] += 1
    return [(k * width, (k + 1) * width, n) for k, n in enumerate(counts)]


def histogram_html(loaded: Loaded) -> str:
    """The CER histogram as plain HTML bars (no plotting library, nothing fetched)."""
    bins = histogram([s.get("cer_score") for s in loaded.results["samples"]])
    peak = max((n for _, _, n in bins), default=0) or 1
    rows = "".join(
        f"<tr><td class='num'>{lo:.2f}–{hi:.2f}</td><td><div class='bar' style='width:{200 * n / peak:.0f}px'></div></td>"
        f"<td class='num'>{n}</td></tr>"
        for lo, hi, n in bins
    )
    return f"<div class='ocrft'><table class='hist'><tr><th>CER</th><th></th><th>samples</th></tr>{rows}</table></div>"


def render(path: str, query: str, errors_only: bool, sort: str, *, page: int, page_size: int) -> tuple[str, str, str, str, int, str]:
    """Everything the tab shows for one file and one view: header, confusions, histogram,
    the page's table, the (clamped) page number and a status line."""
    loaded = load(path)
    indices = select(loaded.results["samples"], query, errors_only, sort)
    shown, page, n_pages = page_of(indices, page, page_size)
    status = f"{len(indices)} of {len(loaded.results['samples'])} samples · page {page} of {n_pages}"
    return header_html(loaded.results), confusions_html(loaded), histogram_html(loaded), page_html(loaded, shown), page, status


def results_tab(studio_cfg: Any, choices_fn: Any) -> tuple:
    """The Results tab (in the current Blocks); ``choices_fn()`` lists (label, path) of the
    results files under the roots. Returns its (refresh, inputs, outputs) for page load."""
    import gradio as gr

    roots, page_size = list(studio_cfg.roots), int(studio_cfg.page_size)

    def show(path: Optional[str], query: str, errors_only: bool, sort: str, page: float):
        if not path:
            return "<p>pick a results file</p>", "", "", "", 1, ""
        allowed = under_roots(path, roots)
        if allowed is None or not allowed.is_file():
            raise gr.Error(f"not a results file under the studio roots ({', '.join(roots)}): {path}")
        try:
            return render(str(allowed), query, errors_only, sort, page=int(page or 1), page_size=page_size)
        except ValueError as err:  # DataError: not a results file
            raise gr.Error(str(err)) from err

    with gr.Row():
        source = gr.Dropdown([], label="results file (pick, or type a path under the roots)", allow_custom_value=True, scale=4, elem_id="results-file")
        refresh = gr.Button("refresh list", scale=1)
    header = gr.HTML(elem_id="results-header")
    with gr.Row():
        query = gr.Textbox(label="filter", placeholder="id / label / prediction text", elem_id="results-filter")
        errors_only = gr.Checkbox(label="errors only", elem_id="results-errors")
        sort = gr.Radio(list(SORTS), value=SORTS[2], label="sort", elem_id="results-sort")
        page = gr.Number(value=1, precision=0, minimum=1, label="page", elem_id="results-page")
        with gr.Column(min_width=120):
            prev = gr.Button("◀ previous", size="sm", elem_id="results-prev")
            nxt = gr.Button("next ▶", size="sm", elem_id="results-next")
    status = gr.Markdown(elem_id="results-status")
    table = gr.HTML(elem_id="results-table")
    with gr.Row():
        with gr.Column():
            gr.Markdown("#### Most frequent character confusions")
            confusions = gr.HTML(elem_id="results-confusions")
        with gr.Column():
            gr.Markdown("#### CER histogram")
            hist = gr.HTML(elem_id="results-hist")

    inputs = [source, query, errors_only, sort, page]
    outputs = [header, confusions, hist, table, page, status]
    for trigger in (source.change, query.submit, errors_only.change, sort.change, page.submit):
        trigger(show, inputs, outputs)
    for button, step in ((prev, -1), (nxt, 1)):
        # show() clamps the page, so stepping past either end stays on it
        button.click(lambda p, q, e, s, n, step=step: show(p, q, e, s, page=int(n or 1) + step), inputs, outputs)

    def choices():
        return gr.update(choices=choices_fn())

    refresh.click(choices, None, source)
    return choices, None, source
