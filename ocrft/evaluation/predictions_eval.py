"""task=eval with model=predictions: score what another engine read, like any model.

    python -m ocrft task=eval model=predictions model.path=LINES data=line_folder data.path=LINES
    python -m ocrft task=eval model=predictions model.path=tesseract_alto data=page_xml data.path=OUT

No model is loaded and nothing is generated: the engine's output is read and aligned with
the split's records (:mod:`ocrft.data.predictions`), then goes through the same
:func:`ocrft.evaluation.scoring.score_and_write` as a local model or an endpoint, so reports and
comparisons take it like any other results file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ocrft.data.predictions import match_predictions
from ocrft.data.record import Record


def run_predictions_eval(cfg: Any, records: Sequence[Record], run_dir: Path, *, tracker: Any = None) -> tuple[dict, dict[str, str]]:
    """Read ``model.path``, align it with ``records``, score and write ``results.json``/``.html``.

    The results name the model ``predictions:<folder or file name>`` (or ``model.name``) and
    carry ``model`` (:func:`ocrft.provenance.describe_model`), ``unmatched`` (records
    without a prediction, scored as empty, and predictions without a record, counted and
    named) and ``predictions`` (source, kind, match mode, samples matched by id, position,
    region or page). Returns (metrics, paths) for
    :func:`ocrft.tasks.eval.run_eval`; metrics include ``missing_predictions`` and
    ``extra_predictions``.
    """
    from ocrft.evaluation.scoring import score_and_write
    from ocrft.provenance import describe_model

    model = cfg.model
    matched = match_predictions(records, model.path, model.predictions_suffix, model.predictions_match)
    unmatched = matched.unmatched()
    described = describe_model(model)
    extra = {
        "model": described,
        "unmatched": unmatched,
        "predictions": {"path": str(model.path), "kind": matched.kind, "match": model.predictions_match,
                        "matched_by": dict(matched.matched_by)},  # fmt: skip
    }
    metrics, paths = score_and_write(records, matched.texts, cfg.eval, described["name"], Path(run_dir),
                                     "results", extra=extra)  # fmt: skip
    counts = {k: unmatched[k] for k in ("missing_predictions", "extra_predictions")}
    return {**metrics, **counts}, paths
