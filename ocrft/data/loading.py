"""Turn ``data.*`` into train/val/test records.

Where each split comes from, first match wins:

1. ``data.format`` is a generator (``synthetic``, ``synthetic_invoice``): render
   ``data.num_<split>`` samples, seeded from ``data.split_seed`` and the split name, into a
   cache folder keyed by the generating settings, so repeated runs reuse the images;
2. ``data.<split>_file`` is set: read that file (for line_folder / hf_dataset, a folder or
   dataset read as one pool);
3. ``data.path`` is a folder holding ``<split><ext>`` files (``.json`` for json_ocr,
   ``.jsonl`` otherwise; what task=prepare writes): read ``<path>/<split><ext>``;
4. the format reads whole datasets (``Reader.read_splits``: line_folder, hf_dataset): read
   ``data.path`` once; its named splits are used as they are (a split it lacks is empty), a
   source without named splits is split like a single file;
5. ``data.path`` is a file: read it and split it with ``split_records`` (seeded, by group; by
   record with ``data.split_by_line=true``).

An empty val split stays empty unless ``data.val_from_train`` is set: that fraction of train
is then moved to val, by group (``carve_val``). An empty split is logged as a warning.

The split ``all`` (``eval.split=all``) is every record of the source: train, val and test
loaded as above (a split file a folder lacks counts as empty) and joined by ``join_splits``,
which keeps ids unique. With ``data.train_ratio=0 data.val_ratio=0`` a single file or a
folder without split folders is all test instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ocrft import paths
from ocrft.cache_entry import build_once, entry_problem
from ocrft.config import ConfigError, OnError
from ocrft.data.readers import READERS, Reader, ReadResult, read_lines_jsonl
from ocrft.data.reading import WHOLE
from ocrft.data.record import DataError, Record
from ocrft.data.splits import ALL, SPLITS, carve_val, join_splits, split_records

log = logging.getLogger(__name__)



@dataclass
class LoadedData:
    """Records per split, skipped-record counts by reason (summed), and each split's source."""

    splits: dict[str, list[Record]]
    skipped: dict[str, int] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    # rendered on the fly (data.format names one of GENERATORS), not read from files: MLflow
    # names such a dataset by its format alone (ocrft.tracking.inputs)
    generated: bool = False


def _lines_job(cfg: Any, split: str, n: int, seed: int) -> tuple[Callable[..., list[Record]], dict]:
    from ocrft.data import synthetic

    return synthetic.generate_lines, {
        "n": n, "seed": seed, "charset": cfg.charset, "min_chars": cfg.min_chars, "max_chars": cfg.max_chars,
        # resolved font files, so the cache key changes with the fonts actually used
        "fonts": [str(p) for p in synthetic.fonts_for(cfg.charset, list(cfg.fonts))],
        "font_size": list(cfg.font_size), "noise": cfg.noise, "blur": cfg.blur, "skew": cfg.skew,
        "invert": cfg.invert, "image_height": cfg.image_height, "id_prefix": split,
    }


def _invoices_job(cfg: Any, split: str, n: int, seed: int) -> tuple[Callable[..., list[Record]], dict]:
    from ocrft.data import synthetic

    return synthetic.generate_invoices, {
        "n": n, "seed": seed, "fonts": [str(p) for p in synthetic.fonts_for("latin", list(cfg.fonts))],
        "noise": cfg.noise, "blur": cfg.blur, "id_prefix": split,
    }


# data.format -> (cfg, split, n, seed) -> (generator function, its keyword arguments)
GENERATORS: dict[str, Callable[..., tuple[Callable[..., list[Record]], dict]]] = {
    "synthetic": _lines_job,
    "synthetic_invoice": _invoices_job,
}


def _derived_seed(split_seed: int, split: str) -> int:
    # a hash, not split_seed + k, so neighbouring seeds do not share splits
    return int.from_bytes(hashlib.sha256(f"{split_seed}:{split}".encode()).digest()[:4], "big")


def _generate_cached(fmt: str, cfg: Any, split: str) -> tuple[list[Record], Path]:
    """Render one split into ``<cache>/<hash of settings>``, or reuse it if already there."""
    from ocrft.data.synthetic import GENERATOR_VERSION

    n = getattr(cfg, f"num_{split}", None)
    if n is None:
        raise ConfigError(f"data.format={fmt} generates train/val/test only, not {split!r}")
    fn, kwargs = GENERATORS[fmt](cfg, split, int(n), _derived_seed(cfg.split_seed, split))
    settings = json.dumps({"format": fmt, "version": GENERATOR_VERSION, **kwargs}, sort_keys=True, default=str)
    base = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else paths.cache_dir() / "synthetic"
    out = base / f"{fmt}-{split}-{hashlib.sha256(settings.encode()).hexdigest()[:16]}"
    if entry_problem(out, ("manifest.jsonl",)) is None:
        log.info("reusing %s split rendered in %s", split, out)

    def render(folder: Path) -> None:
        fn(folder, **kwargs)
        (folder / "settings.json").write_text(settings + "\n")

    # One process renders (torchrun ranks, sweep workers wait on a lock); the folder is
    # published whole, and a broken one is rendered again, never half-trusted.
    build_once(out, render, ("manifest.jsonl",), f"synthetic {split} split")
    return read_lines_jsonl(out / "manifest.jsonl").records, out


