"""One MLflow run, written through ``MlflowClient`` (never the fluent API's global run).

Metrics are buffered and sent in batches; params are write-once; every param, tag and text
artifact is scrubbed of secrets (``ocrft.redact``: secret-named keys and the values of
secret-named environment variables). Opening the run is ocrft.tracking.runs'.
"""

from __future__ import annotations

import json
import logging
import numbers
import re
import shutil
import tempfile
import threading
import time
import traceback
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from ocrft.atomic import DiskFullError, disk_full_errno
from ocrft.redact import REDACTED, is_secret_key, scrub_text, secret_values
from ocrft.tracking.inputs import dataset_inputs

if TYPE_CHECKING:  # annotations only; neither imports ocrft.tracking
    import pandas

    from ocrft.data.record import Record

log = logging.getLogger(__name__)

# Metrics are buffered and sent in one request every FLUSH_SECONDS (or FLUSH_ITEMS rows,
# MLflow's log_batch limit), so a training step never waits on the store.
FLUSH_SECONDS = 10.0
FLUSH_ITEMS = 1000
# MLflow's limits (mlflow.utils.validation); longer values are rejected, so we truncate.
_MAX_PARAM_LEN = 6000
_MAX_TAG_LEN = 8000
_PARAMS_PER_BATCH = 100
# ocrft run status -> MLflow run status. A pruned trial was stopped on purpose: KILLED.
_MLFLOW_STATUS = {"finished": "FINISHED", "failed": "FAILED", "pruned": "KILLED", "killed": "KILLED"}
_TEXT_SUFFIXES = {".txt", ".log", ".json", ".jsonl", ".yaml", ".yml", ".md", ".html", ".csv", ".tsv", ".xml"}


