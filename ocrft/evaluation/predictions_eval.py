"""task=eval with model=predictions: score what another engine read, like any model.

    python -m ocrft task=eval model=predictions model.path=LINES data=line_folder data.path=LINES
    python -m ocrft task=eval model=predictions model.path=tesseract_alto data=page_xml data.path=OUT

No model is loaded and nothing is generated: the engine's output is read and aligned with
the split's records (:mod:`ocrft.data.predictions`), then scored like any predictor's output
(:func:`ocrft.evaluation.scoring.score_outputs`), so reports and comparisons take it like any
other results file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from ocrft.config import ConfigError
from ocrft.data.predictions import match_predictions
from ocrft.data.record import Record
from ocrft.evaluation.generation import Generation
from ocrft.evaluation.predictor import Report


class PredictionsPredictor:
    """Another engine's readings at ``model.path``, aligned with the records; reads no image.

    The results name the model ``predictions:<folder or file name>`` (or ``model.name``). Its
    :meth:`report` adds ``unmatched`` (records without a prediction, scored as empty, and
    predictions without a record, counted and named) and ``predictions`` (source, kind, match
    mode, samples matched by id, position, region or page) to the results, and the metrics
    ``missing_predictions`` and ``extra_predictions``.
    """

    reads_images = False

    def __init__(self, model_cfg: Any):
        self.model_cfg = model_cfg
        self._matched: Any = None

    @classmethod
    def from_config(cls, cfg: Any, *, task: str, run_dir: Optional[Path] = None, tracker: Any = None) -> "PredictionsPredictor":
        return cls(cfg.model)

    def predict(self, records: Sequence[Record], on_batch: Optional[Any] = None) -> list[Generation]:
        model = self.model_cfg
        self._matched = match_predictions(records, model.path, model.predictions_suffix, model.predictions_match)
        repeats = self._matched.repeats or [[] for _ in self._matched.texts]
        # several readings of one page (olmOCR-Bench repeats): all of them are scored
        outputs = [Generation(text, meta={"repeats": reps} if len(reps) > 1 else {})
                   for text, reps in zip(self._matched.texts, repeats)]  # fmt: skip
        if on_batch is not None:
            on_batch(list(range(len(outputs))), outputs)
        return outputs

    def read(self, images: Sequence[Any], prompts: Sequence[str], max_new_tokens: Optional[int] = None) -> list[Generation]:
        raise ConfigError("model.backend=predictions reads no image: it scores another engine's output with task=eval")

    def describe(self) -> dict:
        from ocrft.provenance import describe_model

        return describe_model(self.model_cfg)

    def report(self, outputs: Sequence[Generation]) -> Report:
        matched, model = self._matched, self.model_cfg
        unmatched = matched.unmatched()
        extra = {
            "unmatched": unmatched,
            "predictions": {"path": str(model.path), "kind": matched.kind, "match": model.predictions_match,
                            "matched_by": dict(matched.matched_by)},  # fmt: skip
        }
        counts = {k: unmatched[k] for k in ("missing_predictions", "extra_predictions")}
        return Report(metrics=counts, extra=extra)

    def close(self) -> None:
        pass
