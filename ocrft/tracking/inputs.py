"""The data a run read, as MLflow dataset inputs (the runs table's "Dataset" column).

What ``mlflow.log_input(dataset, context=...)`` would log, built for ``MlflowClient.log_inputs``
(ocrft.tracking.mlflow_tracker writes through a client, never the fluent API's global run):

- name: ``<data.format>:<data.path>`` (or the split's file when the splits come from
  separate files, or the format alone for generated data: the caller says which, from
  ``ocrft.data.loading.LoadedData.generated``, so tracking needs no data code);
- digest: a hash of the records themselves (id, text, image path), so two runs on the same
  samples show the same digest and a changed label shows a new one;
- source: a ``local`` source (mlflow.data's LocalArtifactDatasetSource) naming the file read;
- profile: ``{"num_rows": N}``, as mlflow.data's Hugging Face dataset writes it;
- input tag ``mlflow.data.context``: train, validation or test.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:  # annotations only; ocrft.data never imports ocrft.tracking
    from ocrft.data.record import Record

# ocrft split name -> MLflow dataset context (the tag the UI shows beside the dataset)
CONTEXTS = {"train": "train", "val": "validation", "test": "test"}
# mlflow.utils.mlflow_tags.MLFLOW_DATASET_CONTEXT
CONTEXT_TAG = "mlflow.data.context"
_MAX_NAME = 500  # the datasets table's name column
DIGEST_CHARS = 10  # MLflow recommends at most 10 (mlflow.data.dataset.Dataset._compute_digest)


def records_digest(records: Sequence[Record]) -> str:
    """A hash of the records' ids, texts and image paths, in order."""
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps([r.id, r.text, str(r.image)], ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()[:DIGEST_CHARS]


def _source_path(source: str) -> str:
    # ocrft.data.loading describes a file split on the fly as "<path> (split 0.8/0.1, seed 42)"
    return source.split(" (split ", 1)[0]


def dataset_name(data_cfg: Any, source: str, *, generated: bool) -> str:
    """``<format>:<data.path>``, the split's file without data.path, or the format alone."""
    fmt = str(data_cfg.format)
    if generated:  # rendered on the fly: the settings are the run's params
        return fmt
    where = getattr(data_cfg, "path", None) or _source_path(source)
    return (f"{fmt}:{where}" if where else fmt)[:_MAX_NAME]


def dataset_inputs(
    data_cfg: Any, splits: Mapping[str, Sequence[Record]], sources: Mapping[str, str], *, generated: bool
) -> list:
    """One ``mlflow.entities.DatasetInput`` per non-empty split, tagged with its context;
    ``generated``: the splits were rendered on the fly (named by data.format alone)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    out = []
    for split, records in splits.items():
        if not records:
            continue
        source = sources.get(split) or ""
        uri = str(Path(_source_path(source)).expanduser().resolve()) if source else ""
        dataset = Dataset(
            name=dataset_name(data_cfg, source, generated=generated),
            digest=records_digest(records),
            source_type="local",
            # what mlflow.data's LocalArtifactDatasetSource(uri).to_json() writes (a class
            # mlflow generates at import, so not importable by name)
            source=json.dumps({"uri": uri}),
            profile=json.dumps({"num_rows": len(records)}),
        )
        out.append(DatasetInput(dataset, tags=[InputTag(CONTEXT_TAG, CONTEXTS.get(split, split))]))
    return out
