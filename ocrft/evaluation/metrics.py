"""OCR metrics, per sample and per corpus, computed after a recorded normalization.

Definitions (``h`` = normalized prediction, ``r`` = normalized reference; a "character" is
a Unicode code point, or with ``eval.cer_unit=grapheme`` an extended grapheme cluster, so
that "aͤ" (a + U+0364) is one character as in dinglehopper):

- **CER**: character Levenshtein distance / ``len(r)``. Corpus ``cer`` = total edits / total
  reference characters (insertions against an empty reference count); ``mean_cer`` = mean of
  sample CERs. A sample with an empty reference has CER 0.0 if ``h`` is empty, else 1.0 (its
  insertions still count in the corpus CER).
- **WER**: the same on whitespace tokens (``str.split``), with the same empty-reference rule.
- **char precision / recall / F1**: multiset overlap ``o`` of characters (spaces included);
  P = o/len(h), R = o/len(r). Corpus values are micro-averaged over all characters;
  ``mean_char_f1`` averages sample F1s. Two empty strings score 1.0; against one empty side
  the undefined ratio is 0.0.
- **ned**: mean over samples of char edits / max(len(h), len(r)) (0.0 for two empty strings), in 0..1.
- **exact_match**: share of samples with ``h == r``.
- **bleu, ter**: sacrebleu corpus scores on 0..100 with sacrebleu's default settings unless
  :class:`MetricSettings` says otherwise (BLEU: tokenize 13a, case-sensitive; TER:
  case-insensitive, no tercom normalization, punctuation kept), so they equal
  ``sacrebleu.corpus_bleu`` / ``corpus_ter`` and HF evaluate's "sacrebleu" / "ter" on the
  same (normalized) text. Each score's sacrebleu signature is recorded (:meth:`MetricSettings.signatures`).
- **degenerate_rate**: share of samples for which :func:`is_degenerate` holds.
- Corpus BLEU needs 4-grams: a corpus of one- to three-word lines scores 0 (sacrebleu's
  definition); CER is the headline metric for line OCR.
- **JSON targets**: ``json_valid_rate`` (prediction parses as a JSON object or array, after one
  surrounding markdown code fence is stripped, which chat models add unasked) and micro
  field precision/recall/F1 over ``(flattened key path, value)`` pairs. JSON is parsed from the
  *raw* text (normalization could destroy its syntax); leaves are then compared as strings:
  string leaves normalized, other leaves as their JSON text (so ``3`` matches ``"3"``, not
  ``3.0``). Keys are compared as written.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from functools import lru_cache
from typing import Any, Callable, Optional, Sequence

import regex
from rapidfuzz.distance import Levenshtein

from ocrft.config import BLEU_TOKENIZERS, CER_UNITS, ConfigError
from ocrft.evaluation.normalize import normalizer


@dataclasses.dataclass(frozen=True)
class MetricSettings:
    """How CER counts characters and how sacrebleu scores BLEU and TER.

    The field names are the ``eval.*`` keys they come from, so :meth:`from_eval` copies
    them by name and the defaults equal ``EvalConfig``'s (sacrebleu's own defaults).
    Built once per evaluation and passed down unchanged; recorded in every results file.
    """

    cer_unit: str = "codepoint"
    bleu_tokenize: str = "13a"
    bleu_lowercase: bool = False
    ter_case_sensitive: bool = False
    ter_normalized: bool = False
    ter_no_punct: bool = False
    ter_asian_support: bool = False

    def __post_init__(self) -> None:
        if self.cer_unit not in CER_UNITS:
            raise ConfigError(f"eval.cer_unit={self.cer_unit!r}; choose one of {list(CER_UNITS)}")
        if self.bleu_tokenize not in BLEU_TOKENIZERS:
            raise ConfigError(f"eval.bleu_tokenize={self.bleu_tokenize!r}; choose one of {list(BLEU_TOKENIZERS)}")

    @classmethod
    def from_eval(cls, eval_cfg: Any) -> "MetricSettings":
        """The settings of an ``EvalConfig`` (dataclass or DictConfig)."""
        return cls(**{f.name: getattr(eval_cfg, f.name) for f in dataclasses.fields(cls)})

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def signatures(self) -> dict[str, str]:
        """sacrebleu's reproducibility signatures, ``{"bleu": "nrefs:1|case:mixed|...", "ter": ...}``."""
        return dict(_signatures(self))