def _read(
    reader: Reader, file: Path, on_error: str | OnError, cache_dir: Optional[Path], *, skipped: Counter,
    options: Optional[dict] = None,
) -> list[Record]:
    result: ReadResult = reader.read(file, on_error, cache_dir, **(options or {}))
    return _count(result, file, skipped)


def _count(result: ReadResult, file: object, skipped: Counter) -> list[Record]:
    skipped.update(result.skipped)
    for message in result.errors:
        log.warning("skipped: %s", message)
    if result.skipped:
        log.warning("%s: skipped %d bad records: %s", file, sum(result.skipped.values()), dict(result.skipped))
    if not result.records and result.skipped:
        raise DataError(f"no usable records; every one was skipped ({dict(result.skipped)})", file)
    return result.records


def _check_overlap(splits: dict[str, list[Record]]) -> None:
    seen: dict[str, str] = {}
    shared = set()
    for name, records in splits.items():
        for r in records:
            if seen.setdefault(r.image, name) != name:
                shared.add(r.image)
    if shared:
        log.warning("%d images appear in more than one split (e.g. %s): scores will be optimistic",
                    len(shared), sorted(shared)[0])


def load_data(data_cfg: Any, run_dir: Optional[Path] = None, splits: Sequence[str] = SPLITS) -> LoadedData:
    """Load the requested splits as ``data_cfg`` describes (see the module docstring).

    Args:
        data_cfg: the ``data`` config (DataConfig, DictConfig or anything with its attributes).
        run_dir: the run folder; images decoded from ``data:`` URLs go to ``<run_dir>/images``
            unless ``data.cache_dir`` is set.
        splits: the splits to load; each is required. ``all`` is every split joined
            (``join_splits``); the splits it reads are returned too, and a split file a folder
            lacks is then empty rather than an error.

    Raises:
        ConfigError: for an unknown format, a split without a source, or a data.path or
            data.<split>_file that does not exist; the message starts with the key.
        DataError: for a bad file or record (with ``data.on_error=raise``).
    """
    requested, splits = splits, [s for s in SPLITS if ALL in splits or s in splits] + [
        s for s in splits if s not in (*SPLITS, ALL)]
    fmt, skipped = data_cfg.format, Counter()
    loaded = LoadedData(splits={}, generated=fmt in GENERATORS)
    if fmt in GENERATORS:
        for split in splits:
            loaded.splits[split], out = _generate_cached(fmt, data_cfg, split)
            loaded.sources[split] = str(out)
    else:
        if fmt not in READERS:
            raise ConfigError(f"data.format={fmt!r} is unknown; known: {sorted([*GENERATORS, *READERS])}")
        optional = set(SPLITS) - set(requested) if ALL in requested else set()
        _load_files(data_cfg, READERS[fmt], splits, run_dir, loaded=loaded, skipped=skipped, optional=optional)
    if data_cfg.val_from_train and "val" in loaded.splits and not loaded.splits["val"] and loaded.splits.get("train"):
        train, val = carve_val(loaded.splits["train"], data_cfg.val_from_train, data_cfg.split_seed)
        loaded.splits["train"], loaded.splits["val"] = train, val
        loaded.sources["val"] = (f"{data_cfg.val_from_train:g} of train by group (data.val_from_train, "
                                 f"seed {data_cfg.split_seed}) from {loaded.sources['train']}")
        log.info("val split was empty: moved %d records (%d groups) of train to val (data.val_from_train=%g)",
                 len(val), len({r.group or r.id for r in val}), data_cfg.val_from_train)
    loaded.skipped = dict(skipped)
    for split, records in loaded.splits.items():
        # an empty split is a warning: a run that validates or scores on it measures nothing
        log.log(logging.INFO if records else logging.WARNING, "data %s: %d records from %s",
                split, len(records), loaded.sources[split])
    if skipped:
        log.warning("skipped records by reason: %s", loaded.skipped)
    _check_overlap(loaded.splits)
    if ALL in requested:
        loaded.splits[ALL] = join_splits(loaded.splits)
        parts = dict.fromkeys(loaded.sources[s] for s in SPLITS)
        loaded.sources[ALL] = next(iter(parts)) if len(parts) == 1 else "; ".join(
            f"{s}: {loaded.sources[s]}" for s in SPLITS)
        log.info("data all: %d records (every split)", len(loaded.splits[ALL]))
    return loaded


