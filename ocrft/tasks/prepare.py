"""task=prepare: import a dataset, split it by page or image without leakage, write it.

    python -m ocrft task=prepare data=page_xml data.input_dir=EXPORT data.output_dir=OUT
    python -m ocrft task=prepare data=alto data.input_dir=EXPORT data.output_dir=OUT
    python -m ocrft task=prepare data=json_ocr data.path=labels.json data.output_dir=OUT

PAGE-XML and ALTO exports become sample images and ``OUT/{train,val,test}.jsonl`` rows,
which ``data=page_xml data.path=OUT`` reads back. ``data.level`` says what a sample is:
``line`` (``OUT/lines/<page>/<line>.png``, scaled to data.target_height; text that exists
only at region level becomes ``OUT/regions/<page>/<region>.png``), ``region``
(``OUT/regions/...``, lines joined with "\n") or ``page`` (``OUT/pages/<page>.png``, all
lines joined); region and page images keep their aspect ratio within data.max_pixels.
Every row is ``{"image", "text", "id", "page", "region", "line", "level", "bbox",
"page_image", "page_size"}``: image relative to OUT; ``line`` the line's element id (null
for region and page rows); ``bbox`` ``[x0, y0, x1, y1]`` of the sample's polygon in
page-image pixels; ``page_image`` the page's image relative to the export folder;
``page_size`` its ``[width, height]`` (see ocrft.data.lines._write_lines). Gemma-OCR JSON and
vision JSONL files are re-split into ``OUT/{train,val,test}.json`` / ``.jsonl`` in their
own schema, images left in place and named relative to OUT. ``OUT/prepare_report.json``
records pages, lines per split, skips by reason, duplicates removed and the settings (for
JSON files a "page" is a distinct image and a "line" a sample); the run's metrics are
``prepare/pages``, ``prepare/lines_written``, ``prepare/<split>/lines`` and so on.

Splits are seeded and by group: the page for exports (at every level), the image's SHA-256
for JSON files, so one page or one image never lands in two splits. A one-page export would
thus be all train: ``data.split_by_line=true`` splits its samples one by one instead, with
a warning that lines of one page in train and test share a hand and a scan. An exact duplicate (same image bytes,
same prompt and text) is dropped and reported; an image that still shows up in two splits
is removed from the later one (test before val; see ``drop_leaks``).

The output is built in a fresh folder beside OUT and swapped in only when complete, so a
second run never mixes its files with the first's. An existing OUT is replaced only if it
is an earlier prepare output (it holds prepare_report.json) or empty; any other folder is
refused rather than deleted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig

from ocrft import atomic
from ocrft.config import ConfigError, OnError
from ocrft.data import alto, page_xml
from ocrft.data.crops import CropSettings
from ocrft.data.lines import Imported, import_pages
from ocrft.data.reading import ReadResult
from ocrft.data.record import DataError, Record
from ocrft.data.splits import SPLITS, drop_leaks, split_records
from ocrft.runner import RunContext, TaskResult

log = logging.getLogger(__name__)

REPORT = "prepare_report.json"
MAX_LISTED = 100  # duplicates listed by name in the report; the count is always exact


@dataclass(frozen=True)
class Importer:
    """One importable format: how to read it and how to write one output row."""

    load: Callable[[DictConfig, Path, Path], Imported]  # (cfg.data, source, work dir)
    row: Callable[[Record, Path], dict]  # (record, final output folder) -> output row
    ext: str  # of the split files
    crops: bool  # whether the line-cropping settings apply


# --- loaders: (cfg.data, source, work dir) -> Imported --------------------------------------


def _page_loader(read_page, markers: tuple[bytes, ...]):
    def load(data: DictConfig, source: Path, work: Path) -> Imported:
        if not source.is_dir():
            raise DataError("data.input_dir must be the export folder holding the page files", source)
        if data.target_height < 1 or data.padding < 0:
            raise ConfigError(f"data.target_height={data.target_height} must be >= 1 and data.padding={data.padding} >= 0")
        settings = CropSettings(data.target_height, data.preserve_aspect_ratio, data.padding, data.mask,
                                max_pixels=data.max_pixels)
        skip = OnError(data.on_error) is OnError.skip
        result = import_pages(source, work, read_page, markers, settings=settings, skip_bad_xml=skip, level=data.level,
                              skip_machine_text=data.skip_machine_text)  # fmt: skip
        if not result.pages and not result.pages_skipped:
            raise DataError(f"no {data.format} page files found (is data.format right?)", source)
        return result

    return load


def _sample_loader(fmt: str):
    def load(data: DictConfig, source: Path, work: Path) -> Imported:
        from ocrft.data.readers import get_reader

        reader = get_reader(fmt)
        if not source.is_file() and reader.read_splits is None:
            raise DataError(f"data.path (or data.input_dir) must name a {fmt} file", source)
        # whole-dataset formats (line_folder, hf_dataset) read a folder; images a dataset
        # embeds are written into the output (OUT/images), so it stands on its own
        options = {key: data[key] for key in reader.options}
        read = _read_keeping_splits(reader, source, data.on_error, work / "images", options=options)
        result = Imported(lines_skipped=Counter(read.skipped), examples={"errors": read.errors} if read.errors else {})
        digests: dict[str, str] = {}
        first: dict[tuple, str] = {}
        for r in read.records:
            if r.image not in digests:
                digests[r.image] = hashlib.sha256(Path(r.image).read_bytes()).hexdigest()
            digest = digests[r.image]
            same_as = first.setdefault((digest, r.prompt, r.text), r.id)
            if same_as != r.id:
                result.duplicates.append({"id": r.id, "same_as": same_as, "removed": 1})
                continue
            # the group is the content, so one picture under two names stays in one split;
            # a reader's own group (a line folder's page folder) is kept
            group = digest if r.group in (None, r.image) else r.group
            inside = Path(r.image).is_relative_to(work) and {"output_image": Path(r.image).relative_to(work).as_posix()}
            result.records.append(dataclasses.replace(r, group=group, meta={**r.meta, "sha256": digest, **(inside or {})}))
        result.pages = len(set(digests.values()))
        return result

    return load


def _read_keeping_splits(reader, source: Path, on_error, cache_dir: Path, *, options: dict):
    """Read ``source`` whole; a dataset's own train/val/test (line folder sub-folders, a hub
    dataset's named splits) are kept as ``meta["split"]`` so run_prepare does not re-split them."""
    if reader.read_splits is None or not source.is_dir():
        return reader.read(source, on_error=on_error, cache_dir=cache_dir, **options)
    merged = ReadResult()
    for name, part in reader.read_splits(source, on_error, cache_dir, **options).items():
        tag = {"split": name} if name in SPLITS else {}
        merged.records += [dataclasses.replace(r, meta={**r.meta, **tag}) for r in part.records]
        merged.skipped.update(part.skipped)
        merged.errors += part.errors
    return merged