@lru_cache(maxsize=None)
def _signatures(settings: MetricSettings) -> dict[str, str]:
    # sacrebleu builds a signature only after a metric has scored (it learns the number of
    # references then); it holds nothing else from the data, and ocrft always has one
    # reference, so scoring one dummy pair gives the signature of every ocrft score.
    bleu, ter = _bleu_metric(settings), _ter_metric(settings)
    bleu.corpus_score(["a"], [["a"]])
    ter.corpus_score(["a"], [["a"]])
    return {"bleu": str(bleu.get_signature()), "ter": str(ter.get_signature())}


def metric_tags(eval_cfg: Any, prefix: str = "eval/") -> dict[str, str]:
    """MLflow tags tracing the scores of ``eval_cfg`` (an EvalConfig or MetricSettings):
    ``eval/cer_unit``, ``eval/bleu_signature``, ``eval/ter_signature``."""
    settings = eval_cfg if isinstance(eval_cfg, MetricSettings) else MetricSettings.from_eval(eval_cfg)
    sigs = settings.signatures()
    return {f"{prefix}cer_unit": settings.cer_unit, **{f"{prefix}{k}_signature": v for k, v in sigs.items()}}


def cer_units(text: str, unit: str) -> str | list[str]:
    """``text`` as the sequence CER counts: the string itself (code points) or its list of
    extended grapheme clusters (``regex``'s ``\\X``, Unicode's UAX #29)."""
    return text if unit == "codepoint" else regex.findall(r"\X", text)


# A prediction "loops" when one unit of 1..LOOP_MAX_UNIT characters repeats at least
# LOOP_MIN_REPEATS times back to back and that run covers at least LOOP_MIN_COVERAGE of a
# prediction of at least LOOP_MIN_CHARS characters - the signature of a decoder stuck until
# max_new_tokens (units up to a sentence long). A run that also occurs in the reference
# (dot leaders, "0000") is genuine text, not a loop.
LOOP_MIN_CHARS = 20
LOOP_MAX_UNIT = 100
LOOP_MIN_REPEATS = 4
LOOP_MIN_COVERAGE = 0.5

_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


@lru_cache(maxsize=None)
def _any_repeat(max_unit: int) -> re.Pattern:
    return re.compile(r"(.{1,%d}?)\1{%d,}" % (max_unit, LOOP_MIN_REPEATS - 1), re.DOTALL)


@lru_cache(maxsize=None)
def _repeat_of(unit: int) -> re.Pattern:
    return re.compile(r"(.{%d})\1{%d,}" % (unit, LOOP_MIN_REPEATS - 1), re.DOTALL)


