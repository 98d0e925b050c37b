"""task=report: re-score a results file and render it as one self-contained HTML page.

    python -m ocrft task=report report.results=outputs/eval/.../results.json tracking=none
    python -m ocrft task=report report.results=base.json report.compare=finetuned.json

The page needs no network: images are embedded as downscaled JPEG data URIs, the CSS and
the (vanilla) JS are inline. Every text from a results file is HTML-escaped, and rows carry
only numbers in data attributes, so a label such as ``<script>`` stays text.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from ocrft import atomic
from ocrft.metrics import MetricSettings, metric_tags
from ocrft.normalize import normalizer, stored_normalization
from ocrft.results import load_results, rescore_results, write_results
from ocrft.runner import RunContext, TaskResult
from ocrft.validate import ConfigError

log = logging.getLogger(__name__)

# Thumbnail bounds: wide enough to read a text line, small enough that a 2,000-sample
# report stays a few tens of MB.
THUMB_MAX_W, THUMB_MAX_H = 640, 160
SAME_EPS = 1e-9  # CER differences below this count as "same"

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.2em;color:#222}
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.1em;margin:1em 0 .4em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}
th{background:#f2f2f2;text-align:left}th[data-key]{cursor:pointer;user-select:none;white-space:nowrap}
th[data-dir=asc]::after{content:" \\25B2"}th[data-dir=desc]::after{content:" \\25BC"}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.summary td{min-width:5em}
#samples{width:100%}#samples td.sample{width:100%}
.thumb{display:block;max-width:100%;border:1px solid #ddd;margin-bottom:4px}
.noimg{display:inline-block;padding:6px 10px;background:#eee;color:#777;border:1px dashed #aaa;margin-bottom:4px}
.t{display:grid;grid-template-columns:7.5em 1fr;gap:1px 8px}
.t .k{color:#888;font-size:12px}.t .v{white-space:pre-wrap;word-break:break-word;font-family:ui-monospace,monospace}
ins{background:#c8f7c5;text-decoration:none}del{background:#ffc9c9;color:#a00}
.sub-r{background:#ffe3b3;text-decoration:line-through;color:#a60}.sub-h{background:#ffd27a}
.err{color:#b00;font-weight:bold}.better{color:#070}.worse{color:#b00}
.controls{margin:.6em 0;display:flex;gap:1.2em;align-items:center;flex-wrap:wrap}
.legend{margin-bottom:.4em}.legend del,.legend ins,.legend span{padding:0 3px}
.metrics{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:4px;max-width:1000px}
.metrics div{border:1px solid #ddd;padding:3px 8px;display:flex;justify-content:space-between}
.metrics .k{color:#555}
"""

# Sorting reads numbers from data-* attributes; filtering reads each row's text once.
_JS = """
(function(){
var table=document.getElementById('samples');if(!table)return;
var tbody=table.tBodies[0],rows=Array.prototype.slice.call(tbody.rows);
rows.forEach(function(r){r._text=r.textContent.toLowerCase();});
function val(r,key,num){var v=r.getAttribute('data-'+key);if(!num)return v||'';
 return (v===null||v==='')?Infinity:parseFloat(v);}
table.querySelectorAll('th[data-key]').forEach(function(th){
 th.addEventListener('click',function(){
  var key=th.getAttribute('data-key'),num=th.getAttribute('data-type')==='num';
  var dir=th.getAttribute('data-dir')==='asc'?'desc':'asc';
  table.querySelectorAll('th[data-key]').forEach(function(h){h.removeAttribute('data-dir');});
  th.setAttribute('data-dir',dir);
  var sorted=rows.slice().sort(function(a,b){var x=val(a,key,num),y=val(b,key,num);
   var c=x<y?-1:x>y?1:0;if(dir==='desc')c=-c;return c||(val(a,'idx',true)-val(b,'idx',true));});
  var frag=document.createDocumentFragment();sorted.forEach(function(r){frag.appendChild(r);});
  tbody.appendChild(frag);});});
var q=document.getElementById('q'),boxes=document.querySelectorAll('input[data-only]');
var shown=document.getElementById('shown');
function apply(){var s=q.value.toLowerCase(),n=0;
 rows.forEach(function(r){var ok=!s||r._text.indexOf(s)>=0;
  boxes.forEach(function(b){if(b.checked&&r.getAttribute('data-'+b.getAttribute('data-only'))!=='1')ok=false;});
  r.hidden=!ok;if(ok)n++;});
 shown.textContent=n+' of '+rows.length+' rows shown';}
q.addEventListener('input',apply);boxes.forEach(function(b){b.addEventListener('change',apply);});apply();
})();
"""