def _split(records: list[Record], data: DictConfig) -> dict[str, list[Record]]:
    """The dataset's own splits when every record names one, else seeded ratios by group."""
    if all(r.meta.get("split") in SPLITS for r in records):
        log.info("keeping the dataset's own train/val/test splits (data.train_ratio/val_ratio unused)")
        return {name: [r for r in records if r.meta["split"] == name] for name in SPLITS}
    by_line = data.split_by_line
    return split_records(records, data.train_ratio, data.val_ratio, data.split_seed, by_record=by_line)


# --- rows: what one record becomes in OUT/<split>.<ext> -------------------------------------


def _rel(image: str, out: Path) -> str:
    return Path(os.path.relpath(Path(image).absolute(), out)).as_posix()


def _line_row(r: Record, out: Path) -> dict:
    extra = {k: v for k, v in r.meta.items() if k not in ("page", "region", "sha256")}  # line, level, bbox, ...
    return {"image": r.image, "text": r.text, "id": r.id, "page": r.meta["page"], "region": r.meta["region"], **extra}


def _json_ocr_row(r: Record, out: Path) -> dict:
    return {"img_path": _rel(r.image, out), "ocr_results": r.text}


def _jsonl_vision_row(r: Record, out: Path) -> dict:
    prompt = {"text": r.prompt} if r.prompt is not None else {}
    return {**prompt, "image": _rel(r.image, out), "response": r.text}


def _source_row(r: Record, out: Path) -> dict:
    # lines JSONL, which data=line_folder / data=hf_dataset data.path=OUT read back
    extra = {k: r.meta[k] for k in ("gt_file", "hf_split") if k in r.meta}
    return {"image": r.meta.get("output_image") or _rel(r.image, out), "text": r.text, "id": r.id, "page": r.group, **extra}


IMPORTERS: dict[str, Importer] = {
    "page_xml": Importer(_page_loader(page_xml.read_page_xml, page_xml.MARKERS), _line_row, ".jsonl", crops=True),
    "alto": Importer(_page_loader(alto.read_alto, alto.MARKERS), _line_row, ".jsonl", crops=True),
    "json_ocr": Importer(_sample_loader("json_ocr"), _json_ocr_row, ".json", crops=False),
    "jsonl_vision": Importer(_sample_loader("jsonl_vision"), _jsonl_vision_row, ".jsonl", crops=False),
    "line_folder": Importer(_sample_loader("line_folder"), _source_row, ".jsonl", crops=False),
    "hf_dataset": Importer(_sample_loader("hf_dataset"), _source_row, ".jsonl", crops=False),
}
_WRITERS = {".json": atomic.write_json, ".jsonl": atomic.write_jsonl}


