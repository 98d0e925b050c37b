"""Text normalization applied to prediction and reference before scoring.

The flags are those of :class:`ocrft.config.NormalizationConfig`; the dict that
:func:`normalization_dict` returns is stored with every result so a score can always be
traced back to the normalization it was computed under. Raw text is never overwritten:
normalization happens only inside scoring.

The default is NFC + whitespace collapse: it folds only what no transcription convention
distinguishes (a precomposed "é" and "e" + U+0301 are the same text; so are runs of spaces).
NFKC (opt-in) would also fold ſ->s, ﬁ->fi, ² -> 2, which historical ground truth keeps apart.

A dict read back from a results file is a record of what *was* applied: read it with
:func:`stored_normalization`, not :func:`normalization_dict` (see there for why).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import sys
import unicodedata
from typing import Any, Mapping

from ocrft.config import NormalizationConfig

FLAGS = tuple(f.name for f in dataclasses.fields(NormalizationConfig))

# Full-width ASCII variants (U+FF01..U+FF5E) sit at a fixed offset from ASCII '!'..'~';
# the ideographic space U+3000 becomes a plain space.
_FULLWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}

# markdown=true: olmOCR-Bench's normalize_text (allenai/olmocr, olmocr/bench/tests.py), in its
# order, after heading and list markers, which its fuzzy substring checks tolerate but CER
# would count. Its whitespace collapse is left to collapse_whitespace, so lines survive for
# the page measures. Like the benchmark, paired "_" or "*" around any text is emphasis
# (snake_case_names lose their underscores on both sides alike).
_MARKDOWN_LINES = (  # ours, first, so that a list item's "* " is not taken for an emphasis opening
    (re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+", re.MULTILINE), ""),  # ATX headings
    (re.compile(r"^[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]+", re.MULTILINE), ""),  # list items
)
_OLMOCR_STEPS = (
    (re.compile(r"<br/?>"), " "),
    (re.compile(r"\*\*(.*?)\*\*"), r"\1"),
    (re.compile(r"__(.*?)__"), r"\1"),
    (re.compile(r"</?b>"), ""),
    (re.compile(r"</?i>"), ""),
    (re.compile(r"(\*\*|__)(.*?)\1"), r"\2"),
    (re.compile(r"(\*|_)(.*?)\1"), r"\2"),
)
# olmOCR-Bench's replacements: curly quotes, dash variants, the micro sign (read as mu)
_MARKDOWN_CHARS = str.maketrans({"‘": "'", "’": "'", "‚": "'", "“": '"', "”": '"', "„": '"', "＿": "_", "–": "-",
                                 "—": "-", "‑": "-", "‒": "-", "−": "-", "\u00b5": "\u03bc"})  # fmt: skip


def strip_markdown(text: str) -> str:
    """``text`` without emphasis, heading and list markup, dashes and quotes unified (see above)."""
    for pattern, replacement in (*_MARKDOWN_LINES, *_OLMOCR_STEPS):
        text = pattern.sub(replacement, text)
    return text.translate(_MARKDOWN_CHARS)


def olmocr_normalize(text: str) -> str:
    """olmOCR-Bench's ``normalize_text`` as it is: what its checks compare (ocrft.evaluation.olmocr_checks)."""
    for pattern, replacement in _OLMOCR_STEPS:
        text = pattern.sub(replacement, text)
    text = unicodedata.normalize("NFC", re.sub(r"\s+", " ", text))
    return text.translate(_MARKDOWN_CHARS)


def normalization_dict(cfg: Any) -> dict[str, bool]:
    """The effective normalization flags as a plain dict (what results files store).

    Args:
        cfg: a ``NormalizationConfig``, a DictConfig or a plain dict (missing keys take the
            dataclass defaults), or None for "no normalization" (every flag off).

    Raises:
        ValueError: on a key that is not a normalization flag.
    """
    if cfg is None:
        return {name: False for name in FLAGS}
    if dataclasses.is_dataclass(cfg):
        given = dataclasses.asdict(cfg)
    elif isinstance(cfg, Mapping):
        given = dict(cfg)
    else:
        from omegaconf import DictConfig, OmegaConf

        if not isinstance(cfg, DictConfig):
            raise TypeError(f"normalization config must be a dict or NormalizationConfig, not {type(cfg).__name__}")
        given = OmegaConf.to_container(cfg, resolve=True)
    unknown = sorted(set(given) - set(FLAGS))
    if unknown:
        raise ValueError(f"unknown normalization flag(s) {unknown}; valid flags: {list(FLAGS)}")
    flags = dataclasses.asdict(NormalizationConfig())
    flags.update({k: bool(v) for k, v in given.items()})
    return flags


@functools.lru_cache(maxsize=1)
def _punctuation_table() -> dict[int, None]:
    # Built once (~0.3 s): every code point whose Unicode category is P* (Pc Pd Ps Pe Pi Pf Po),
    # which covers CJK punctuation such as 。，「」 as well as ASCII.
    return {cp: None for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)).startswith("P")}


def stored_normalization(stored: Any) -> dict[str, bool]:
    """The flags a results file's ``normalization`` dict records, for re-use on that file.

    Unlike :func:`normalization_dict`, a flag *missing* from a stored dict is False: the
    file was written before that step existed, so it was not applied. This matters for
    ``nfc``: files written before it was added (when the default was ``nfkc=true``) lack
    it; one with ``nfkc=false`` was scored without any composition, and its diffs are
    redrawn that way. Gemma-OCR seed files (no dict, or an empty one) mean raw text.
    Re-scoring such a file (``report.rescore=true``) ignores this dict altogether and uses
    the current ``eval.normalization``; the stored one goes to ``rescored_from``.

    Raises:
        ValueError: on a key that is not a normalization flag.
    """
    if not stored:
        return normalization_dict(None)
    return normalization_dict({**normalization_dict(None), **dict(stored)})


def normalize(text: str, cfg: Any) -> str:
    """Normalize ``text`` with the flags of ``cfg`` (see :func:`normalization_dict`).

    The steps run in a fixed order: markdown stripping (:func:`strip_markdown`), NFC (or NFKC when ``nfkc`` is on: NFKC composes
    canonically too, so it replaces NFC), full-width to half-width, lowercase, punctuation
    removal, whitespace collapse (last, so removed punctuation leaves no double spaces).
    ``lowercase`` uses ``str.lower`` rather than ``casefold`` so that a character never turns
    into two (``ß`` stays ``ß``) and lengths, hence CER denominators, stay comparable.
    """
    return _apply(text, normalization_dict(cfg))


def _apply(text: str, flags: Mapping[str, bool]) -> str:
    if flags["markdown"]:  # first: its patterns read markup that the steps below could change
        text = strip_markdown(text)
    if flags["nfkc"]:
        text = unicodedata.normalize("NFKC", text)
    elif flags["nfc"]:
        text = unicodedata.normalize("NFC", text)
    if flags["fullwidth_to_halfwidth"]:
        text = text.translate(_FULLWIDTH)
    if flags["lowercase"]:
        text = text.lower()
    if flags["remove_punctuation"]:
        text = text.translate(_punctuation_table())
    if flags["collapse_whitespace"]:
        text = " ".join(text.split())
    return text


def normalizer(cfg: Any):
    """A one-argument function normalizing with ``cfg``; validates the flags once."""
    flags = normalization_dict(cfg)
    if not any(flags.values()):
        return lambda text: text
    return functools.partial(_apply, flags=flags)
