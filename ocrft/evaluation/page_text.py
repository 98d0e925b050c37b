"""Page text scored so that a correct reading in another order is not a wrong reading.

CER over a page punishes a two-column page read column B first as if half of it were
misread. These measures take the page apart (each is documented in docs/metrics.md):

- **bow_f1** (order-free): F1 of the multisets of whitespace tokens of the normalized texts.
  Forgives any order at all, line breaks and hyphenation splits aside; punishes every
  misread, missing or extra word.
- **line_cer** (CER after aligning lines): each reference line is paired with the predicted
  line most like it (greedily, most similar pair first, each line used once); edits of the
  pairs plus every character of unpaired lines, over the reference characters. Forgives
  the order of whole lines; does not forgive a line split in two or two lines merged.
- **reading_order**: of the paired lines whose text mostly agrees (normalized distance
  below ``ORDER_MAX_DISTANCE``), the share of line pairs that the prediction puts in the
  reference's order (Kendall's concordant pairs). 1.0 for a page with fewer than two such
  lines. It scores order alone, which line_cer forgave.

Lines are split on the raw text's newlines, then each is normalized with eval.normalization
(whose whitespace collapse would otherwise join them); empty lines are dropped.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Optional

from rapidfuzz.distance import Levenshtein

# Paired lines more different than this say nothing about order (a hallucinated line
# paired with a leftover reference line).
ORDER_MAX_DISTANCE = 0.5


def _lines(text: str, norm: Callable[[str], str]) -> list[str]:
    return [line for line in (norm(raw) for raw in text.split("\n")) if line.strip()]


def bow_f1(prediction: str, reference: str) -> float:
    """F1 of the whitespace-token multisets of two (normalized) texts; 1.0 when both are empty."""
    hyp, ref = Counter(prediction.split()), Counter(reference.split())
    n_hyp, n_ref = sum(hyp.values()), sum(ref.values())
    if not n_hyp and not n_ref:
        return 1.0
    overlap = sum((hyp & ref).values())
    return 2 * overlap / (n_hyp + n_ref)


def align_lines(pred_lines: list[str], ref_lines: list[str]) -> list[tuple[int, int]]:
    """(reference index, predicted index) pairs, most similar first, each line used once."""
    candidates = sorted(
        (Levenshtein.normalized_distance(p, r), ri, pi) for ri, r in enumerate(ref_lines) for pi, p in enumerate(pred_lines)
    )
    used_ref: set[int] = set()
    used_pred: set[int] = set()
    pairs = []
    for _, ri, pi in candidates:
        if ri not in used_ref and pi not in used_pred:
            used_ref.add(ri)
            used_pred.add(pi)
            pairs.append((ri, pi))
    return sorted(pairs)


def line_cer(pred_lines: list[str], ref_lines: list[str], pairs: list[tuple[int, int]]) -> float:
    """Edits after :func:`align_lines` over reference characters (empty reference: 0.0 or 1.0)."""
    edits = sum(Levenshtein.distance(pred_lines[pi], ref_lines[ri]) for ri, pi in pairs)
    paired_ref, paired_pred = {ri for ri, _ in pairs}, {pi for _, pi in pairs}
    edits += sum(len(r) for i, r in enumerate(ref_lines) if i not in paired_ref)
    edits += sum(len(p) for i, p in enumerate(pred_lines) if i not in paired_pred)
    chars = sum(len(r) for r in ref_lines)
    return edits / chars if chars else float(edits > 0)


def reading_order(pred_lines: list[str], ref_lines: list[str], pairs: list[tuple[int, int]]) -> float:
    """Share of concordant pairs among the well-matched line pairs (see the module docstring)."""
    kept = [pi for ri, pi in pairs if Levenshtein.normalized_distance(pred_lines[pi], ref_lines[ri]) < ORDER_MAX_DISTANCE]
    total = len(kept) * (len(kept) - 1) // 2
    if not total:
        return 1.0
    concordant = sum(kept[a] < kept[b] for a in range(len(kept)) for b in range(a + 1, len(kept)))
    return concordant / total


def page_scores(prediction: str, reference: str, norm: Callable[[str], str]) -> Optional[dict[str, float]]:
    """``{"bow_f1", "line_cer", "reading_order"}`` for a reference of two lines or more, else None."""
    ref_lines = _lines(reference, norm)
    if len(ref_lines) < 2:
        return None
    pred_lines = _lines(prediction, norm)
    pairs = align_lines(pred_lines, ref_lines)
    return {
        "bow_f1": bow_f1(" ".join(pred_lines), " ".join(ref_lines)),
        "line_cer": line_cer(pred_lines, ref_lines, pairs),
        "reading_order": reading_order(pred_lines, ref_lines, pairs),
    }
