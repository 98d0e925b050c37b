"""Character alignment of a label and a prediction, from jiwer: the diff a report marks up
and the confusion counts it tabulates.

Both come from one Levenshtein alignment over code points (``jiwer.process_characters``,
rapidfuzz underneath): the edits marked in a sample are the edits its CER counts, and the
confusion counts of a results file add up to its total character edits (code-point unit).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import jiwer

# jiwer's default character transform also strips leading and trailing whitespace; the
# alignment must see exactly the strings that were scored (the normalization already
# decided what happens to whitespace), so we only split into characters.
_CHARS = jiwer.ReduceToListOfListOfChars()

KINDS = ("substitute", "delete", "insert")


@dataclass(frozen=True)
class Segment:
    """A run of the alignment: ``kind`` is equal, substitute, delete or insert; ``ref`` and
    ``hyp`` are the label and prediction characters it covers ("" where there are none)."""

    kind: str
    ref: str
    hyp: str


def align_pairs(references: Sequence[str], predictions: Sequence[str]) -> list[list[Segment]]:
    """The alignment of each (reference, prediction) pair, in one jiwer call."""
    if not references:
        return []
    out = jiwer.process_characters(list(references), list(predictions), _CHARS, _CHARS)
    return [
        [
            Segment(c.type, "".join(ref[c.ref_start_idx : c.ref_end_idx]), "".join(hyp[c.hyp_start_idx : c.hyp_end_idx]))
            for c in chunks
        ]
        for ref, hyp, chunks in zip(out.references, out.hypotheses, out.alignments)
    ]


def align(reference: str, prediction: str) -> list[Segment]:
    """The alignment of one prediction against its reference."""
    return align_pairs([reference], [prediction])[0]


@dataclass
class Confusions:
    """How often each label character was read as another (substitutions), left out
    (deletions), and each predicted character added (insertions)."""

    substitutions: Counter = field(default_factory=Counter)  # (label char, predicted char) -> count
    deletions: Counter = field(default_factory=Counter)  # label char -> count
    insertions: Counter = field(default_factory=Counter)  # predicted char -> count

    def total(self) -> int:
        return sum(self.substitutions.values()) + sum(self.deletions.values()) + sum(self.insertions.values())

    def most_common(self, n: Optional[int] = None) -> list[tuple[str, str, str, int]]:
        """(kind, label char, predicted char, count) rows, most frequent first; ties in
        KINDS order, then by characters, so the table is stable."""
        rows = [("substitute", r, h, c) for (r, h), c in self.substitutions.items()]
        rows += [("delete", r, "", c) for r, c in self.deletions.items()]
        rows += [("insert", "", h, c) for h, c in self.insertions.items()]
        rows.sort(key=lambda row: (-row[3], KINDS.index(row[0]), row[1], row[2]))
        return rows[:n] if n is not None else rows


def count_confusions(alignments: Iterable[list[Segment]]) -> Confusions:
    """Per-character counts of the edits in ``alignments``. A substituted run pairs its
    characters one to one (Levenshtein replace runs have equal lengths on both sides)."""
    counts = Confusions()
    for segments in alignments:
        for s in segments:
            if s.kind == "substitute":
                counts.substitutions.update(zip(s.ref, s.hyp))
            elif s.kind == "delete":
                counts.deletions.update(s.ref)
            elif s.kind == "insert":
                counts.insertions.update(s.hyp)
    return counts
