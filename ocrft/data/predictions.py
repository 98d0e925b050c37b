"""Another engine's output as the predictions for ground-truth records (``model=predictions``).

Users hold Tesseract, kraken, Calamari or Transkribus HTR output for their test pages and
want it scored with the same metrics and report as a fine-tune. ``model.path`` is one of
(``SOURCES``, chosen by what is on disk):

- ``jsonl``: a JSONL file of ``{"id", "text"}`` rows, one per record id (any engine, any
  data format);
- ``line_folder``: a folder with ``X<suffix>`` files (``model.predictions_suffix``, default
  ``.pred.txt``) for the line folder's ``X.gt.txt``; the prediction of record ``doc1/0001``
  is ``<model.path>/doc1/0001<suffix>``, read as UTF-8 with only the final newline stripped
  (the ``.gt.txt`` rule), so model.path may be the data folder itself or a parallel tree;
- ``pages``: a folder (or one file) of PAGE-XML or ALTO written by the engine, matched to
  ground truth prepared by ``task=prepare data=page_xml|alto`` (see
  :mod:`ocrft.data.page_predictions`);
- ``olmocr``: an olmOCR-Bench candidate folder, ``<pdf>_pg<page>_repeat<k>.md`` for the pages
  of ``data=olmocr_bench``; the first repeat is the prediction, all of them are scored.

A record with no prediction is scored as an empty prediction (the engine read nothing);
such records and the predictions that match no record are counted and named
(:meth:`Matched.unmatched`), never dropped in silence.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Callable, Sequence

from ocrft.data.line_folder import read_line_text
from ocrft.data.matched import Matched
from ocrft.data.record import DataError, Record

log = logging.getLogger(__name__)



def match_predictions(records: Sequence[Record], path: str | Path, suffix: str = ".pred.txt",
                      match: str = "auto") -> Matched:
    """Read an engine's predictions from ``path`` and align them with ``records``.

    Args:
        records: the ground truth being scored (one split).
        path: ``model.path``: a JSONL file, a folder of ``X<suffix>`` files, or PAGE/ALTO files.
        suffix: ``model.predictions_suffix``.
        match: ``model.predictions_match``: auto, id or position (PAGE/ALTO lines only).

    Raises:
        DataError: naming the file (and line) for a missing path, an unreadable or malformed
            prediction file, or a folder holding no predictions.
    """
    source = Path(path).expanduser()
    if not source.exists():
        raise DataError("model.path: predictions not found", source)
    kind = _kind(source, suffix)
    log.info("reading %s predictions from %s for %d records", kind, source, len(records))
    matched = SOURCES[kind](records, source, suffix, match)
    matched.kind = kind
    if records and len(matched.missing_ids) == len(records):
        # every line scored as empty would be a CER of 1 that measures nothing but the naming
        extra = f"; prediction ids look like {matched.extra_ids[:3]}" if matched.extra_ids else ""
        raise DataError(f"no prediction matches any of the {len(records)} records (record ids look like "
                        f"{[r.id for r in records[:3]]}{extra})", source)  # fmt: skip
    if matched.missing_ids:
        log.warning("%d of %d records have no prediction and score as empty (e.g. %s)",
                    len(matched.missing_ids), len(records), ", ".join(matched.missing_ids[:3]))
    if matched.extra_ids:
        log.warning("%d predictions match no record of this split (e.g. %s)",
                    len(matched.extra_ids), ", ".join(matched.extra_ids[:3]))
    return matched


def _kind(source: Path, suffix: str) -> str:
    from ocrft.data.page_predictions import is_page_file

    if source.is_file():
        return "pages" if source.suffix.lower() == ".xml" else "jsonl"
    if next(source.rglob(f"*{suffix}"), None) is not None:
        return "line_folder"
    if any(_CANDIDATE.match(p.name) for p in source.rglob("*.md")):
        return "olmocr"
    if any(p.suffix.lower() == ".xml" and is_page_file(p) for p in source.rglob("*")):
        return "pages"
    raise DataError(f"no predictions here: no *{suffix} files (model.predictions_suffix) and no PAGE/ALTO files",
                    source)


# --- predictions keyed by record id ----------------------------------------------------------


def _by_id(records: Sequence[Record], predictions: dict[str, str]) -> Matched:
    ids = {r.id for r in records}
    matched = Matched(texts=[predictions.get(r.id, "") for r in records])
    matched.missing_ids = [r.id for r in records if r.id not in predictions]
    matched.extra_ids = [i for i in predictions if i not in ids]
    matched.matched_by["id"] = len(records) - len(matched.missing_ids)
    return matched


def _from_text_files(records: Sequence[Record], source: Path, suffix: str, match: str) -> Matched:
    files = {p.relative_to(source).as_posix()[: -len(suffix)]: p for p in source.rglob(f"*{suffix}") if p.is_file()}
    ids = {r.id for r in records}
    return _by_id(records, {i: read_line_text(p) if i in ids else "" for i, p in files.items()})


def read_jsonl_predictions(path: Path) -> dict[str, str]:
    """A JSONL file of ``{"id", "text"}`` rows -> {id: text}; blank lines are passed over.

    Raises:
        DataError: naming the file and line for bad UTF-8, malformed JSON, a missing or
            non-string ``id``/``text``, or an id given twice.
    """
    out: dict[str, str] = {}
    for lineno, raw in enumerate(path.read_bytes().removeprefix(b"\xef\xbb\xbf").split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise DataError(f"invalid UTF-8 byte 0x{raw[e.start]:02x}; save the file as UTF-8", path, lineno) from None
        except json.JSONDecodeError as e:
            raise DataError(f"malformed JSON at column {e.colno}: {e.msg}", path, lineno) from None
        if not isinstance(row, dict):
            raise DataError(f'expected a JSON object {{"id", "text"}}, got {type(row).__name__}', path, lineno)
        rid, text = row.get("id"), row.get("text")
        if isinstance(rid, bool) or not isinstance(rid, (str, int)) or rid == "":
            raise DataError(f"'id' must be a non-empty string, got {rid!r:.40}", path, lineno)
        if not isinstance(text, str):
            raise DataError(f"'text' must be a string, got {type(text).__name__}", path, lineno)
        if str(rid) in out:
            raise DataError(f"duplicate id {str(rid)!r}", path, lineno)
        out[str(rid)] = text
    return out


def _from_jsonl(records: Sequence[Record], source: Path, suffix: str, match: str) -> Matched:
    return _by_id(records, read_jsonl_predictions(source))


_CANDIDATE = re.compile(r"^(?P<base>.+)_pg(?P<page>\d+)_repeat(?P<repeat>\d+)\.md$")


def _read_markdown(path: Path) -> str:
    # as written, final newline included: the benchmark reads the file whole, and its
    # last_n checks count that newline (as a space, after whitespace collapse)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"invalid UTF-8 at byte {e.start}; save the file as UTF-8", path) from None


def _from_olmocr(records: Sequence[Record], source: Path, suffix: str, match: str) -> Matched:
    found: dict[tuple[str, int], list[tuple[int, Path]]] = {}
    for path in source.rglob("*.md"):
        m = _CANDIDATE.match(path.relative_to(source).as_posix())
        if m:
            found.setdefault((m["base"], int(m["page"])), []).append((int(m["repeat"]), path))
    keys = [(str(r.meta.get("pdf", r.id)).removesuffix(".pdf"), r.meta.get("page", 1)) for r in records]
    repeats = [[_read_markdown(path) for _, path in sorted(found.get(key, []))] for key in keys]
    matched = Matched(texts=[texts[0] if texts else "" for texts in repeats], repeats=repeats)
    matched.missing_ids = [r.id for r, texts in zip(records, repeats) if not texts]
    matched.extra_ids = [f"{base}.pdf#p{page}" for base, page in sorted(set(found) - set(keys))]
    matched.matched_by["id"] = len(records) - len(matched.missing_ids)
    return matched


def _from_pages(records: Sequence[Record], source: Path, suffix: str, match: str) -> Matched:
    from ocrft.data.page_predictions import match_pages

    return match_pages(records, source, match)


# kind -> (records, model.path, suffix, match mode) -> Matched
SOURCES: dict[str, Callable[[Sequence[Record], Path, str, str], Matched]] = {
    "jsonl": _from_jsonl,
    "line_folder": _from_text_files,
    "pages": _from_pages,
    "olmocr": _from_olmocr,
}
