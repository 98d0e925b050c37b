"""File readers: each reads one data file into ocrft.data.record.Record objects.

``READERS`` is the one table of formats (``data.format``); the folder and dataset formats
(line_folder, hf_dataset) have their readers in their own modules. A bad record raises a
DataError naming the file and line (``on_error="raise"``), or is skipped and counted by
reason (``on_error="skip"``): missing_key, missing_image, unreadable_image,
unsupported_image, empty_text, non_string_text, malformed_line, non_utf8, duplicate_id.
Relative image paths resolve against the data file's folder; every image is decoded once
here (ocrft.data.images.check_image), so a truncated or empty one is reported with its line
before training starts.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import mimetypes
import os
import re
from pathlib import Path
from typing import Callable, Iterator, Optional

from ocrft.config import ConfigError, OnError
from ocrft.data import hf_dataset, line_folder, olmocr_bench
from ocrft.data.reading import MAX_ERRORS, ReadResult, Reader  # noqa: F401 (re-exported)
from ocrft.data.reading import BadRecord as _BadRecord, Collector as _Collector, cache_image_bytes, checked_image
from ocrft.data.record import DataError

log = logging.getLogger(__name__)

_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_JSON_WS = re.compile(r"[ \t\n\r]*")
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")  # a non-UTF-8 byte under surrogateescape
_DATA_URL = re.compile(r"data:(?P<mime>[^;,]*)(?P<b64>;base64)?,(?P<data>.*)", re.S)
_JSON_TYPES = {str: "string", int: "number", float: "number", bool: "boolean", list: "array", dict: "object"}


def _type_name(value: object) -> str:
    return "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)


def _text(row: dict, key: str, required: bool = True) -> Optional[str]:
    if key not in row:
        if required:
            raise _BadRecord("missing_key", f"missing key {key!r}")
        return None
    value = row[key]
    if not isinstance(value, str):
        raise _BadRecord("non_string_text", f"{key!r} must be a string, got {_type_name(value)}")
    if not value.strip():
        if required:
            raise _BadRecord("empty_text", f"{key!r} is empty")
        return None
    return value


def _image(value: object, base: Path) -> str:
    """Resolve an image path against the data file's folder and check the file."""
    if not isinstance(value, str) or not value.strip():
        raise _BadRecord("missing_image", f"image path must be a non-empty string, got {value!r:.40}")
    path = Path(value)
    # normpath, not resolve(): keep symlinked dataset folders as the user named them
    return checked_image(Path(os.path.normpath(path if path.is_absolute() else base / path)))


def _field(row: dict, key: str) -> object:
    if key not in row:
        raise _BadRecord("missing_key", f"missing key {key!r}")
    return row[key]


# --- one builder per format: (row, data file folder, cache dir) -> Record fields ----------


def _build_json_ocr(row: dict, base: Path, cache_dir: Path) -> dict:
    return {"image": _image(_field(row, "img_path"), base), "text": _text(row, "ocr_results")}


def _build_jsonl_vision(row: dict, base: Path, cache_dir: Path) -> dict:
    # "text" is the per-sample instruction, "response" the target (Model Garden naming)
    return {
        "image": _image(_field(row, "image"), base),
        "text": _text(row, "response"),
        "prompt": _text(row, "text", required=False),
    }


def _build_lines_jsonl(row: dict, base: Path, cache_dir: Path) -> dict:
    page = row.get("page")
    meta = {k: v for k, v in row.items() if k not in ("image", "text", "id")}
    # lines cut from one page must never straddle two splits
    return {
        "image": _image(_field(row, "image"), base),
        "text": _text(row, "text"),
        "group": str(page) if page not in (None, "") else None,
        "meta": meta,
    }


def _data_url_image(url: str, cache_dir: Path) -> str:
    """Decode a base64 data: URL into ``cache_dir`` (named by content hash) and return its path."""
    m = _DATA_URL.fullmatch(url)
    if not m or not m["b64"]:
        raise _BadRecord("unsupported_image", "only base64 data: URLs are supported")
    try:
        raw = base64.b64decode(m["data"], validate=True)
    except (binascii.Error, ValueError) as e:
        raise _BadRecord("unreadable_image", f"invalid base64 in data: URL: {e}") from e
    return cache_image_bytes(raw, mimetypes.guess_extension(m["mime"] or "") or ".img", cache_dir)