_LEGEND = (
    '<div class="legend">diff of label and prediction: <del>a</del> = a missing · <ins>b</ins> = b added · '
    '<span class="sub-r">c</span><span class="sub-h">d</span> = c read as d</div>'
)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return _e(value if value is not None else "–")
    return f"{value:.4f}" if isinstance(value, float) else _e(value)


def _num_attr(value: Any) -> str:
    return repr(float(value)) if isinstance(value, (int, float)) and not isinstance(value, bool) else ""


def diff_html(reference: str, prediction: str) -> str:
    """Character diff of ``prediction`` against ``reference`` as escaped HTML, from the same
    Levenshtein alignment that CER counts."""
    from rapidfuzz.distance import Levenshtein

    out = []
    for op in Levenshtein.opcodes(reference, prediction):
        r, h = reference[op.src_start : op.src_end], prediction[op.dest_start : op.dest_end]
        if op.tag == "equal":
            out.append(_e(r))
        elif op.tag == "delete":
            out.append(f"<del>{_e(r)}</del>")
        elif op.tag == "insert":
            out.append(f"<ins>{_e(h)}</ins>")
        else:
            out.append(f'<span class="sub-r">{_e(r)}</span><span class="sub-h">{_e(h)}</span>')
    return "".join(out)


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
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.draft("RGB", (THUMB_MAX_W, THUMB_MAX_H))  # JPEG: decode at reduced size
            im = im.convert("RGBA")
            im.thumbnail((THUMB_MAX_W, THUMB_MAX_H))
            # Transparent PNGs would turn black in JPEG: flatten onto white.
            flat = Image.new("RGB", im.size, "white")
            flat.paste(im, mask=im.getchannel("A"))
            buf = io.BytesIO()
            flat.save(buf, "JPEG", quality=80)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        log.warning("report: cannot read image %s: %s", path, err)
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _images(samples: Iterable[dict], base_dirs: Sequence[Path]) -> list[str]:
    """The <img> (or placeholder) HTML of each sample; PIL decodes outside the GIL."""
    paths = [s.get("image_path") for s in samples]
    resolved = [_resolve(p, base_dirs) for p in paths]
    with ThreadPoolExecutor(max_workers=4) as pool:
        uris = list(pool.map(lambda p: thumbnail_uri(p) if p else None, resolved))
    return [
        f'<img class="thumb" src="{uri}" alt="{_e(p)}">'
        if uri
        else f'<span class="noimg">{"image not found: " + _e(p) if p else "no image"}</span>'
        for p, uri in zip(paths, uris)
    ]


def _summary_metrics(results: dict) -> dict:
    m = dict(results.get("metrics") or {})
    if not m:  # a Gemma-OCR seed file has only the headline numbers
        m = {"cer": results.get("overall_cer"), "char_f1": results.get("overall_f1")}
    return m


def _model_details(model: Any) -> str:
    # The structured description beside the display name (ocrft.provenance.describe_model).
    if not isinstance(model, dict):
        return ""
    keys = ("kind", "base", "adapter", "step", "endpoint", "remote_model", "source")
    details = ", ".join(f"{k} {_e(model[k])}" for k in keys if model.get(k) not in (None, ""))
    return f" ({details})" if details else ""


