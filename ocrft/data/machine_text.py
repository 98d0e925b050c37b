"""The mark task=predict leaves on the text it writes into a PAGE or ALTO export.

A model must never train on its own unchecked reading. So each text that ocrft writes back
carries ``ocrft:<hash>``, the hash being of the text as written. Where that text sits and
where the mark goes depends on the format (ocrft.data.page_writeback, alto_writeback); the
readers (page_xml, alto) hand the mark to :func:`is_machine_text`.

- The text still hashes to the mark: nobody has touched it since. It is machine text, which
  task=prepare leaves out while ``data.skip_machine_text=true``.
- The text no longer matches: someone corrected it, so it is ground truth. The stale mark
  can stay where it is.
"""

from __future__ import annotations

import hashlib
import re
from typing import Optional

PREFIX = "ocrft:"
# 16 hex digits (64 bits): an edit that keeps the hash would need a collision by chance
_MARK = re.compile(r"ocrft[:.]([0-9a-f]{16})\b")


def text_hash(text: str) -> str:
    """The hash a mark carries: the first 16 hex digits of the SHA-256 of the text (stripped)."""
    return hashlib.sha256(text.strip().encode("utf-8")).hexdigest()[:16]


def mark(text: str) -> str:
    """``ocrft:<hash>`` for ``text``."""
    return PREFIX + text_hash(text)


def marked_hash(value: Optional[str]) -> Optional[str]:
    """The hash of the first ocrft mark in ``value`` (an attribute that may hold other words
    too, or an ALTO TAGREFS list of ``ocrft.<hash>`` ids); None when there is none."""
    found = _MARK.search(value or "")
    return found.group(1) if found else None


def is_machine_text(text: str, marker: Optional[str]) -> bool:
    """Whether ``text`` is what ocrft wrote and nobody has changed since."""
    digest = marked_hash(marker)
    return bool(text) and digest is not None and digest == text_hash(text)


def with_mark(value: Optional[str], text: str) -> str:
    """``value`` (e.g. an existing ``comments`` attribute) with its ocrft mark set to ``text``'s:
    an older mark is replaced, other words are kept."""
    new = mark(text)
    if not value:
        return new
    if _MARK.search(value):
        return _MARK.sub(new, value, count=1)
    return f"{value} {new}"