def get_importer(fmt: str) -> Importer:
    """Return the importer for ``data.format``; the error lists the importable formats."""
    if fmt not in IMPORTERS:
        raise ConfigError(f"data.format={fmt!r}: task=prepare cannot import it; importable: {sorted(IMPORTERS)}")
    return IMPORTERS[fmt]


# --- the task -----------------------------------------------------------------------------


def run_prepare(cfg: DictConfig, ctx: RunContext) -> TaskResult:
    """Import ``cfg.data`` from data.input_dir (or data.path), split it, write data.output_dir."""
    data = cfg.data
    importer = get_importer(data.format)
    source = _source(data)
    out = Path(data.output_dir or ctx.run_dir / "prepared").expanduser().resolve()
    work = _fresh_dir(out, source)
    try:
        imported = importer.load(data, source, work)
        if not imported.records:
            skipped = f"lines {dict(imported.lines_skipped)}, pages {dict(imported.pages_skipped)}"
            raise DataError(f"nothing imported; skipped: {skipped}", source)
        splits = _split(imported.records, data)
        splits, leaks = drop_leaks(splits, key=_leak_key(data.split_by_line, importer.crops))
        for name in SPLITS:
            _WRITERS[importer.ext](work / f"{name}{importer.ext}", [importer.row(r, out) for r in splits[name]])
        report = _report(data, importer, source, out, imported=imported, splits=splits, leaks=leaks)
        report["token_lengths"] = _token_lengths(cfg, splits)  # while the crops are still in the work folder
        atomic.write_json(work / REPORT, report)
        _swap(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # gone already after a successful swap
    metrics = _metrics(report)
    ctx.tracker.log_metrics(metrics)
    # the splits as written (MLflow's Dataset column), so later runs on OUT show the same files
    written = {name: str(out / f"{name}{importer.ext}") for name in SPLITS}
    ctx.tracker.log_datasets(data, splits, written, generated=False)  # imported from files, never rendered
    ctx.tracker.log_artifact(out / REPORT)
    return TaskResult(metrics=metrics, paths={"output_dir": str(out), "prepare_report": str(out / REPORT)})


def _token_lengths(cfg: DictConfig, splits: dict[str, list[Record]]) -> dict:
    """Each split's token lengths for the model the command line names (ocrft.training.token_lengths
    ``token_report``), else why there are none: prepare's default model is the tiny test model,
    whose counts say nothing about the model the data is for. A model that cannot be loaded
    costs the numbers, never the prepared data."""
    from ocrft.config import ConfigError
    from ocrft.models.loading import ModelPathError
    from ocrft.models.registry import FAMILIES
    from ocrft.training.token_lengths import token_report

    if not _model_on_command_line():
        return {"computed": False, "reason": "no model on the command line: add model=<name> (e.g. model=qwen2_5_vl_3b)"
                " to record the token lengths its processor gives, or run task=analyze model=<name>"}  # fmt: skip
    if cfg.model.family not in FAMILIES:
        return {"computed": False, "reason": f"model.family={cfg.model.family} has no local processor"}
    try:
        report = token_report(cfg.model, splits, cfg.prompt.text, cfg.prompt.system, max_length=cfg.train.max_length)
    except (DataError, ConfigError, ModelPathError, OSError) as err:
        log.warning("prepare: token lengths not recorded: %s", err)
        return {"computed": False, "reason": str(err)}
    return {"computed": True, **report}


def _model_on_command_line() -> bool:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return False
    return any(o.lstrip("+~").split("=")[0].split(".")[0] == "model" for o in HydraConfig.get().overrides.task)


def _leak_key(split_by_line: bool, crops: bool) -> Callable[[Record], str]:
    """What finds one image in two splits. With split_by_line, lines of one page share the
    page image's hash by design, so for page exports each sample is its own key."""
    if not split_by_line:
        return lambda r: r.meta["sha256"]
    log.warning(
        "data.split_by_line=true: samples are split one by one, so lines of one page land in train "
        "and in val/test; they share a hand and a scan, and scores on them overstate how the model "
        "reads pages it has never seen"
    )
    return (lambda r: r.id) if crops else (lambda r: r.meta["sha256"])


def _source(data: DictConfig) -> Path:
    given = data.input_dir or data.path
    if not given:
        raise ConfigError("data.input_dir is not set: task=prepare needs data.input_dir (an export folder) "
                          "or data.path (a data file)")
    source = Path(given).expanduser().resolve()
    if not source.exists():
        raise DataError("input not found", source)
    return source


def _fresh_dir(out: Path, source: Path) -> Path:
    """Check that ``out`` may be replaced, then make the folder the new output is built in."""
    if out == source or out in source.parents:
        raise ConfigError(f"data.output_dir={out} holds the input {source}; replacing it would delete the input")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"data.output_dir={out} is a file")
    if out.exists() and any(out.iterdir()) and not (out / REPORT).is_file():
        raise ConfigError(
            f"data.output_dir={out} is not empty and has no {REPORT}, so task=prepare did not write it; "
            "refusing to replace it: choose a new folder or empty this one"
        )
    work = out.parent / f".{out.name}.tmp-{os.getpid()}-{time.time_ns()}"
    work.mkdir(parents=True)
    return work