def _head(results: dict) -> str:
    norm = results.get("normalization") or {}
    flags = ", ".join(f"{_e(k)}={_e(v)}" for k, v in norm.items()) or "not recorded"
    return (
        f"model <b>{_e(results.get('model_name'))}</b>{_model_details(results.get('model'))} · "
        f"{_e(results.get('total_samples', len(results['samples'])))} "
        f"samples · {_e(results.get('timestamp'))} · normalization: {flags}"
    )


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{_CSS}</style></head><body>{body}<script>{_JS}</script></body></html>\n"
    )


def _controls(extra_boxes: str = "") -> str:
    return (
        '<div class="controls"><input id="q" type="search" placeholder="filter id / text…" size="30">'
        '<label><input type="checkbox" data-only="bad"> errors only</label>'
        f'{extra_boxes}<span id="shown"></span></div>{_LEGEND}'
    )


def _text_block(pairs: list[tuple[str, Optional[str]]]) -> str:
    """Label/value lines; a None value (the diff of a failed sample) leaves its line out."""
    lines = (f'<span class="k">{k}</span><span class="v">{v}</span>' for k, v in pairs if v is not None)
    return '<div class="t">' + "".join(lines) + "</div>"


def _pred_html(sample: dict, norm) -> tuple[str, Optional[str]]:
    """(escaped prediction, diff HTML) of one sample; failed samples show their error."""
    if sample.get("error"):
        return f'<span class="err">error: {_e(sample["error"])}</span>', None
    return _e(sample["prediction"]), diff_html(norm(sample["label"]), norm(sample["prediction"]))


