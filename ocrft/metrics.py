"""OCR metrics, per sample and per corpus, computed after a recorded normalization.

Definitions (``h`` = normalized prediction, ``r`` = normalized reference):

- **CER**: character Levenshtein distance / ``len(r)``. Corpus ``cer`` = total edits / total
  reference characters (insertions against an empty reference count); ``mean_cer`` = mean of
  sample CERs. A sample with an empty reference has CER 0.0 if ``h`` is empty, else 1.0 (its
  insertions still count in the corpus CER).
- **WER**: the same on whitespace tokens (``str.split``), with the same empty-reference rule.
- **char precision / recall / F1**: multiset overlap ``o`` of characters (spaces included);
  P = o/len(h), R = o/len(r). Corpus values are micro-averaged over all characters;
  ``mean_char_f1`` averages sample F1s. Two empty strings score 1.0; against one empty side
  the undefined ratio is 0.0.
- **ned**: mean over samples of edits / max(len(h), len(r)) (0.0 for two empty strings), in 0..1.
- **exact_match**: share of samples with ``h == r``.
- **bleu, ter**: sacrebleu corpus scores on 0..100 (see :func:`_ter`) for the tokenizer choice.
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

import json
import re
from collections import Counter
from functools import lru_cache
from typing import Any, Callable, Optional, Sequence

from rapidfuzz.distance import Levenshtein

from ocrft.normalize import normalizer

BLEU_TOKENIZERS = ("13a", "zh", "char", "none")

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


def _counts(h: str, r: str) -> tuple[int, int, int, int, int, int, int]:
    """(char edits, ref chars, hyp chars, char overlap, word edits, ref words, hyp words)."""
    hw, rw = h.split(), r.split()
    overlap = sum((Counter(h) & Counter(r)).values())
    return Levenshtein.distance(h, r), len(r), len(h), overlap, Levenshtein.distance(hw, rw), len(rw), len(hw)


def _stats(h: str, r: str, counts: Optional[tuple[int, ...]] = None) -> dict[str, Any]:
    """Sample scores of normalized ``h`` against ``r`` (from their ``_counts`` if given)."""
    ced, nr, nh, overlap, wed, nrw, _ = counts or _counts(h, r)
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
    prediction: str, reference: str, normalization: Any = None, json_target: bool = False
) -> dict[str, Any]:
    """Scores of one sample: cer, wer, ned, char_precision, char_recall, f1, exact_match,
    degenerate, and for JSON targets json_valid and json_field_precision/recall/f1.

    Args:
        normalization: a NormalizationConfig, DictConfig or dict; None = compare raw text.
    """
    _check_str(prediction, "prediction")
    _check_str(reference, "reference")
    norm = normalizer(normalization)
    out = _stats(norm(prediction), norm(reference))
    if json_target:
        out.update(_json_sample(prediction, reference, norm)[0])
    return out


def score(
    predictions: Sequence[str],
    references: Sequence[str],
    normalization: Any = None,
    bleu_tokenize: str = "13a",
    json_target: Optional[bool] = None,
) -> dict[str, float]:
    """Corpus metrics of ``predictions`` against ``references`` (see the module docstring).

    Args:
        predictions: model outputs, one string per sample.
        references: targets, same length and order.
        normalization: NormalizationConfig / DictConfig / dict; None = compare raw text.
        bleu_tokenize: sacrebleu tokenizer: 13a (Latin, Cyrillic), zh, char (CJK), none.
        json_target: add JSON field metrics; None = when every reference is a JSON object/array.

    Raises:
        TypeError: a non-string element (its index is named) or a bare string for a list.
        ValueError: different lengths, no samples, or an unknown tokenizer.
    """
    return score_detailed(predictions, references, normalization, bleu_tokenize, json_target)[0]


def score_detailed(
    predictions: Sequence[str],
    references: Sequence[str],
    normalization: Any = None,
    bleu_tokenize: str = "13a",
    json_target: Optional[bool] = None,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """:func:`score` plus every sample's :func:`score_sample` dict, from one pass."""
    preds, refs = _check_lists(predictions, references)
    if bleu_tokenize not in BLEU_TOKENIZERS:
        raise ValueError(f"bleu_tokenize={bleu_tokenize!r}; choose one of {list(BLEU_TOKENIZERS)}")
    if json_target is None:
        json_target = all(_parse_json(r) is not None for r in refs)
    norm = normalizer(normalization)
    hyps, refs_n = [norm(p) for p in preds], [norm(r) for r in refs]

    n = len(hyps)
    tot = [0] * 7  # corpus sums of the _counts fields
    json_tot = [0] * 4  # valid, matched, predicted, reference fields
    samples = []
    for i, (h, r) in enumerate(zip(hyps, refs_n)):
        counts = _counts(h, r)
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
        "bleu": _bleu(hyps, refs_n, bleu_tokenize),
        "ter": _ter(hyps, refs_n, bleu_tokenize),
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


def _bleu(hyps: list[str], refs: list[str], tokenize: str) -> float:
    from sacrebleu.metrics import BLEU

    return float(BLEU(tokenize=tokenize).corpus_score(hyps, [refs]).score)


def _ter(hyps: list[str], refs: list[str], tokenize: str) -> float:
    """sacrebleu TER, always case-sensitive (case folding is the normalization's job).

    TER has no tokenizer option, so the BLEU choice is mapped onto TER's own options:
    ``none`` = whitespace tokens; ``13a`` = tercom's punctuation-splitting normalization;
    ``zh`` and ``char`` = that plus ``asian_support``, which makes each CJK character a token
    (Latin words stay words). A fully character-level TER was rejected: TER's shift search is
    built for word sequences and took ~9 s per 10k lines here against ~1 s.
    """
    from sacrebleu.metrics import TER

    metric = TER(case_sensitive=True, normalized=tokenize != "none", asian_support=tokenize in ("zh", "char"))
    return float(metric.corpus_score(hyps, [refs]).score)


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
