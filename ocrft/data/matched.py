"""Another engine's predictions aligned with the ground-truth records they were matched to
(what every ``model=predictions`` source in ocrft.data.predictions returns)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

MAX_NAMED = 20  # ids listed per kind of mismatch in the results file; the counts are exact


@dataclass
class Matched:
    """Predictions aligned with the records they were matched to.

    Attributes:
        texts: one prediction per record, in record order; "" where the engine gave none.
        missing_ids: ids of records without a prediction.
        extra_ids: predictions that match no record (their id, or ``file#line`` for pages).
        kind: the key of ``SOURCES`` that read them.
        matched_by: how many records were matched by id, by position.
        repeats: per record, every reading the engine wrote for it (olmOCR-Bench candidates
            write several: ``_repeat1.md``, ``_repeat2.md``); empty when it wrote one each.
    """

    texts: list[str]
    missing_ids: list[str] = field(default_factory=list)
    extra_ids: list[str] = field(default_factory=list)
    kind: str = ""
    matched_by: Counter = field(default_factory=Counter)
    repeats: list[list[str]] = field(default_factory=list)

    def unmatched(self) -> dict:
        """The mismatch counts and the first ``MAX_NAMED`` ids of each, for the results file."""
        return {
            "missing_predictions": len(self.missing_ids),
            "missing_ids": self.missing_ids[:MAX_NAMED],
            "extra_predictions": len(self.extra_ids),
            "extra_ids": self.extra_ids[:MAX_NAMED],
        }
