"""Hugging Face datasets: whatever ``datasets`` loads, read into records without decoding images.

``data.path`` may be:

- a ``save_to_disk`` folder (a Dataset or a DatasetDict): ``datasets.load_from_disk``;
- a ``.parquet`` or ``.arrow`` file (one split: divided by the ratios);
- a folder ``datasets.load_dataset`` understands: parquet/arrow files (the hub's layout
  ``data/train-00000-of-00001.parquet``, split names from the file names), or an imagefolder
  with ``metadata.jsonl`` / ``metadata.csv``;
- anything else is taken as a hub id for ``datasets.load_dataset`` (needs a network).

``data.image_column`` (default ``image``) holds an Image feature ({"bytes", "path"}) or a path
string; ``data.text_column`` (default ``text``) the target. The image column is cast to
``Image(decode=False)``, so nothing is decoded up front: embedded bytes are written once to the
image cache, named by their SHA-256 (like decoded ``data:`` URLs), and a path-only image is
resolved against the dataset folder. Split names train, validation / val / valid / dev and test
map to ocrft's train/val/test; other splits are left out (logged). A dataset with one split is
divided by the ratios like a single data file.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Optional

from ocrft import paths
from ocrft.config import ConfigError, OnError
from ocrft.data.reading import WHOLE, BadRecord, Collector, ReadResult, cache_image_bytes, checked_image
from ocrft.data.record import DataError, Record

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
SPLIT_NAMES = {"train": "train", "validation": "val", "val": "val", "valid": "val", "dev": "val", "test": "test"}
FILE_BUILDERS = {".parquet": "parquet", ".arrow": "arrow"}  # a single file -> its datasets builder
# Magic numbers of the formats PIL reads most often, for naming cached files.
_MAGIC = {b"\x89PNG": ".png", b"\xff\xd8\xff": ".jpg", b"II*\x00": ".tif", b"MM\x00*": ".tif", b"GIF8": ".gif",
          b"RIFF": ".webp", b"BM": ".bmp"}


def _is_saved(folder: Path) -> bool:
    # what save_to_disk writes: dataset_dict.json for a DatasetDict, state.json for a Dataset
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()


def load(source: str) -> tuple[Any, Optional[Path]]:
    """Load ``source`` with ``datasets``: ``(Dataset or DatasetDict, folder paths resolve against)``.

    Raises:
        DataError: the source cannot be loaded (the message says what was tried and why).
    """
    import datasets

    path = Path(source).expanduser()
    cache = str(paths.cache_dir() / "hf_datasets")  # Arrow files datasets builds from local files
    try:
        if path.is_dir() and _is_saved(path):
            return datasets.load_from_disk(str(path)), path
        if path.is_file():
            builder = FILE_BUILDERS.get(path.suffix.lower())
            if builder is None:
                raise DataError(f"data=hf_dataset reads .parquet or .arrow files (or folders); not {path.suffix!r}", path)
            return datasets.load_dataset(builder, data_files=str(path), split="train", cache_dir=cache), path.parent
        if path.is_dir():
            return datasets.load_dataset(str(path), cache_dir=cache), path
    except DataError:
        raise
    except Exception as e:  # datasets raises many types; one clear message either way
        raise DataError(f"datasets could not load this: {type(e).__name__}: {e}", path) from e
    if not _HUB_ID.fullmatch(source):
        raise ConfigError(f"data.path={source} does not exist (and is not a hub dataset id like 'owner/name')")
    log.info("data.path=%s is not a local path: loading it from the Hugging Face hub", source)
    try:
        return datasets.load_dataset(source), None
    except Exception as e:
        raise DataError(f"not a local path, and the hub dataset could not be loaded "
                        f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})", source) from e


def _check_columns(ds: Any, image_column: str, text_column: str, where: str) -> None:
    columns = list(ds.column_names)
    for key, column in (("data.image_column", image_column), ("data.text_column", text_column)):
        if column not in columns:
            raise ConfigError(f"{key}={column!r} is not a column of {where}; its columns: {columns}")


def _suffix(raw: bytes, name: Optional[str]) -> str:
    if name and Path(name).suffix:
        return Path(name).suffix.lower()
    return next((ext for magic, ext in _MAGIC.items() if raw.startswith(magic)), ".img")


def _image(value: Any, base: Optional[Path], cache_dir: Path) -> str:
    """An image cell (Image feature undecoded, raw encoded bytes as pandas and webdataset
    exports hold them, or a path string) -> a checked file path."""
    if isinstance(value, dict):
        raw, name = value.get("bytes"), value.get("path")
    elif isinstance(value, (bytes, bytearray)):
        raw, name = value, None
    else:
        raw, name = None, value
    local = None
    if isinstance(name, str) and name:
        local = Path(name) if Path(name).is_absolute() or base is None else base / name
    if raw:
        path = Path(cache_image_bytes(bytes(raw), _suffix(bytes(raw), name), cache_dir))
        try:
            return checked_image(path)
        except BadRecord as e:  # the cache file's name says nothing: name the cell's file too
            raise BadRecord(e.reason, f"embedded image {name or ''!r}: {e}") from e
    if raw is not None and not (local and local.is_file()):  # bytes lost in an export, no file either
        raise BadRecord("unreadable_image", f"embedded image {name or ''!r} is empty (0 bytes)")
    if local is None:
        raise BadRecord("missing_image", f"no image bytes or path: {value!r:.60}")
    return checked_image(local)


def _read_one(ds: Any, split: str, base: Optional[Path], col: Collector, *, image_column: str, text_column: str) -> None:
    from datasets import Image

    _check_columns(ds, image_column, text_column, f"the {split!r} split of {col.path}")
    if isinstance(ds.features[image_column], Image):
        ds = ds.cast_column(image_column, Image(decode=False))  # bytes and path, no PIL decoding
    has_id = "id" in ds.column_names
    ds = ds.select_columns([image_column, text_column] + (["id"] if has_id else []))
    for index, row in enumerate(ds):
        label = f"{split} row {index}: "
        try:
            image = _image(row[image_column], base, col.cache_dir)
            text = row[text_column]
            if not isinstance(text, str):
                raise BadRecord("non_string_text", f"{text_column!r} must be a string, got {type(text).__name__}")
            if not text.strip():
                raise BadRecord("empty_text", f"{text_column!r} is empty")
        except BadRecord as e:
            col.bad(e.reason, f"{label}{e}", None)
            continue
        rid = str(row["id"]) if has_id and row["id"] not in (None, "") else f"{split}/{index}"
        if rid in col.ids:
            col.bad("duplicate_id", f"{label}duplicate id {rid!r}", None)
            continue
        col.ids.add(rid)
        col.result.records.append(Record(id=rid, image=image, text=text, group=image, meta={"hf_split": split}))


def read_hf_splits(source: str | os.PathLike, on_error: str | OnError = "raise", cache_dir: Optional[Path] = None, *,
                   image_column: str = "image", text_column: str = "text") -> dict[str, ReadResult]:
    """Read a dataset into ocrft's splits (``{WHOLE: ...}`` when it has one split).

    Raises:
        ConfigError: a column is missing (the message lists the columns there are).
        DataError: the dataset cannot be loaded, or a record is bad (with on_error=raise).
    """
    import datasets

    ds, base = load(str(source))
    if isinstance(ds, datasets.Dataset):
        named = {WHOLE: ds}
    else:
        known = {name: SPLIT_NAMES[name.lower()] for name in ds if name.lower() in SPLIT_NAMES}
        if len(ds) == 1:
            named = {WHOLE: next(iter(ds.values()))}
        elif not known:
            raise DataError(f"no split is named {'/'.join(SPLIT_NAMES)}: it has {list(ds)}", source)
        else:
            left = sorted(set(ds) - set(known))
            if left:
                log.warning("%s: splits %s are not train/validation/test: left out", source, left)
            named = {}
            for name, split in known.items():
                if split in named:
                    raise DataError(f"two splits map to ocrft's {split!r}: {[n for n in known if known[n] == split]}", source)
                named[split] = ds[name]
    out: dict[str, ReadResult] = {}
    for split, part in named.items():
        col = Collector(Path(source), on_error, cache_dir)
        _read_one(part, split, base, col, image_column=image_column, text_column=text_column)
        out[split] = col.result
    return out


def read_hf_dataset(source: str | os.PathLike, on_error: str | OnError = "raise", cache_dir: Optional[Path] = None, *,
                    image_column: str = "image", text_column: str = "text") -> ReadResult:
    """Read every split of a dataset as one pool (for ``data.<split>_file``)."""
    result = ReadResult()
    for part in read_hf_splits(source, on_error, cache_dir, image_column=image_column, text_column=text_column).values():
        result.records += part.records
        result.skipped.update(part.skipped)
        result.errors += part.errors
    return result
