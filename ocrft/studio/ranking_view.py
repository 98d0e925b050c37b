"""The Ranking tab: which pages and lines of a pre-filled export to correct first.

It reads the ``ranking.jsonl`` that ``task=predict predict.rank=true`` wrote
(ocrft.evaluation.ranking; docs/archive.md). Pages are shown least certain first, each with
its lines least certain first. A line shows the crop the model read (served from /files, so
only crops under the studio roots appear), the model's reading, its certainty as a bar, and
the signals behind it.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Optional, Sequence

from ocrft.studio.runs import file_link

RANKING = "ranking.jsonl"


def ranking_choices(runs: Sequence[dict]) -> list[tuple[str, str]]:
    """(label, path) of every ranking the runs wrote, newest run first."""
    out = []
    for r in sorted(runs, key=lambda r: str(r["start"] or ""), reverse=True):
        path = r.get("ranking")
        if path and Path(path).is_file():
            out.append((f"{Path(r['run_dir']).name} · {Path(path).name}", path))
    return out


def load_ranking(path: str | Path) -> list[dict]:
    """The pages of a ranking.jsonl, in their order."""
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _num(value: Optional[float], digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def ranking_html(pages: Sequence[dict], *, max_pages: int) -> str:
    """The first ``max_pages`` pages and their lines as one table."""
    rows = []
    for page in pages[:max_pages]:
        rows.append(f'<tr class="page"><th colspan="7">#{page["page_rank"]} {html.escape(str(page["page"]))} '
                    f'<span class="k">certainty {_num(page["certainty"])} · {len(page["lines"])} lines</span></th></tr>')  # fmt: skip
        for line in page["lines"]:
            image = line.get("image")
            thumb = f'<img class="thumb" src="{html.escape(file_link(image))}" alt="">' if image else ""
            width = max(0.0, min(1.0, line.get("certainty") or 0.0)) * 100
            rows.append(
                f'<tr><td class="num">{line["line_rank"]}</td><td>{html.escape(str(line["line"]))}</td>'
                f"<td>{thumb}</td><td class=\"t\">{html.escape(line.get('text') or '')}</td>"
                f'<td><div class="bar" style="width:{width:.0f}px"></div>{_num(line.get("certainty"))}</td>'
                f'<td class="num">{_num(line.get("confidence"))} / {_num(line.get("min_logprob"), 2)}</td>'
                f'<td class="num">{_num(line.get("disagreement"))}</td></tr>'
            )
    more = f"<p>{len(pages) - max_pages} more pages in the file</p>" if len(pages) > max_pages else ""
    head = ("<tr><th>line rank</th><th>line</th><th>image</th><th>reading</th><th>certainty</th>"
            "<th>confidence / min log-prob</th><th>disagreement</th></tr>")  # fmt: skip
    return f'<div class="ocrft"><table>{head}{"".join(rows)}</table>{more}</div>'


def ranking_tab(studio_cfg: Any, choices_fn: Any) -> tuple:
    """The Ranking tab (in the current Blocks); ``choices_fn()`` lists (label, path) of the
    rankings under the roots. Returns its (refresh, inputs, outputs) for page load."""
    import gradio as gr

    from ocrft.studio.results_view import under_roots

    roots, page_size = list(studio_cfg.roots), int(studio_cfg.page_size)

    def show(path: Optional[str]) -> str:
        if not path:
            return "<p>pick a ranking (task=predict predict.rank=true on a PAGE/ALTO export writes one)</p>"
        allowed = under_roots(path, roots)
        if allowed is None or not allowed.is_file():
            raise gr.Error(f"not a ranking under the studio roots ({', '.join(roots)}): {path}")
        try:
            return ranking_html(load_ranking(allowed), max_pages=page_size)
        except (ValueError, KeyError) as err:  # not a ranking.jsonl
            raise gr.Error(f"{path}: not a ranking file ({err})") from err

    with gr.Row():
        source = gr.Dropdown([], label="ranking (pick, or type a path under the roots)", allow_custom_value=True,
                             scale=4, elem_id="ranking-file")  # fmt: skip
        refresh = gr.Button("refresh list", scale=1)
    table = gr.HTML(elem_id="ranking-table")
    source.change(show, [source], [table])

    def choices():
        return gr.update(choices=choices_fn())

    refresh.click(choices, None, source)
    return choices, None, source
