"""Line folders: image + ``.gt.txt`` pairs (the kraken / OCRopus / Calamari / tesstrain convention).

    DIR/doc1/0001.png      DIR/doc1/0001.gt.txt        # kraken `ketos extract`, Calamari, tesstrain (.tif)
    DIR/book/0001/010001.bin.png  .../010001.gt.txt    # OCRopus `ocropus-gpageseg` (+ .nrm.png with --gray)

The folder is read recursively. An image ``X<suffix>`` pairs with ``X.gt.txt`` where the
suffix is the longest known one (``.bin.png``, ``.nrm.png``, ``.png``, ``.jpg``, ``.jpeg``,
``.tif``, ``.tiff``, any case), so ``010001.bin.png`` and tesstrain's ``page.1.tif`` find
``010001.gt.txt`` and ``page.1.gt.txt``. When one line has several images the plain one is
used (it keeps the grey levels the binarized copy threw away), then ``.nrm.png``, then
``.bin.png``; the others are counted in the log, not read.

The text is the file's UTF-8 content with only the final newline (``\\n`` or ``\\r\\n``)
removed: leading and trailing spaces are ground truth. Skips are counted by reason, with
the first few files named in the log: ``no_ground_truth`` (an image without ``.gt.txt``, such
as an OCRopus page image beside its line folder), ``no_image``, ``empty_text`` (nothing but
whitespace) and ``outside_split_folders``. A file that is not UTF-8 or an image that cannot be
read raises a DataError naming it (``data.on_error=skip`` counts it as ``non_utf8`` /
``unreadable_image`` instead).

Record id: the path relative to DIR without the suffixes (``doc1/0001``); meta
``{"gt_file": ...}``. Group (what never straddles splits): the sub-folder holding the line
when several sub-folders hold lines (a page or document), else the image. Top-level
sub-folders named ``train``, ``val`` or ``validation``, and ``test`` are those splits.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

from ocrft.config import OnError
from ocrft.data.images import check_image
from ocrft.data.reading import WHOLE, Collector, ReadResult
from ocrft.data.record import DataError, Record
from ocrft.data.splits import SPLITS

log = logging.getLogger(__name__)

GT_SUFFIX = ".gt.txt"
# Image suffixes in order of preference when one line has several images.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".nrm.png", ".bin.png")
# Top-level folder names that are splits, not documents.
SPLIT_FOLDERS = {"train": "train", "val": "val", "validation": "val", "test": "test"}
NAMED_SKIPS = 5  # files named in the log per skip reason


def _image_stem(name: str) -> Optional[tuple[str, int]]:
    """``(stem, preference)`` for an image file name, None for anything else."""
    lower = name.lower()
    # longest suffix first, so "x.bin.png" is a .bin.png image of "x", not a .png of "x.bin"
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], IMAGE_SUFFIXES.index(suffix)
    return None


def scan(root: Path) -> tuple[dict[str, Path], dict[str, Path], int]:
    """Find images and ground-truth files under ``root``.

    Returns:
        ``({stem: image}, {stem: gt file}, number of alternative images not used)``, where a
        stem is the path relative to ``root`` without suffixes, in POSIX form.
    """
    images: dict[str, tuple[int, Path]] = {}
    gts: dict[str, Path] = {}
    alternatives = 0
    for folder, dirs, files in os.walk(root):
        dirs.sort()  # a stable order, whatever the file system's
        rel = Path(folder).relative_to(root)
        for name in sorted(files):
            if name.startswith("."):
                continue
            if name.endswith(GT_SUFFIX) and len(name) > len(GT_SUFFIX):
                gts[(rel / name[: -len(GT_SUFFIX)]).as_posix()] = Path(folder) / name
            elif (found := _image_stem(name)) is not None:
                stem, rank = (rel / found[0]).as_posix(), found[1]
                if stem in images:
                    alternatives += 1
                    if rank >= images[stem][0]:
                        continue
                images[stem] = (rank, Path(folder) / name)
    return {k: p for k, (_, p) in images.items()}, gts, alternatives


def read_line_text(path: Path) -> str:
    """A ``.gt.txt`` (or an engine's ``.pred.txt``): UTF-8, a BOM dropped, only the final
    newline (``\n`` or ``\r\n``) removed.

    Raises:
        DataError: naming the file and line of the first byte that is not UTF-8.
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(f"invalid UTF-8 byte 0x{raw[e.start]:02x}; save the file as UTF-8", path, line) from None
    text = text.removeprefix("\ufeff")  # a BOM some Windows editors add
    # only the final newline: spaces at either end are part of the transcription
    return text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text


def _skip(col: Collector, reason: str, paths: list[Path]) -> None:
    if paths:
        col.result.skipped[reason] += len(paths)
        named = ", ".join(str(p) for p in paths[:NAMED_SKIPS])
        more = f" and {len(paths) - NAMED_SKIPS} more" if len(paths) > NAMED_SKIPS else ""
        log.warning("%s: skipped %d files [%s]: %s%s", col.path, len(paths), reason, named, more)


def _split_of(stem: str) -> Optional[str]:
    return SPLIT_FOLDERS.get(stem.split("/", 1)[0]) if "/" in stem else None


def _read_pairs(root: Path, stems: list[str], images: dict[str, Path], gts: dict[str, Path],
                *, col: Collector) -> None:
    folders = {s.rsplit("/", 1)[0] if "/" in s else "" for s in stems}
    by_folder = len(folders) > 1
    for stem in stems:
        image, gt = images[stem], gts[stem]
        try:
            text = read_line_text(gt)
        except DataError as e:
            col.bad("non_utf8", str(e).removeprefix(f"{gt}:{e.line}: "), e.line, gt)
            continue
        if not text.strip():  # kraken and OCRopus also leave blank lines out of training
            col.note("empty_text", f"{gt}: empty ground truth")
            continue
        try:
            check_image(image)
        except DataError as e:
            col.bad("unreadable_image", str(e).removeprefix(f"{image}: "), None, image)
            continue
        folder = stem.rsplit("/", 1)[0] if "/" in stem else ""
        path = str(Path(os.path.normpath(image.absolute())))
        col.result.records.append(Record(
            id=stem, image=path, text=text,
            group=folder if by_folder and folder else path,
            meta={"gt_file": str(gt)},
        ))


def _collect(root: Path, on_error: str | OnError) -> tuple[dict[str, list[str]], dict[str, Path], dict[str, Path], Collector]:
    if not root.is_dir():
        raise DataError("not a folder: a line folder holds image + .gt.txt pairs", root)
    col = Collector(root, on_error, None)
    images, gts, alternatives = scan(root)
    if not images and not gts:
        raise DataError(f"no line images or {GT_SUFFIX} files found (is data.format right?)", root)
    if alternatives:
        log.info("%s: %d lines have several images (e.g. X.png and X.bin.png): used the first of %s",
                 root, alternatives, ", ".join(IMAGE_SUFFIXES))
    _skip(col, "no_ground_truth", [images[s] for s in sorted(images.keys() - gts.keys())])
    _skip(col, "no_image", [gts[s] for s in sorted(gts.keys() - images.keys())])
    stems = sorted(images.keys() & gts.keys())
    named = any(_split_of(s) for s in stems)
    parts: dict[str, list[str]] = {}
    for stem in stems:
        parts.setdefault((_split_of(stem) or "") if named else WHOLE, []).append(stem)
    _skip(col, "outside_split_folders", [images[s] for s in parts.pop("", [])])
    return parts, images, gts, col


def read_line_folder(path: str | os.PathLike, on_error: str | OnError = "raise", cache_dir: Optional[Path] = None
                     ) -> ReadResult:
    """Read every pair under ``path`` as one pool of records (split folders included).

    Used for ``data.<split>_file=DIR``; ``read_line_folder_splits`` is what ``data.path`` uses.
    """
    root = Path(path)
    parts, images, gts, col = _collect(root, on_error)
    _read_pairs(root, sorted(s for stems in parts.values() for s in stems), images, gts, col=col)
    return col.result


def read_line_folder_splits(path: str | os.PathLike, on_error: str | OnError = "raise",
                            cache_dir: Optional[Path] = None) -> dict[str, ReadResult]:
    """Read a line folder: its train/val/test sub-folders as those splits, or else one pool.

    Returns:
        ``{"train": ..., "val": ..., "test": ...}`` (the named split folders present) or
        ``{WHOLE: ...}``; skips and messages are reported once, with the first split present.
    """
    root = Path(path)
    parts, images, gts, col = _collect(root, on_error)
    out: dict[str, ReadResult] = {}
    for split in [s for s in (*SPLITS, WHOLE) if s in parts]:
        _read_pairs(root, parts[split], images, gts, col=col)
        out[split] = ReadResult(records=col.result.records)
        col.result.records = []
    first = next(iter(out.values()), None)
    if first is None:  # nothing paired: let the caller report every skip
        return {WHOLE: col.result}
    first.skipped, first.errors = col.result.skipped, col.result.errors
    return out