def _split(records: list[Record], cfg: Any, source: object) -> tuple[dict[str, list[Record]], str]:
    """Split one pool of records by the ratios; returns the splits and how they were made."""
    if cfg.split_by_line:
        log.warning("data.split_by_line=true: lines of one page may land in train and test; they share a hand "
                    "and a scan, so test scores will be optimistic")
    how = f"split {cfg.train_ratio}/{cfg.val_ratio}{' by line' if cfg.split_by_line else ''}, seed {cfg.split_seed}"
    return split_records(records, cfg.train_ratio, cfg.val_ratio, cfg.split_seed, by_record=cfg.split_by_line), how


def _read_whole(reader: Reader, source: str, cfg: Any, cache_dir: Optional[Path], *, skipped: Counter,
                options: dict) -> tuple[dict[str, list[Record]], dict[str, str]]:
    """Read a whole-dataset source (``Reader.read_splits``) into every split and its description."""
    named = reader.read_splits(source, cfg.on_error, cache_dir, **options)
    if WHOLE in named:
        splits, how = _split(_count(named[WHOLE], source, skipped), cfg, source)
        return splits, {s: f"{source} ({how})" for s in SPLITS}
    total = Counter()
    for result in named.values():
        total.update(result.skipped)
    records = {s: _count(named[s], source, Counter()) if s in named else [] for s in SPLITS}
    if not any(records.values()) and total:
        raise DataError(f"no usable records; every one was skipped ({dict(total)})", source)
    skipped.update(total)
    return records, {s: f"{source} ({s} split)" if s in named else f"{source} (has no {s} split)" for s in SPLITS}


def _load_files(cfg: Any, reader: Reader, splits: Sequence[str], run_dir: Optional[Path],
                *, loaded: LoadedData, skipped: Counter, optional: set[str]) -> None:
    """Read ``splits`` into ``loaded``; one of ``optional`` without a source is empty, not an error."""
    on_error = cfg.on_error  # the reader validates it (enum or string)
    cache_dir = Path(cfg.cache_dir).expanduser() / "images" if cfg.cache_dir else (
        Path(run_dir) / "images" if run_dir is not None else None)
    options = {key: getattr(cfg, key) for key in reader.options}
    path = Path(cfg.path).expanduser() if cfg.path else None
    # a whole-dataset reader decides itself what a missing path means (hf_dataset: a hub id)
    if path is not None and not path.exists() and reader.read_splits is None:
        raise ConfigError(f"data.path={path} does not exist")
    whole: Optional[dict[str, list[Record]]] = None
    sources: dict[str, str] = {}
    if path is not None and reader.read_splits is not None and not (path / f"train{reader.ext}").is_file():
        whole, sources = _read_whole(reader, str(cfg.path), cfg, cache_dir, skipped=skipped, options=options)
    for split in splits:
        explicit = getattr(cfg, f"{split}_file", None)
        if explicit:
            file = Path(explicit).expanduser()
        elif whole is not None:
            loaded.splits[split], loaded.sources[split] = whole[split], sources[split]
            continue
        elif path is not None and path.is_dir():
            file = path / f"{split}{reader.ext}"
        elif path is not None:
            if whole is None:
                records = _read(reader, path, on_error, cache_dir, skipped=skipped, options=options)
                whole, how = _split(records, cfg, path)
                sources = {s: f"{path} ({how})" for s in SPLITS}
            if split not in whole:
                raise ConfigError(f"data.path is one file, split into {'/'.join(SPLITS)}: no {split!r} split")
            loaded.splits[split], loaded.sources[split] = whole[split], sources[split]
            continue
        elif split in optional and any(getattr(cfg, f"{s}_file", None) for s in SPLITS):
            loaded.splits[split], loaded.sources[split] = [], f"none (no data.path or data.{split}_file)"
            continue
        else:
            raise ConfigError(f"data.path is not set: no data for the {split} split; set data.path (a data file, "
                              f"or a folder of {'/'.join(SPLITS)}{reader.ext} files) or data.{split}_file")
        if split in optional and not explicit and not file.exists():
            loaded.splits[split], loaded.sources[split] = [], f"none ({file} does not exist)"
            continue
        if not file.exists() or (reader.read_splits is None and not file.is_file()):
            problem = "does not exist" if not file.exists() else "is not a file"
            raise ConfigError(f"data.{split}_file={file} {problem}" if explicit else
                              f"data.path={path}: its {split} split file {file} {problem}")
        loaded.splits[split] = _read(reader, file, on_error, cache_dir, skipped=skipped, options=options)
        loaded.sources[split] = str(file)