def render_report_html(results: dict, base_dirs: Sequence[Path] = ()) -> str:
    """One self-contained HTML report of a results dict: summary, then one sortable and
    filterable row per sample with its image, label, prediction and character diff (over
    the normalized text that was scored). Relative image paths are looked up under the
    current directory, then under ``base_dirs``."""
    norm = normalizer(stored_normalization(results.get("normalization")))
    samples = results["samples"]
    metrics = _summary_metrics(results)
    summary = "".join(
        f'<div><span class="k">{_e(k)}</span><span class="num">{_fmt(v)}</span></div>' for k, v in metrics.items()
    )
    rows = []
    for i, (s, img) in enumerate(zip(samples, _images(samples, base_dirs))):
        pred, diff = _pred_html(s, norm)
        cer = s.get("cer_score")
        bad = "1" if s.get("error") or (cer or 0) > 0 else "0"
        rows.append(
            f'<tr data-idx="{i}" data-cer="{_num_attr(cer)}" data-f1="{_num_attr(s.get("f1_score"))}" data-bad="{bad}">'
            f'<td class="num">{i}</td><td>{_e(s.get("id"))}</td><td class="num">{_fmt(cer)}'
            + ('<br><span class="err">degenerate</span>' if s.get("degenerate") else "")
            + "</td>"
            f'<td class="num">{_fmt(s.get("f1_score"))}</td><td class="sample">{img}'
            + _text_block([("label", _e(s["label"])), ("prediction", pred), ("diff", diff)])
            + "</td></tr>"
        )
    body = (
        f"<h1>OCR report: {_e(results.get('model_name'))}</h1><p>{_head(results)}</p>"
        f'<h2>Metrics</h2><div class="metrics">{summary}</div><h2>Samples</h2>{_controls()}'
        '<table id="samples"><thead><tr><th data-key="idx" data-type="num">#</th><th>id</th>'
        '<th data-key="cer" data-type="num">CER</th><th data-key="f1" data-type="num">F1</th>'
        f'<th>image · label · prediction · diff</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )
    return _page(f"OCR report: {results.get('model_name')}", body)


def match_samples(a: list[dict], b: list[dict]) -> tuple[str, list[tuple[int, int]], list[int], list[int]]:
    """Pair samples of two results by ``id`` when every sample has a unique one, else by
    ``image_path``. Returns (key used, index pairs, unmatched indices of a, of b)."""
    ids_a, ids_b = [s.get("id") for s in a], [s.get("id") for s in b]
    usable = all(x not in (None, "") for x in ids_a + ids_b) and len(set(ids_a)) == len(a) and len(set(ids_b)) == len(b)
    key = "id" if usable else "image_path"
    index_b: dict = {}
    for j, s in enumerate(b):
        if s.get(key) not in (None, ""):
            index_b.setdefault(s.get(key), j)  # duplicates: the first one wins
    pairs, only_a, used = [], [], set()
    for i, s in enumerate(a):
        j = index_b.get(s.get(key)) if s.get(key) not in (None, "") else None
        if j is None or j in used:
            only_a.append(i)
        else:
            pairs.append((i, j))
            used.add(j)
    return key, pairs, only_a, [j for j in range(len(b)) if j not in used]


def compare_counts(a: dict, b: dict) -> dict[str, int]:
    """How many matched samples B (the second file) reads better, worse or the same as A."""
    _, pairs, only_a, only_b = match_samples(a["samples"], b["samples"])
    counts = {"better": 0, "worse": 0, "same": 0, "unscored": 0, "only_a": len(only_a), "only_b": len(only_b)}
    for i, j in pairs:
        ca, cb = a["samples"][i].get("cer_score"), b["samples"][j].get("cer_score")
        if ca is None or cb is None:
            counts["unscored"] += 1
        else:
            counts["same" if abs(cb - ca) < SAME_EPS else "better" if cb < ca else "worse"] += 1
    return counts


def _diff(a: Any, b: Any) -> Optional[float]:
    return b - a if isinstance(a, float) and isinstance(b, float) else None


def render_comparison_html(a: dict, b: dict, base_dirs: Sequence[Path] = ()) -> str:
    """One self-contained HTML page comparing two results dicts sample by sample: CER of A
    and B, delta (B - A, negative = B better), both predictions' diffs; sorted by delta,
    B's worst regressions first."""
    norm_a, norm_b = (normalizer(stored_normalization(r.get("normalization"))) for r in (a, b))
    key, pairs, only_a, only_b = match_samples(a["samples"], b["samples"])
    counts = compare_counts(a, b)
    ma, mb = _summary_metrics(a), _summary_metrics(b)
    summary = "".join(
        f"<tr><th>{_e(k)}</th><td class='num'>{_fmt(ma.get(k))}</td><td class='num'>{_fmt(mb.get(k))}</td>"
        f"<td class='num'>{_fmt(_diff(ma.get(k), mb.get(k)))}</td></tr>"
        for k in dict.fromkeys([*ma, *mb])
    )

    def delta(p: tuple[int, int]) -> float:
        ca, cb = a["samples"][p[0]].get("cer_score"), b["samples"][p[1]].get("cer_score")
        return float("-inf") if ca is None or cb is None else cb - ca

    pairs.sort(key=delta, reverse=True)
    # The image of a pair: A's path, or B's when A's file did not record one.
    images = _images(
        [{"image_path": a["samples"][i].get("image_path") or b["samples"][j].get("image_path")} for i, j in pairs],
        base_dirs,
    )
    rows = []
    for n, ((i, j), img) in enumerate(zip(pairs, images)):
        sa, sb = a["samples"][i], b["samples"][j]
        (pa, da), (pb, db) = _pred_html(sa, norm_a), _pred_html(sb, norm_b)
        ca, cb = sa.get("cer_score"), sb.get("cer_score")
        d = cb - ca if ca is not None and cb is not None else None
        cls = "" if d is None or abs(d) < SAME_EPS else ("better" if d < 0 else "worse")
        bad = "1" if sa.get("error") or sb.get("error") or (ca or 0) > 0 or (cb or 0) > 0 else "0"
        changed = "1" if d is None or abs(d) >= SAME_EPS else "0"
        rows.append(
            f'<tr data-idx="{n}" data-cera="{_num_attr(ca)}" data-cerb="{_num_attr(cb)}" data-delta="{_num_attr(d)}" '
            f'data-bad="{bad}" data-changed="{changed}"><td class="num">{n}</td><td>{_e(sa.get(key))}</td>'
            f'<td class="num">{_fmt(ca)}</td><td class="num">{_fmt(cb)}</td><td class="num {cls}">{_fmt(d)}</td>'
            f'<td class="sample">{img}'
            + _text_block([("label", _e(sa["label"])), ("A", pa), ("A diff", da), ("B", pb), ("B diff", db)])
            + "</td></tr>"
        )
    warn = ""
    if (a.get("normalization") or None) != (b.get("normalization") or None):
        log.warning("comparing results scored under different normalizations; use report.rescore=true")
        warn = '<p class="err">A and B were scored under different normalizations: use report.rescore=true</p>'
    head = (
        f"<p>A: {_head(a)}</p><p>B: {_head(b)}</p>{warn}<p>matched by {key}: {len(pairs)} samples · "
        f'B <span class="better">better on {counts["better"]}</span>, <span class="worse">worse on '
        f'{counts["worse"]}</span>, same on {counts["same"]}, unscored {counts["unscored"]} · only in A: '
        f'{counts["only_a"]}, only in B: {counts["only_b"]}</p>'
    )
    body = (
        f"<h1>OCR comparison: {_e(a.get('model_name'))} (A) vs {_e(b.get('model_name'))} (B)</h1>{head}"
        '<h2>Metrics</h2><table class="summary"><tr><th></th><th>A</th><th>B</th><th>B − A</th></tr>'
        f"{summary}</table>"
        "<h2>Samples</h2>"
        + _controls('<label><input type="checkbox" data-only="changed"> changed only</label>')
        + '<table id="samples"><thead><tr><th data-key="idx" data-type="num">#</th><th>'
        + _e(key)
        + '</th><th data-key="cera" data-type="num">CER A</th><th data-key="cerb" data-type="num">CER B</th>'
        '<th data-key="delta" data-type="num" data-dir="desc">Δ CER</th><th>image · label · predictions</th></tr>'
        f'</thead><tbody>{"".join(rows)}</tbody></table>'
    )
    return _page(f"OCR comparison: {a.get('model_name')} vs {b.get('model_name')}", body)


def _numeric(metrics: dict, prefix: str) -> dict[str, float]:
    return {
        f"{prefix}{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def run_report(cfg, ctx: RunContext) -> TaskResult:
    """task=report: load report.results (re-score it under eval.normalization unless
    report.rescore=false), write the HTML report, or a comparison with report.compare."""
    rc = cfg.report
    if not rc.results:
        raise ConfigError("report.results is not set: pass report.results=path/to/results.json")
    settings = MetricSettings.from_eval(cfg.eval)  # CER unit and sacrebleu options of the re-score
    paths: dict[str, str] = {}
    loaded = []
    for name, path in (("results", rc.results), ("compare_results", rc.compare)):
        if not path:
            continue
        results = load_results(path)
        if rc.rescore:
            log.info("re-scoring %s with normalization %s", path, dict(cfg.eval.normalization))
            results = rescore_results(results, cfg.eval.normalization, settings, cfg.eval.json_target)
            paths[name] = str(write_results(ctx.run_dir / f"{name}.json", results))
        else:
            paths[name] = str(path)
        loaded.append((results, Path(path).resolve().parent))

    output = Path(rc.output) if rc.output else ctx.run_dir / "report.html"
    (a, dir_a), *rest = loaded
    if rest:
        (b, dir_b), = rest
        page = render_comparison_html(a, b, base_dirs=(dir_a, dir_b))
        metrics = {**_numeric(_summary_metrics(a), "report/a/"), **_numeric(_summary_metrics(b), "report/b/")}
        metrics.update(_numeric(compare_counts(a, b), "report/"))
    else:
        page = render_report_html(a, base_dirs=(dir_a,))
        metrics = _numeric(_summary_metrics(a), "report/")
    paths["report"] = str(atomic.write_text(output, page))
    log.info("report: %s (%.1f MB)", output, len(page) / 1e6)
    ctx.tracker.log_metrics(metrics)
    if rc.rescore:  # the re-scored numbers' CER unit and BLEU/TER signatures
        ctx.tracker.set_tags(metric_tags(settings, "report/"))
    for p in paths.values():
        ctx.tracker.log_artifact(p)
    return TaskResult(metrics=metrics, paths=paths)