def longest_repeat(text: str) -> str:
    """The longest substring of ``text`` made of >= LOOP_MIN_REPEATS back-to-back copies of
    one unit of 1..LOOP_MAX_UNIT characters ("" if there is none)."""
    # A unit longer than len/LOOP_MIN_REPEATS cannot repeat often enough; bounding it keeps
    # the scan of a short line cheap.
    max_unit = min(LOOP_MAX_UNIT, len(text) // LOOP_MIN_REPEATS)
    if max_unit < 1 or not _any_repeat(max_unit).search(text):  # exact pre-check: most lines have no run
        return ""
    best = ""
    for unit in range(1, max_unit + 1):
        for m in _repeat_of(unit).finditer(text):
            if len(m.group(0)) > len(best):
                best = m.group(0)
    return best


def count_looped(metrics: dict, samples: Sequence[dict], looped: Sequence[bool]) -> None:
    """A sample the loop guard stopped reads clean after its cut, yet it looped: it counts as
    degenerate. Marks those ``samples`` (from :func:`score_detailed`) and sets
    ``degenerate_rate`` and ``looped_rate`` in ``metrics``. The one place that says so:
    validation and results files both call it."""
    for sample, stopped in zip(samples, looped):
        sample["degenerate"] = sample["degenerate"] or bool(stopped)
    n = max(len(samples), 1)
    metrics["degenerate_rate"] = sum(s["degenerate"] for s in samples) / n
    metrics["looped_rate"] = sum(bool(x) for x in looped) / n


def is_degenerate(prediction: str, reference: str) -> bool:
    """Whether a (normalized) prediction is degenerate: empty against a non-empty reference,
    or looping (see LOOP_* above)."""
    if not prediction.strip():
        return bool(reference.strip())
    if len(prediction) < LOOP_MIN_CHARS:
        return False
    run = longest_repeat(prediction)
    return len(run) >= LOOP_MIN_COVERAGE * len(prediction) and run not in reference


def _ratio(errors: int, length: int) -> float:
    # Empty reference: 0.0 when nothing was inserted, otherwise 1.0 (documented above).
    return errors / length if length else (0.0 if errors == 0 else 1.0)


def _prf(overlap: int, n_hyp: int, n_ref: int) -> tuple[float, float, float]:
    if n_hyp == 0 and n_ref == 0:
        return 1.0, 1.0, 1.0
    p = overlap / n_hyp if n_hyp else 0.0
    r = overlap / n_ref if n_ref else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def _counts(h: str, r: str, unit: str = "codepoint") -> tuple[int, int, int, int, int, int, int]:
    """(char edits, ref chars, hyp chars, char overlap, word edits, ref words, hyp words);
    characters in ``unit`` (code points or grapheme clusters)."""
    hw, rw = h.split(), r.split()
    hc, rc = cer_units(h, unit), cer_units(r, unit)
    overlap = sum((Counter(hc) & Counter(rc)).values())
    return Levenshtein.distance(hc, rc), len(rc), len(hc), overlap, Levenshtein.distance(hw, rw), len(rw), len(hw)


def _stats(h: str, r: str, counts: tuple[int, ...]) -> dict[str, Any]:
    """Sample scores of normalized ``h`` against ``r`` from their ``_counts``."""
    ced, nr, nh, overlap, wed, nrw, _ = counts
    p, rec, f1 = _prf(overlap, nh, nr)
    return {
        "cer": _ratio(ced, nr),
        "wer": _ratio(wed, nrw),
        "ned": ced / max(nh, nr) if max(nh, nr) else 0.0,
        "char_precision": p,
        "char_recall": rec,
        "f1": f1,
        "exact_match": h == r,
        "degenerate": is_degenerate(h, r),
    }


def _json_sample(prediction: str, reference: str, norm: Callable[[str], str]) -> tuple[dict, tuple[int, ...]]:
    """(JSON scores of one sample, its (valid, matched, predicted, reference) field counts)."""
    counts = _json_counts(prediction, reference, norm)
    p, r, f = _prf(*counts[1:])
    return {"json_valid": counts[0], "json_field_precision": p, "json_field_recall": r, "json_field_f1": f}, counts


def score_sample(
    prediction: str,
    reference: str,
    normalization: Any = None,
    json_target: bool = False,
    settings: Optional[MetricSettings] = None,
) -> dict[str, Any]:
    """Scores of one sample: cer, wer, ned, char_precision, char_recall, f1, exact_match,
    degenerate, and for JSON targets json_valid and json_field_precision/recall/f1.

    Args:
        normalization: a NormalizationConfig, DictConfig or dict; None = compare raw text.
        settings: only ``cer_unit`` matters for one sample; None = the defaults.
    """
    _check_str(prediction, "prediction")
    _check_str(reference, "reference")
    norm = normalizer(normalization)
    h, r = norm(prediction), norm(reference)
    out = _stats(h, r, _counts(h, r, (settings or MetricSettings()).cer_unit))
    if json_target:
        out.update(_json_sample(prediction, reference, norm)[0])
    return out


def score(
    predictions: Sequence[str],
    references: Sequence[str],
    normalization: Any = None,
    settings: Optional[MetricSettings] = None,
    json_target: Optional[bool] = None,
) -> dict[str, float]:
    """Corpus metrics of ``predictions`` against ``references`` (see the module docstring).

    Args:
        predictions: model outputs, one string per sample.
        references: targets, same length and order.
        normalization: NormalizationConfig / DictConfig / dict; None = compare raw text.
        settings: CER unit and sacrebleu options (``MetricSettings.from_eval(cfg.eval)``);
            None = the defaults (code points; sacrebleu's defaults).
        json_target: add JSON field metrics; None = when every reference is a JSON object/array.

    Raises:
        TypeError: a non-string element (its index is named) or a bare string for a list.
        ValueError: different lengths or no samples.
    """
    return score_detailed(predictions, references, normalization, settings, json_target=json_target)[0]


def score_detailed(
    predictions: Sequence[str],
    references: Sequence[str],
    normalization: Any = None,
    settings: Optional[MetricSettings] = None,
    *,
    json_target: Optional[bool] = None,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """:func:`score` plus every sample's :func:`score_sample` dict, from one pass."""
    preds, refs = _check_lists(predictions, references)
    settings = settings or MetricSettings()
    if json_target is None:
        json_target = all(_parse_json(r) is not None for r in refs)
    norm = normalizer(normalization)
    hyps, refs_n = [norm(p) for p in preds], [norm(r) for r in refs]

    n = len(hyps)
    tot = [0] * 7  # corpus sums of the _counts fields
    json_tot = [0] * 4  # valid, matched, predicted, reference fields
    samples = []
    for i, (h, r) in enumerate(zip(hyps, refs_n)):
        counts = _counts(h, r, settings.cer_unit)
        tot = [a + b for a, b in zip(tot, counts)]
        sample = _stats(h, r, counts)
        if json_target:
            json_scores, json_counts = _json_sample(preds[i], refs[i], norm)
            sample.update(json_scores)
            json_tot = [a + b for a, b in zip(json_tot, json_counts)]
        samples.append(sample)
    ced, nr, nh, overlap, wed, nrw, _ = tot
    p, r, f1 = _prf(overlap, nh, nr)
    out = {
        "cer": _ratio(ced, nr),
        "mean_cer": sum(s["cer"] for s in samples) / n,
        "wer": _ratio(wed, nrw),
        "mean_wer": sum(s["wer"] for s in samples) / n,
        "char_precision": p,
        "char_recall": r,
        "char_f1": f1,
        "mean_char_f1": sum(s["f1"] for s in samples) / n,
        "bleu": float(_bleu_metric(settings).corpus_score(hyps, [refs_n]).score),
        "ter": float(_ter_metric(settings).corpus_score(hyps, [refs_n]).score),
        "exact_match": sum(s["exact_match"] for s in samples) / n,
        "ned": sum(s["ned"] for s in samples) / n,
        "degenerate_rate": sum(s["degenerate"] for s in samples) / n,
        "num_samples": n,
    }
    if json_target:
        valid, tp, n_pred, n_ref = json_tot
        prec, rec, f = _prf(tp, n_pred, n_ref)
        out.update(json_valid_rate=valid / n, json_field_precision=prec, json_field_recall=rec, json_field_f1=f)
    return out, samples


def _bleu_metric(settings: MetricSettings):
    from sacrebleu.metrics import BLEU

    return BLEU(tokenize=settings.bleu_tokenize, lowercase=settings.bleu_lowercase)


def _ter_metric(settings: MetricSettings):
    """sacrebleu's TER with its own defaults unless set otherwise: case-insensitive, plain
    whitespace tokens. (ocrft used to score TER case-sensitive with tercom
    normalization, derived from bleu_tokenize; on six Tesseract lines that read 60.0 where
    sacrebleu and HF evaluate say 75.0. For CJK, ``eval.ter_normalized`` +
    ``eval.ter_asian_support`` make each CJK character a token.)"""
    from sacrebleu.metrics import TER

    return TER(case_sensitive=settings.ter_case_sensitive, normalized=settings.ter_normalized,
               no_punct=settings.ter_no_punct, asian_support=settings.ter_asian_support)  # fmt: skip


def _parse_json(text: str) -> Any:
    """The JSON object/array in ``text`` (one markdown fence stripped), or None."""
    m = _FENCE.match(text)
    try:
        value = json.loads(m.group(1) if m else text)
    except ValueError:
        return None
    return value if isinstance(value, (dict, list)) else None


def flatten_json(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``(key path, leaf)`` pairs: ``{"items": [{"price": 3}]}`` -> ``[("items[0].price", 3)]``.
    An empty object or array is itself a leaf, so ``{"a": []}`` still has a field."""
    if isinstance(value, dict) and value:
        return [pair for k, v in value.items() for pair in flatten_json(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(value, list) and value:
        return [pair for i, v in enumerate(value) for pair in flatten_json(v, f"{prefix}[{i}]")]
    return [(prefix, value)]


def _fields(value: Any, norm: Callable[[str], str]) -> Counter:
    return Counter((path, norm(v) if isinstance(v, str) else json.dumps(v)) for path, v in flatten_json(value))


def _json_counts(pred: str, ref: str, norm: Callable[[str], str]) -> tuple[bool, int, int, int]:
    """(prediction valid, matched fields, predicted fields, reference fields)."""
    ref_value, pred_value = _parse_json(ref), _parse_json(pred)
    ref_fields = _fields(ref_value, norm) if ref_value is not None else Counter()
    if pred_value is None:
        return False, 0, 0, sum(ref_fields.values())
    pred_fields = _fields(pred_value, norm)
    tp = sum((pred_fields & ref_fields).values())
    return True, tp, sum(pred_fields.values()), sum(ref_fields.values())


def _check_str(value: Any, what: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{what} is {type(value).__name__} ({value!r:.60}), expected str")


def _check_lists(predictions: Sequence[str], references: Sequence[str]) -> tuple[list[str], list[str]]:
    for name, seq in (("predictions", predictions), ("references", references)):
        if isinstance(seq, (str, bytes)) or not isinstance(seq, Sequence):
            raise TypeError(f"{name} must be a list of strings, not {type(seq).__name__}")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references; they must pair up")
    if not predictions:
        raise ValueError("no samples to score")
    for name, seq in (("predictions", predictions), ("references", references)):
        for i, value in enumerate(seq):
            _check_str(value, f"{name}[{i}]")
    return list(predictions), list(references)
