"""The results file: a superset of the Gemma-OCR evaluation JSON.

    {"overall_cer", "overall_f1", "total_samples", "timestamp", "model_name",
     "metrics": {...}, "normalization": {...},
     "metric_settings": {"cer_unit", "bleu_tokenize", ...}, "signatures": {"bleu", "ter"},
     "samples": [{"id", "image_path", "label", "prediction", "cer_score", "f1_score",
                  "wer_score", "ned", "exact_match", "degenerate", "error"?, ...}], ...extra}

``overall_cer`` is the corpus CER and ``overall_f1`` the corpus (micro) character F1; the
sample means are in ``metrics``. ``metric_settings`` (:class:`ocrft.evaluation.metrics.MetricSettings`)
and sacrebleu's ``signatures`` say how the scores were counted. Files written by the
Gemma-OCR seed (no ``metrics``, ``normalization`` or ``id``) and by ocrft before
``metric_settings`` existed load unchanged; a stored ``normalization`` dict is read with
:func:`ocrft.evaluation.normalize.stored_normalization` (a missing flag was not applied).
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from ocrft import atomic
from ocrft.evaluation.document_scores import SAMPLE_KEYS as DOCUMENT_KEYS, score_documents
from ocrft.evaluation.metrics import MetricSettings, count_looped, score_detailed
from ocrft.evaluation.normalize import normalization_dict
from ocrft.evaluation.olmocr_scoring import score_checks

CORE_KEYS = (
    "overall_cer", "overall_f1", "total_samples", "timestamp", "model_name", "metrics", "normalization",
    "metric_settings", "signatures", "samples",
)  # fmt: skip
# Per-sample score fields (results key -> score_sample key); re-scoring overwrites them.
SAMPLE_SCORES = {
    "cer_score": "cer",
    "f1_score": "f1",
    "wer_score": "wer",
    "ned": "ned",
    "exact_match": "exact_match",
    "degenerate": "degenerate",
}


def score_samples(
    rows: list[dict],
    normalization_cfg: Any,
    settings: Optional[MetricSettings] = None,
    json_target: Optional[bool] = None,
) -> tuple[dict[str, float], list[dict]]:
    """Score result rows; rows carrying an ``error`` are left out of the scores but counted.

    Args:
        rows: dicts with id, image_path, label, prediction and optionally error.
        normalization_cfg: NormalizationConfig / DictConfig / dict (None = raw text).
        settings, json_target: see :func:`ocrft.evaluation.metrics.score` (None = defaults, detect).

    Returns:
        (metrics including ``num_errors``, copies of the rows with per-sample scores; rows
        with an error get None scores).

    Raises:
        TypeError: a row without an error whose label or prediction is not a string.
    """
    # Validate the flags once; a DictConfig would otherwise be converted for every row.
    normalization_cfg = normalization_dict(normalization_cfg)
    ok = [i for i, row in enumerate(rows) if not row.get("error")]
    for i in ok:
        for key in ("label", "prediction"):
            if not isinstance(rows[i].get(key), str):
                raise TypeError(
                    f"sample {i} (id={rows[i].get('id')!r}): {key} is {type(rows[i].get(key)).__name__}, expected str"
                )
    num_errors = len(rows) - len(ok)
    per_sample: dict[int, dict] = {}
    per_document: dict[int, dict] = {}  # teds, bow_f1, ... (ocrft.evaluation.document_scores)
    if ok:
        metrics, sample_scores = score_detailed(
            [rows[i]["prediction"] for i in ok], [rows[i]["label"] for i in ok], normalization_cfg, settings,
            json_target=json_target,
        )
        per_sample = dict(zip(ok, sample_scores))
        doc_metrics, doc_samples = score_documents(
            [rows[i]["prediction"] for i in ok], [rows[i]["label"] for i in ok], normalization_cfg
        )
        metrics.update(doc_metrics)
        per_document = dict(zip(ok, doc_samples))
        count_looped(metrics, sample_scores, [bool(rows[i].get("looped")) for i in ok])
    else:
        metrics = {"num_samples": 0}
    metrics["num_errors"] = num_errors
    metrics["error_rate"] = num_errors / len(rows) if rows else 0.0

    scored = []
    for i, row in enumerate(rows):
        out = {k: v for k, v in row.items() if k not in DOCUMENT_KEYS}
        s = per_sample.get(i)
        out.update({key: (s[src] if s else None) for key, src in SAMPLE_SCORES.items()})
        if s and "json_valid" in s:
            out.update(json_valid=s["json_valid"], json_field_f1=s["json_field_f1"])
        out.update(per_document.get(i, {}))
        scored.append(out)
    metrics.update(score_checks(scored))  # olmOCR-Bench samples: checks per sample, olmocr/* metrics
    return metrics, scored


def build_results(
    samples: list[dict],
    model_name: str,
    normalization: dict,
    metrics: dict,
    *,
    extra: Optional[dict] = None,
    settings: Optional[MetricSettings] = None,
) -> dict:
    """Assemble a results dict (see the module docstring); ``extra`` adds top-level keys.

    ``settings`` must be those the metrics were scored with (None = the defaults, as for
    :func:`score_samples`); they and their sacrebleu signatures are recorded.

    Raises:
        ValueError: when ``extra`` would overwrite one of the core keys.
    """
    clash = sorted(set(extra or {}) & set(CORE_KEYS))
    if clash:
        raise ValueError(f"extra keys {clash} would overwrite core results keys")
    settings = settings or MetricSettings()
    return {
        "overall_cer": metrics.get("cer"),
        "overall_f1": metrics.get("char_f1"),
        "total_samples": len(samples),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model_name": model_name,
        "metrics": metrics,
        "normalization": normalization_dict(normalization),
        "metric_settings": settings.as_dict(),
        "signatures": settings.signatures(),
        "samples": samples,
        **(extra or {}),
    }


def rescore_results(
    results: dict,
    normalization_cfg: Any,
    settings: Optional[MetricSettings] = None,
    json_target: Optional[bool] = None,
) -> dict:
    """``results`` re-scored under ``normalization_cfg`` and ``settings`` (what the seed's
    count_score.py did).

    Raw labels and predictions are kept; scores, metrics, normalization, metric settings and
    signatures are replaced, and the previous ones (None where the file had none) and the
    headline scores are kept under ``rescored_from``.
    """
    settings = settings or MetricSettings()
    metrics, rows = score_samples(results["samples"], normalization_cfg, settings, json_target)
    extra = {k: v for k, v in results.items() if k not in CORE_KEYS}
    extra["rescored_from"] = {
        "timestamp": results.get("timestamp"),
        "overall_cer": results.get("overall_cer"),
        "overall_f1": results.get("overall_f1"),
        "normalization": results.get("normalization"),
        "metric_settings": results.get("metric_settings"),
        "signatures": results.get("signatures"),
    }
    name = results.get("model_name") or "unknown"
    return build_results(rows, name, normalization_cfg, metrics, extra=extra, settings=settings)


def to_frame(results: dict) -> pd.DataFrame:
    """The samples of ``results`` as a table: one row per sample, one column per key.

    Columns keep the file's order (id, image_path, label, prediction, the scores, then any
    key a later sample adds, such as ``error``); a score a failed sample lacks is NaN.
    The numbers are those of the file: nothing is re-scored.
    """
    return pd.DataFrame.from_records(results["samples"])


def write_results(path: str | Path, results: dict) -> Path:
    """Write ``results`` as JSON atomically (a kill never leaves half a file)."""
    return atomic.write_json(path, _finite(results))


def _finite(obj: Any) -> Any:
    # json.dumps would write NaN/Infinity, which is not JSON and breaks other readers.
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def load_results(path: str | Path) -> dict:
    """Read and validate a results file (ours or the Gemma-OCR seed's).

    Raises:
        FileNotFoundError: no such file.
        DataError (a ValueError): not JSON (e.g. truncated) or not the schema; the message
            names the file and the key or sample index at fault.
    """
    from ocrft.data.record import DataError

    path = Path(path)
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"not valid JSON (truncated or corrupt?): {err}", path) from err
    try:
        validate_results(results, where=str(path))
    except ValueError as err:  # a DataError, so the CLI reports it without a traceback
        raise DataError(str(err)) from err
    return results


def validate_results(results: Any, where: str = "results") -> None:
    """Raise ValueError naming ``where`` and the offending key if ``results`` is malformed."""
    if not isinstance(results, dict):
        raise ValueError(f"{where}: expected a JSON object with a 'samples' list, got {type(results).__name__}")
    if not isinstance(results.get("samples"), list):
        raise ValueError(f"{where}: missing key 'samples' (a list of samples)")
    for key in ("overall_cer", "overall_f1"):
        if not isinstance(results.get(key), (int, float, type(None))):
            raise ValueError(f"{where}: '{key}' must be a number or null, got {results[key]!r:.60}")
    for key in ("metrics", "normalization", "metric_settings", "signatures"):
        if not isinstance(results.get(key, {}), dict):
            raise ValueError(f"{where}: '{key}' must be an object")
    for i, sample in enumerate(results["samples"]):
        if not isinstance(sample, dict):
            raise ValueError(f"{where}: samples[{i}] must be an object, got {type(sample).__name__}")
        failed = bool(sample.get("error"))
        for key in ("label", "prediction"):
            if key not in sample:
                raise ValueError(f"{where}: samples[{i}] has no '{key}' key")
            value = sample[key]
            # A failed sample may carry no prediction; everything else must be text.
            if not isinstance(value, str) and not (failed and key == "prediction" and value is None):
                raise ValueError(f"{where}: samples[{i}].{key} must be a string, got {type(value).__name__}")
        for key in ("image_path", "id"):
            if not isinstance(sample.get(key), (str, int, type(None))):
                raise ValueError(f"{where}: samples[{i}].{key} must be a string, got {type(sample[key]).__name__}")
        for key in ("cer_score", "f1_score"):
            if not isinstance(sample.get(key), (int, float, type(None))):
                raise ValueError(f"{where}: samples[{i}].{key} must be a number or null")