def _message_image(part: dict, cache_dir: Path) -> object:
    ref = part.get("image") if part.get("type") == "image" else part.get("image_url")
    if isinstance(ref, dict):
        ref = ref.get("url")
    if isinstance(ref, str):
        if ref.startswith("data:"):
            return _data_url_image(ref, cache_dir)
        if ref.startswith(("http://", "https://")):
            raise _BadRecord("unsupported_image", "remote image URLs are not fetched; give a local path")
        return ref.removeprefix("file://")
    return ref


def _parts(content: object) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        return content
    raise _BadRecord("malformed_line", f"message content must be a string or a list of parts: {_type_name(content)}")


def _texts(parts: list[dict]) -> list[str]:
    texts = [p.get("text") for p in parts if p.get("type") == "text"]
    if not all(isinstance(t, str) for t in texts):
        raise _BadRecord("non_string_text", "text parts must hold strings")
    return texts


def _build_messages(row: dict, base: Path, cache_dir: Path) -> dict:
    messages = _field(row, "messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise _BadRecord("malformed_line", "'messages' must be a list of objects")
    by_role: dict[str, list[list[dict]]] = {}
    for m in messages:
        by_role.setdefault(m.get("role"), []).append(_parts(m.get("content")))
    if len(by_role.get("assistant", [])) != 1:
        raise _BadRecord("malformed_line", "expected exactly one assistant message (the target)")
    user_parts = [p for parts in by_role.get("user", []) for p in parts]
    images = [_message_image(p, cache_dir) for p in user_parts if p.get("type") in ("image", "image_url")]
    if len(images) != 1:
        reason = "missing_image" if not images else "malformed_line"
        raise _BadRecord(reason, f"expected one image in the user message(s), found {len(images)}")
    texts = _texts(by_role["assistant"][0])
    prompt = "\n".join(_texts(user_parts)).strip()
    system = "\n".join(_texts([p for parts in by_role.get("system", []) for p in parts]))
    return {
        "image": _image(images[0], base),
        "text": _text({"assistant": "".join(texts)}, "assistant"),
        "prompt": prompt or None,
        "meta": {"system": system} if system else {},
    }


# --- file scanning ----------------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise DataError("data file not found", path)
    data = path.read_bytes()
    if data.startswith(_UTF16_BOMS):
        raise DataError("file is UTF-16 encoded; save it as UTF-8", path, 1)
    return data.removeprefix(_BOM)


def _jsonl_rows(path: Path, col: _Collector) -> Iterator[tuple[int, dict]]:
    # Split bytes, not text: bytes.splitlines breaks only at \n, \r\n and \r, whereas
    # str.splitlines would also break inside JSON strings holding U+2028 or U+0085.
    for lineno, raw in enumerate(_read_bytes(path).splitlines(), 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            message = f"invalid UTF-8 byte 0x{raw[e.start]:02x} at column {e.start + 1}; save the file as UTF-8"
            col.bad("non_utf8", message, lineno)
            continue
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as e:
            col.bad("malformed_line", f"malformed JSON at column {e.colno}: {e.msg}", lineno)
            continue
        if not isinstance(row, dict):
            col.bad("malformed_line", f"expected a JSON object, got {_type_name(row)}", lineno)
            continue
        yield lineno, row


def _json_array_rows(path: Path, col: _Collector) -> Iterator[tuple[int, int, object]]:
    """Yield (index, line, element) for a JSON array file, each element with its start line."""
    # surrogateescape keeps each bad byte as one marker character, so both the first bad
    # byte's line and the records that contain one can be found.
    text = _read_bytes(path).decode("utf-8", errors="surrogateescape")
    bad_bytes = [m.start() for m in _ESCAPED_BYTE.finditer(text)]
    if bad_bytes and not col.skip:
        pos = bad_bytes[0]
        byte = ord(text[pos]) - 0xDC00
        raise DataError(f"invalid UTF-8 byte 0x{byte:02x}; save the file as UTF-8", path, text.count("\n", 0, pos) + 1)
    try:
        # Full parse first: a syntax error gets json's exact line and column. A file that is
        # not valid JSON cannot be read record by record, so this raises even with skip.
        rows = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"JSON syntax error at line {e.lineno}, column {e.colno}: {e.msg}", path, e.lineno) from e
    if not isinstance(rows, list):
        raise DataError(f"expected a JSON array of records, got {_type_name(rows)}", path, 1)
    # Re-scan the (now known valid) array with raw_decode to learn where each element starts.
    decoder, pos, line, prev = json.JSONDecoder(), _JSON_WS.match(text, 0).end() + 1, 1, 0
    for index in range(len(rows)):
        start = _JSON_WS.match(text, pos).end()
        obj, end = decoder.raw_decode(text, start)
        line, prev = line + text.count("\n", prev, start), start
        pos = _JSON_WS.match(text, end).end() + 1  # past the comma
        if any(start <= b < end for b in bad_bytes):
            col.bad("non_utf8", f"record [{index}]: invalid UTF-8 byte", line)
            continue
        yield index, line, obj


def _jsonl_reader(build: Callable[..., dict]) -> Callable[..., ReadResult]:
    def read(path: str | os.PathLike, on_error: str | OnError = "raise", cache_dir: Optional[Path] = None
             ) -> ReadResult:
        path = Path(path)
        col = _Collector(path, on_error, cache_dir)
        for lineno, row in _jsonl_rows(path, col):
            col.add(build, row, lineno, f"{path.stem}:{lineno}")
        return col.result

    read.__doc__ = f"Read a JSONL file with {build.__name__.removeprefix('_build_')} rows (one record per line)."
    return read


def read_json_ocr(
    path: str | os.PathLike, on_error: str | OnError = "raise", cache_dir: Optional[Path] = None
) -> ReadResult:
    """Read a Gemma-OCR JSON file ``[{"img_path": ..., "ocr_results": ...}]``.

    Errors name the file and line; a bad record also names its index in the array.
    """
    path = Path(path)
    col = _Collector(path, on_error, cache_dir)
    for index, line, row in _json_array_rows(path, col):
        if not isinstance(row, dict):
            col.bad("malformed_line", f"record [{index}]: expected a JSON object, got {_type_name(row)}", line)
            continue
        col.add(_build_json_ocr, row, line, f"{path.stem}:{index}", label=f"record [{index}]: ")
    return col.result


read_jsonl_vision = _jsonl_reader(_build_jsonl_vision)
read_messages = _jsonl_reader(_build_messages)
read_lines_jsonl = _jsonl_reader(_build_lines_jsonl)

def _not_a_split_file(path: str | os.PathLike, on_error: str | OnError = "raise", cache_dir: Optional[Path] = None,
                      **options) -> ReadResult:
    raise ConfigError(f"data=olmocr_bench reads a whole bench folder (data.path=<folder with *.jsonl and pdfs/>), "
                      f"not a split file: {path}")


def _folder_or_jsonl(read_source: Callable[..., ReadResult]) -> Callable[..., ReadResult]:
    """A folder reader that also reads the lines JSONL files task=prepare writes from it."""

    def read(path: str | os.PathLike, on_error: str | OnError = "raise", cache_dir: Optional[Path] = None,
             **options) -> ReadResult:
        if Path(path).suffix == ".jsonl" and Path(path).is_file():
            return read_lines_jsonl(path, on_error, cache_dir)
        return read_source(path, on_error, cache_dir, **options)

    read.__doc__ = f"{read_source.__doc__}\n\nA ``.jsonl`` file (task=prepare's output) is read as lines JSONL."
    return read


READERS: dict[str, Reader] = {
    "json_ocr": Reader(".json", read_json_ocr),
    "jsonl_vision": Reader(".jsonl", read_jsonl_vision),
    "messages": Reader(".jsonl", read_messages),
    "lines_jsonl": Reader(".jsonl", read_lines_jsonl),
    # task=prepare cuts PAGE-XML / ALTO exports into lines_jsonl files, so
    # `data=page_xml data.path=OUT` reads what it wrote.
    "page_xml": Reader(".jsonl", read_lines_jsonl),
    "alto": Reader(".jsonl", read_lines_jsonl),
    # Whole-dataset sources: data.path is the dataset itself (read_splits), unless it is a
    # folder of train/val/test.jsonl files, which task=prepare writes from them.
    "line_folder": Reader(".jsonl", _folder_or_jsonl(line_folder.read_line_folder), line_folder.read_line_folder_splits),
    "hf_dataset": Reader(".jsonl", _folder_or_jsonl(hf_dataset.read_hf_dataset), hf_dataset.read_hf_splits,
                         options=("image_column", "text_column")),
    # an olmOCR-Bench folder: its *.jsonl tests and pdfs/, every tested page a test record
    "olmocr_bench": Reader(".jsonl", _not_a_split_file, olmocr_bench.read_olmocr_bench_splits,
                           options=("pdf_dpi", "max_pixels")),
}


def get_reader(fmt: str) -> Reader:
    """Return the reader for ``data.format``; the error lists the valid names."""
    try:
        return READERS[fmt]
    except KeyError:
        raise ConfigError(f"data.format={fmt!r} is unknown; readers: {sorted(READERS)}") from None
