"""The Compare tab: two results files on the same test set: metric deltas, how many samples
B reads better / worse / the same as A, then the pairs B got worse first, diffs side by side.

Pairing and counting are ocrft.evaluation.comparison's, the diffs and thumbnails
ocrft.evaluation.html's (the comparison report's), so both say the same thing.
"""

from __future__ import annotations

import html
import logging
import math
from typing import Any, Optional, Sequence

from ocrft.evaluation.comparison import SAME_EPS, compare_counts, match_samples
from ocrft.evaluation.html import macros, sample_images, summary_metrics
from ocrft.studio.results_view import Loaded, load, page_of, under_roots

log = logging.getLogger(__name__)


def metric_deltas(a: dict, b: dict) -> list[tuple[str, Any, Any, Optional[float]]]:
    """(metric, A, B, B - A) for every corpus metric either file has; delta None unless both are numbers."""
    ma, mb = summary_metrics(a), summary_metrics(b)
    rows = []
    for k in dict.fromkeys([*ma, *mb]):
        va, vb = ma.get(k), mb.get(k)
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (va, vb))
        rows.append((k, va, vb, float(vb) - float(va) if numeric else None))
    return rows


def worse_first(a: dict, b: dict) -> list[tuple[int, int, Optional[float]]]:
    """(index in A, index in B, CER delta B - A) of the matched samples, the biggest
    regressions first; unscored pairs (no CER) go first too, as the report sorts them."""
    _, pairs, _, _ = match_samples(a["samples"], b["samples"])
    out = []
    for i, j in pairs:
        ca, cb = a["samples"][i].get("cer_score"), b["samples"][j].get("cer_score")
        out.append((i, j, None if ca is None or cb is None else cb - ca))
    return sorted(out, key=lambda p: math.inf if p[2] is None else p[2], reverse=True)


def _fmt(v: Any) -> str:
    return "–" if v is None else f"{v:+.4f}" if isinstance(v, float) else html.escape(str(v))


def summary_html(a: dict, b: dict) -> str:
    """The metric deltas table and the better / worse / same counts."""
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td class='num'>{_fmt(va).lstrip('+')}</td><td class='num'>{_fmt(vb).lstrip('+')}</td>"
        f"<td class='num'>{_fmt(d)}</td></tr>"
        for k, va, vb, d in metric_deltas(a, b) if not isinstance(va, (dict, list)) and not isinstance(vb, (dict, list))
    )  # fmt: skip
    c = compare_counts(a, b)
    counts = (
        f"<p class='counts'>B reads <b class='better'>{c['better']} better</b> · <b class='worse'>{c['worse']} worse</b>"
        f" · <b>{c['same']} the same</b> than A ({c['unscored']} unscored, {c['only_a']} only in A, {c['only_b']} only in B)</p>"
    )
    warn = ""
    if (a.get("normalization") or None) != (b.get("normalization") or None):
        warn = "<p class='err'>the files were scored under different normalizations: re-score them with task=report</p>"
    m = macros()
    heads = f"<p>A: {m.head(a, len(a['samples']))}<br>B: {m.head(b, len(b['samples']))}</p>"
    table = f"<table id='deltas'><tr><th>metric</th><th>A</th><th>B</th><th>B − A</th></tr>{rows}</table>"
    return f"<div class='ocrft'>{heads}{counts}{warn}{table}</div>"