def _swap(work: Path, out: Path) -> None:
    """Put ``work`` in place of ``out``; the old output is deleted only once the new is in."""
    atomic.replace_dir(work, out, out.parent / f"{out.name}.old-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    _remove_leftovers(out)
    log.info("wrote %s", out)


def _remove_leftovers(out: Path) -> None:
    """Delete what killed runs left beside ``out``, now that a whole output is in place: a
    partial build (``.OUT.tmp-<pid>-<ns>``, a copy of part of the data set that nothing
    reads) or an earlier output set aside by a run killed mid-swap (``OUT.old-<time>-<pid>``).
    Only folders whose run is gone: a live pid may be another prepare writing here."""
    name = re.escape(out.name)
    pattern = re.compile(rf"\.{name}\.tmp-(\d+)-\d+|{name}\.old-\d{{8}}-\d{{6}}-(\d+)")
    for path in out.parent.iterdir():
        found = pattern.fullmatch(path.name)
        if found and path.is_dir() and not _running(int(found[1] or found[2])):
            log.warning("removing %s, left by a killed task=prepare run", path)
            shutil.rmtree(path, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _report(data, importer, source, out, *, imported, splits, leaks) -> dict:
    written = {name: len(splits[name]) for name in SPLITS}
    unit = "pages" if importer.crops else "images"
    pages = len({r.group for split in splits.values() for r in split})
    empty = [name for name, n in written.items() if not n]
    if empty and pages == 1 and importer.crops:
        log.warning(
            "the %s empty: the export has one page and a page never straddles two splits, so everything is "
            "in train; add pages, or set data.split_by_line=true to split its lines",
            " and ".join(empty) + (" splits are" if len(empty) > 1 else " split is"),
        )
    else:
        for name in empty:
            log.warning("the %s split is empty: too few %s (%d) for the ratios", name, unit, pages)
    duplicates = imported.duplicates + [{**leak, "removed": 1} for leak in leaks]
    settings = {k: data[k] for k in ("format", "train_ratio", "val_ratio", "split_seed", "split_by_line", "on_error")}
    if importer.crops:
        keys = ("level", "target_height", "preserve_aspect_ratio", "padding", "mask", "max_pixels", "skip_machine_text")
        settings.update({k: data[k] for k in keys})
    return {
        "format": data.format,
        **({"level": data.level} if importer.crops else {}),
        "input": str(source),
        "output_dir": str(out),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": {name: f"{name}{importer.ext}" for name in SPLITS},
        "pages": imported.pages,
        "pages_per_split": {name: len({r.group for r in splits[name]}) for name in SPLITS},
        "pages_skipped": dict(sorted(imported.pages_skipped.items())),
        "lines_written": {**written, "total": sum(written.values())},
        "lines_skipped": dict(sorted(imported.lines_skipped.items())),
        "skipped_examples": imported.examples,
        "duplicates_removed": sum(d["removed"] for d in duplicates),
        "duplicates": duplicates[:MAX_LISTED],
        "settings": {k: (v.value if isinstance(v, OnError) else v) for k, v in settings.items()},
    }


def _metrics(report: dict) -> dict[str, float]:
    written = report["lines_written"]
    return {
        "prepare/pages": report["pages"],
        "prepare/pages_skipped": sum(report["pages_skipped"].values()),
        "prepare/lines_written": written["total"],
        "prepare/lines_skipped": sum(report["lines_skipped"].values()),
        "prepare/duplicates_removed": report["duplicates_removed"],
        **{f"prepare/{name}/lines": written[name] for name in SPLITS},
    }
