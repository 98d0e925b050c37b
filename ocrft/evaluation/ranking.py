"""Which pages and lines a person should correct first: ``predict.rank=true``.

Signals, per line the model read (ocrft.evaluation.generation.Generation):

- ``mean_logprob``: the mean natural log-probability of the greedy reading's tokens, the end
  token included; ``confidence = exp(mean_logprob)``, the geometric mean of the tokens'
  probabilities, in [0, 1]: what the filled files carry as ``conf`` / ``WC``.
- ``min_logprob``: the least likely token of the reading (one bad character in a line).
- ``disagreement`` (with ``predict.samples=N``, N >= 1): the line is read N more times,
  sampling at ``predict.temperature``; over every pair of the N + 1 readings (greedy
  included), the mean of Levenshtein distance / length of the longer reading. 0 when all
  readings agree, towards 1 when they share nothing (MinerU 2.5 picks hard cases by how
  consistent repeated readings are).

``certainty = confidence * (1 - disagreement)`` (disagreement 0 without samples) orders the
lines, least certain first, ties by ``min_logprob``. A page's certainty is the mean of its
lines'; pages are ordered least certain first, ties by their least certain line. A line
with no reading (an error, empty output) has certainty 0: it needs a person first.

``ranking.csv`` has one row per line, pages in their order and each page's lines in theirs,
with the page's rank and certainty on every row; ``ranking.jsonl`` has one row per page in
order, its lines (same fields) nested least certain first.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import fmean
from typing import Optional, Sequence

from ocrft.evaluation.generation import Generation

COLUMNS = ("page_rank", "page", "page_certainty", "line_rank", "line", "region", "certainty", "confidence",
           "mean_logprob", "min_logprob", "disagreement", "num_tokens", "looped", "text", "image")  # fmt: skip


@dataclass
class RankedLine:
    page: str  # the page file, relative to the export
    line: str  # element id (a region's id when it was read whole and not split)
    region: str
    text: str
    image: str  # the crop the model read
    confidence: float
    mean_logprob: float
    min_logprob: float
    disagreement: Optional[float]
    num_tokens: int
    looped: bool
    certainty: float = 0.0
    line_rank: int = 0  # 1 = the least certain line of the whole export


def confidence(output: Generation) -> float:
    """exp(mean token log-probability): 0 for a reading with no tokens or an error."""
    if output.error or not output.num_tokens or not output.text.strip():
        return 0.0
    return math.exp(output.mean_logprob)


def disagreement(readings: Sequence[str]) -> float:
    """Mean normalized edit distance over every pair of ``readings`` (0 = all the same)."""
    from rapidfuzz.distance import Levenshtein

    pairs = list(itertools.combinations(readings, 2))
    if not pairs:
        return 0.0
    return fmean(Levenshtein.distance(a, b) / max(len(a), len(b), 1) for a, b in pairs)


def rank_line(line: RankedLine) -> RankedLine:
    """Set the line's certainty from its signals."""
    line.certainty = line.confidence * (1.0 - (line.disagreement or 0.0))
    return line


def rank(lines: Sequence[RankedLine]) -> list[dict]:
    """Pages least certain first, each ``{"page_rank", "page", "certainty", "lines": [...]}``
    with its lines least certain first; ``line_rank`` orders the lines of the whole export."""
    order = sorted(lines, key=lambda ln: (ln.certainty, ln.min_logprob))
    for n, line in enumerate(order, 1):
        line.line_rank = n
    pages: dict[str, list[RankedLine]] = {}
    for line in order:
        pages.setdefault(line.page, []).append(line)
    ranked = sorted(pages.items(), key=lambda kv: (fmean(ln.certainty for ln in kv[1]), kv[1][0].certainty))
    return [
        {"page_rank": n, "page": page, "certainty": round(fmean(ln.certainty for ln in members), 6),
         "lines": [_row(ln) for ln in members]}
        for n, (page, members) in enumerate(ranked, 1)
    ]  # fmt: skip


def _row(line: RankedLine) -> dict:
    row = asdict(line)
    for key in ("certainty", "confidence", "mean_logprob", "min_logprob", "disagreement"):
        if row[key] is not None:
            row[key] = round(row[key], 6)
    return row


def write_ranking(pages: list[dict], out_dir: Path) -> tuple[Path, Path]:
    """``ranking.csv`` and ``ranking.jsonl`` in ``out_dir``."""
    from ocrft import atomic

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for page in pages:
        for line in page["lines"]:
            writer.writerow({**line, "page_rank": page["page_rank"], "page_certainty": page["certainty"]})
    csv_path = atomic.write_text(out_dir / "ranking.csv", buffer.getvalue())
    return csv_path, atomic.write_jsonl(out_dir / "ranking.jsonl", pages)
