"""Text normalization applied to prediction and reference before scoring.

The flags are those of :class:`ocrft.config.NormalizationConfig`; the dict that
:func:`normalization_dict` returns is stored with every result so a score can always be
traced back to the normalization it was computed under. Raw text is never overwritten:
normalization happens only inside scoring.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import unicodedata
from typing import Any, Mapping

from ocrft.config import NormalizationConfig

FLAGS = tuple(f.name for f in dataclasses.fields(NormalizationConfig))

# Full-width ASCII variants (U+FF01..U+FF5E) sit at a fixed offset from ASCII '!'..'~';
# the ideographic space U+3000 becomes a plain space.
_FULLWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


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


def normalize(text: str, cfg: Any) -> str:
    """Normalize ``text`` with the flags of ``cfg`` (see :func:`normalization_dict`).

    The steps run in a fixed order: NFKC, full-width to half-width, lowercase, punctuation
    removal, whitespace collapse (last, so removed punctuation leaves no double spaces).
    ``lowercase`` uses ``str.lower`` rather than ``casefold`` so that a character never turns
    into two (``ß`` stays ``ß``) and lengths, hence CER denominators, stay comparable.
    """
    return _apply(text, normalization_dict(cfg))


def _apply(text: str, flags: Mapping[str, bool]) -> str:
    if flags["nfkc"]:
        text = unicodedata.normalize("NFKC", text)
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