class MlflowTracker:
    """One MLflow run, written through ``MlflowClient`` (no global active run)."""

    def __init__(self, client, run_id: str, logged_params: Optional[dict[str, str]] = None):
        self.client = client
        self.run_id = run_id
        self._secrets = secret_values()
        self._params = dict(logged_params or {})  # MLflow params are write-once
        self._status = "finished"
        self._lock = threading.Lock()
        self._buffer: list = []
        self._last_flush = time.monotonic()

    def _scrub(self, value: Any) -> str:
        return scrub_text(str(value), self._secrets)

    def log_params(self, params: dict[str, Any]) -> None:
        """Log params; nested dicts become dotted keys, lists JSON. A key already logged with
        another value (a resumed run whose config changed) is kept and a warning names it."""
        from mlflow.entities import Param

        rows = []
        for key, value in _flatten(params).items():
            value = REDACTED if is_secret_key(key.rsplit(".", 1)[-1]) else self._scrub(value)[:_MAX_PARAM_LEN]
            if key in self._params:
                if self._params[key] != value:
                    old = self._params[key]
                    log.warning("MLflow param %s keeps %r (now %r): params are write-once", key, old, value)
                continue
            self._params[key] = value
            rows.append(Param(key, value))
        for i in range(0, len(rows), _PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=rows[i : i + _PARAMS_PER_BATCH], synchronous=True)

    def log_metrics(self, metrics: dict[str, float], step: Optional[int] = None) -> None:
        """Buffer numeric metrics (others are skipped); sent every FLUSH_SECONDS or FLUSH_ITEMS."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        rows = [
            Metric(_metric_key(k), float(v), now, step or 0) for k, v in metrics.items() if isinstance(v, numbers.Real)
        ]
        with self._lock:
            self._buffer.extend(rows)
            due = len(self._buffer) >= FLUSH_ITEMS or time.monotonic() - self._last_flush >= FLUSH_SECONDS
        if due:
            self.flush()

    def flush(self) -> None:
        """Send buffered metrics now. A failing store costs the metrics, never the run."""
        with self._lock:
            rows, self._buffer = self._buffer, []
            self._last_flush = time.monotonic()
        for i in range(0, len(rows), FLUSH_ITEMS):
            try:
                self.client.log_batch(self.run_id, metrics=rows[i : i + FLUSH_ITEMS], synchronous=True)
            except Exception as err:  # noqa: BLE001 - tracking must not kill training
                log.warning("MLflow: dropped %d metrics: %s", len(rows[i : i + FLUSH_ITEMS]), err)

    def set_tags(self, tags: dict[str, Any]) -> None:
        """Set tags; values are scrubbed of secrets and truncated to MLflow's limit."""
        from mlflow.entities import RunTag

        rows = [
            RunTag(k, REDACTED if is_secret_key(k.rsplit(".", 1)[-1]) else self._scrub(v)[:_MAX_TAG_LEN])
            for k, v in tags.items()
        ]
        for i in range(0, len(rows), _PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, tags=rows[i : i + _PARAMS_PER_BATCH], synchronous=True)

    def log_artifact(self, path: str | Path, artifact_path: Optional[str] = None) -> None:
        """Log a file, or a folder under its own name (or ``artifact_path``). Text files that
        contain a secret are uploaded as scrubbed copies; the originals are left alone.

        Raises:
            DiskFullError: the artifact store (a local folder) is full. It names the artifact;
                its partial copy is removed and the local file is untouched.
        """
        local = path = Path(path)
        try:
            with tempfile.TemporaryDirectory(prefix="ocrft-artifact-") as tmp:
                if path.is_dir():
                    files = [p for p in path.rglob("*") if p.is_file()]
                    if any(self._scrubbed(p) is not None for p in files):
                        staged = Path(tmp) / path.name
                        shutil.copytree(path, staged)
                        for p in files:
                            self._scrub_file(staged / p.relative_to(path))
                        path = staged
                    self.client.log_artifacts(self.run_id, str(path), artifact_path or path.name)
                else:
                    text = self._scrubbed(path)
                    if text is not None:
                        path = Path(tmp) / path.name
                        path.write_text(text, encoding="utf-8")
                    self.client.log_artifact(self.run_id, str(path), artifact_path)
        except Exception as err:
            if isinstance(err, DiskFullError) or (code := disk_full_errno(err)) is None:
                raise
            name = (artifact_path or local.name) if local.is_dir() else f"{artifact_path or '.'}/{local.name}"
            target = self._drop_partial(name.removeprefix("./"))
            raise DiskFullError(code, target, f"the local {local} is kept; only its MLflow copy is missing") from err

    def _drop_partial(self, artifact: str) -> str:
        """Remove what a failed upload left of ``artifact`` (a local store); returns where it went."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
        from mlflow.utils.file_utils import local_file_uri_to_path
        from mlflow.utils.uri import is_local_uri

        root = self.client.get_run(self.run_id).info.artifact_uri
        if not is_local_uri(root):
            return f"{root}/{artifact}"
        try:
            get_artifact_repository(root).delete_artifacts(artifact)
        except OSError as err:
            log.warning("MLflow: could not remove the partial artifact %s: %s", artifact, err)
        return f"{local_file_uri_to_path(root)}/{artifact}"

    def _scrubbed(self, path: Path) -> Optional[str]:
        """The scrubbed text of ``path`` if it is a text file holding a secret, else None."""
        if path.suffix.lower() not in _TEXT_SUFFIXES:
            return None
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            return None
        clean = scrub_text(text, self._secrets)
        return clean if clean != text else None

    def _scrub_file(self, path: Path) -> None:
        text = self._scrubbed(path)
        if text is not None:
            path.write_text(text, encoding="utf-8")

    def log_datasets(
        self, data_cfg: Any, splits: Mapping[str, Sequence[Record]], sources: Mapping[str, str], *, generated: bool
    ) -> None:
        """Log each non-empty split of ``splits`` (name -> records, read from ``sources[name]``)
        as an MLflow dataset input with its context (ocrft.tracking.inputs). ``generated``: the
        splits were rendered on the fly (``LoadedData.generated``), so the dataset is named by
        its format alone."""
        datasets = dataset_inputs(data_cfg, splits, sources, generated=generated)
        self.client.log_inputs(self.run_id, datasets=datasets)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Log ``text`` (scrubbed) as the artifact ``artifact_file``."""
        self.client.log_text(self.run_id, self._scrub(text), artifact_file)

    def log_table(self, frame: pandas.DataFrame, artifact_file: str) -> None:
        """Log a pandas DataFrame as the MLflow table ``artifact_file`` (.json), text cells scrubbed.

        Written as ``MlflowClient.log_table`` writes it (``mlflow.load_table`` and the run page
        read it), except that logging it again replaces it: the client appends, which would
        double the rows each time a run folder is re-run (a re-run continues its MLflow run).
        """
        from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_ARTIFACTS

        folder, _, name = artifact_file.rpartition("/")
        frame = frame.map(lambda v: self._scrub(v) if isinstance(v, str) else v)
        with tempfile.TemporaryDirectory(prefix="ocrft-table-") as tmp:
            frame.to_json(Path(tmp) / name, orient="split", index=False, date_format="iso")
            self.client.log_artifact(self.run_id, str(Path(tmp) / name), folder or None)
        tables = json.loads(self.client.get_run(self.run_id).data.tags.get(MLFLOW_LOGGED_ARTIFACTS, "[]"))
        if {"path": artifact_file, "type": "table"} not in tables:
            tables.append({"path": artifact_file, "type": "table"})
            self.client.set_tag(self.run_id, MLFLOW_LOGGED_ARTIFACTS, json.dumps(tables))

    def set_terminal_status(self, status: str) -> None:
        """How the run ends if no exception escapes: finished, failed, pruned or killed."""
        if status not in _MLFLOW_STATUS:
            raise ValueError(f"status={status!r}; choose one of {sorted(_MLFLOW_STATUS)}")
        self._status = status

    def close(self, error: Optional[BaseException] = None) -> None:
        """Flush and end the run: KILLED on Ctrl-C, FAILED on any other error, else the
        status set by ``set_terminal_status`` (finished by default)."""
        self.flush()
        status = self._status
        if isinstance(error, KeyboardInterrupt):
            status = "killed"
        elif error is not None:
            status = "failed"
            self.set_tags({"ocrft.error": f"{type(error).__name__}: {error}"})
            try:  # the run must still end FAILED when the artifact store is what failed
                self.log_text("".join(traceback.format_exception(error)), "error.txt")
            except Exception as err:  # noqa: BLE001
                log.warning("MLflow: could not upload error.txt: %s", err)
        self.set_tags({"ocrft.status": status})
        self.client.set_terminated(self.run_id, _MLFLOW_STATUS[status])


def _metric_key(key: str) -> str:
    # MLflow rejects a whole batch over one bad name; replace what it does not allow.
    return re.sub(r"[^\w\-. :/]", "_", key)


def _flatten(obj: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, name + "."))
        elif isinstance(value, (dict, list, tuple)):
            out[name] = json.dumps(value, ensure_ascii=False, default=str)
        else:
            out[name] = str(value.value if isinstance(value, Enum) else value)
    return out