def pairs_html(la: Loaded, lb: Loaded, pairs: Sequence[tuple[int, int, Optional[float]]]) -> str:
    """One row per pair: its CERs and delta, the image, and A's and B's diffs side by side."""
    m = macros()
    sa, sb = la.results["samples"], lb.results["samples"]
    images = sample_images(
        [sa[i].get("image_path") or sb[j].get("image_path") for i, j, _ in pairs], [la.path.parent, lb.path.parent]
    )
    rows = []
    for (i, j, d), img in zip(pairs, images):
        cls = "" if d is None or abs(d) < SAME_EPS else ("better" if d < 0 else "worse")
        cer_a, cer_b = sa[i].get("cer_score"), sb[j].get("cer_score")
        rows.append(
            f"<tr class='{cls}'><td>{html.escape(str(sa[i].get('id', '')))}</td>"
            f"<td class='num'>{_fmt(cer_a).lstrip('+')}</td><td class='num'>{_fmt(cer_b).lstrip('+')}</td>"
            f"<td class='num delta {cls}'>{_fmt(d)}</td>"
            f"<td>{m.image(img)}{m.texts(sa[i]['label'], [('A', 'diff A', la.predictions[i])])}</td>"
            f"<td>{m.texts(sb[j]['label'], [('B', 'diff B', lb.predictions[j])])}</td></tr>"
        )
    if not rows:
        return "<div class='ocrft'><p>no matched samples</p></div>"
    head = "<tr><th>id</th><th>CER A</th><th>CER B</th><th>B − A</th><th>A</th><th>B</th></tr>"
    return f"<div class='ocrft'>{m.legend()}<table id='pairs'>{head}{''.join(rows)}</table></div>"


def render(path_a: str, path_b: str, changed_only: bool, page: int, *, page_size: int) -> tuple[str, str, int, str]:
    """Summary, the page's pairs (worst regressions first), the clamped page, a status line."""
    la, lb = load(path_a), load(path_b)
    pairs = worse_first(la.results, lb.results)
    if changed_only:
        pairs = [p for p in pairs if p[2] is None or abs(p[2]) >= SAME_EPS]
    shown, page, n_pages = page_of(range(len(pairs)), page, page_size)
    status = f"{len(pairs)} pairs · page {page} of {n_pages} · B's regressions first"
    return summary_html(la.results, lb.results), pairs_html(la, lb, [pairs[k] for k in shown]), page, status


def compare_tab(studio_cfg: Any, choices_fn: Any) -> tuple:
    """The Compare tab (in the current Blocks); returns its (refresh choices, inputs, outputs)."""
    import gradio as gr

    roots, page_size = list(studio_cfg.roots), int(studio_cfg.page_size)

    def show(path_a: Optional[str], path_b: Optional[str], changed_only: bool, page: float):
        if not (path_a and path_b):
            return "<p>pick two results files of the same test set</p>", "", 1, ""
        allowed = [under_roots(p, roots) for p in (path_a, path_b)]
        for p, ok in zip((path_a, path_b), allowed):
            if ok is None or not ok.is_file():
                raise gr.Error(f"not a results file under the studio roots ({', '.join(roots)}): {p}")
        try:
            return render(str(allowed[0]), str(allowed[1]), changed_only, int(page or 1), page_size=page_size)
        except ValueError as err:
            raise gr.Error(str(err)) from err

    with gr.Row():
        a = gr.Dropdown([], label="A (e.g. before training)", allow_custom_value=True, elem_id="compare-a")
        b = gr.Dropdown([], label="B (e.g. after training)", allow_custom_value=True, elem_id="compare-b")
        refresh = gr.Button("refresh list", scale=0)
    with gr.Row():
        changed_only = gr.Checkbox(label="changed only", elem_id="compare-changed")
        page = gr.Number(value=1, precision=0, minimum=1, label="page", elem_id="compare-page")
        go = gr.Button("compare", variant="primary", elem_id="compare-go")
    summary = gr.HTML(elem_id="compare-summary")
    status = gr.Markdown(elem_id="compare-status")
    table = gr.HTML(elem_id="compare-table")
    inputs, outputs = [a, b, changed_only, page], [summary, table, page, status]
    for trigger in (go.click, changed_only.change, page.submit):
        trigger(show, inputs, outputs)

    def choices():
        options = choices_fn()
        return gr.update(choices=options), gr.update(choices=options)

    refresh.click(choices, None, [a, b])
    return choices, None, [a, b]
