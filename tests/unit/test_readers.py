"""ocrft.data.readers against real files: good data, and a corpus of bad input whose every
error must name the file and the right line."""

from __future__ import annotations

import base64
import importlib.util
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from ocrft.config import OnError
from ocrft.data.readers import READERS, get_reader, read_json_ocr, read_lines_jsonl, read_messages
from ocrft.data.record import DataError

ASSETS = Path(__file__).resolve().parents[1] / "assets"
BAD = ASSETS / "bad_input"
TINY = ASSETS / "tiny_ocr"


def _load_make(folder: Path):
    spec = importlib.util.spec_from_file_location(f"make_{folder.name}", folder / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BAD_VALUES = _load_make(BAD).BAD_VALUES


@pytest.fixture
def bad_dir(tmp_path: Path) -> Path:
    """A writable copy of the bad-input corpus (new label files can sit beside its images)."""
    return Path(shutil.copytree(BAD, tmp_path / "bad_input"))


def read_jsonl(path, on_error="raise", cache_dir=None):
    return READERS["jsonl_vision"].read(path, on_error, cache_dir)


# --- good data ---------------------------------------------------------------------------


def test_json_ocr_reads_tiny_dataset_with_paths_resolved_against_the_file():
    rows = json.loads((TINY / "ocr.json").read_text())
    result = read_json_ocr(TINY / "ocr.json")
    assert [r.text for r in result.records] == [row["ocr_results"] for row in rows]
    assert [r.image for r in result.records] == [str(TINY / row["img_path"]) for row in rows]
    assert [r.id for r in result.records] == [f"ocr:{i}" for i in range(len(rows))]
    assert all(r.group == r.image and r.prompt is None for r in result.records)
    assert not result.skipped and not result.errors


def test_relative_paths_resolve_against_data_file_not_cwd(tmp_path, monkeypatch):
    (tmp_path / "imgs").mkdir()
    shutil.copy(BAD / "good.png", tmp_path / "imgs" / "a.png")
    labels = tmp_path / "data" / "sub" / "labels.jsonl"
    labels.parent.mkdir(parents=True)
    absolute = str(BAD / "good.png")
    labels.write_text(
        json.dumps({"image": "../../imgs/a.png", "response": "rel", "text": "Read it."}) + "\n"
        + json.dumps({"image": absolute, "response": "abs", "id": 7}) + "\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    records = read_jsonl(labels).records
    assert records[0].image == str(tmp_path / "imgs" / "a.png")
    assert records[0].prompt == "Read it." and records[0].id == "labels:1"
    assert records[1].image == absolute and records[1].prompt is None
    assert records[1].id == "7"  # the row's own id wins over <stem>:<line>


def test_lines_jsonl_groups_by_page_and_keeps_meta(tmp_path):
    shutil.copy(BAD / "good.png", tmp_path / "l.png")
    rows = [
        {"image": "l.png", "text": "a", "id": "p1-r1-l1", "page": "p1", "region": "r1", "baseline": [1, 2]},
        {"image": "l.png", "text": "b", "id": "p1-r1-l2", "page": "p1", "region": "r1"},
        {"image": "l.png", "text": "c", "id": "p2-r1-l1", "page": "p2"},
    ]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = read_lines_jsonl(tmp_path / "train.jsonl").records
    assert [r.group for r in records] == ["p1", "p1", "p2"]
    assert records[0].meta == {"page": "p1", "region": "r1", "baseline": [1, 2]}
    assert [r.id for r in records] == ["p1-r1-l1", "p1-r1-l2", "p2-r1-l1"]


def test_registry_names_and_extensions():
    assert READERS["page_xml"].read is READERS["lines_jsonl"].read
    assert READERS["alto"].read is READERS["lines_jsonl"].read
    assert READERS["json_ocr"].ext == ".json"
    assert {READERS[k].ext for k in ("jsonl_vision", "messages", "lines_jsonl")} == {".jsonl"}
    with pytest.raises(ValueError, match="json_ocr"):
        get_reader("jsonl-vision")


def _messages_row(image_part, assistant="target text", system=None):
    msgs = [{"role": "system", "content": system}] if system else []
    msgs += [
        {"role": "user", "content": [image_part, {"type": "text", "text": "Transcribe."}]},
        {"role": "assistant", "content": assistant},
    ]
    return json.dumps({"messages": msgs})


def test_messages_reads_paths_data_urls_and_text_parts(bad_dir, tmp_path):
    png = (bad_dir / "good.png").read_bytes()
    data_url = "data:image/png;base64," + base64.b64encode(png).decode()
    lines = [
        _messages_row({"type": "image", "image": "good.png"}, system="You are an OCR engine."),
        _messages_row({"type": "image_url", "image_url": {"url": data_url}},
                      assistant=[{"type": "text", "text": "part one "}, {"type": "text", "text": "two"}]),
        _messages_row({"type": "image_url", "image_url": {"url": data_url}}),
    ]
    (bad_dir / "chat.jsonl").write_text("\n".join(lines) + "\n")
    cache = tmp_path / "cache"
    records = read_messages(bad_dir / "chat.jsonl", cache_dir=cache).records
    assert [r.text for r in records] == ["target text", "part one two", "target text"]
    assert records[0].image == str(bad_dir / "good.png")
    assert records[0].prompt == "Transcribe." and records[0].meta == {"system": "You are an OCR engine."}
    # data: URLs are decoded once into the cache, named by content
    assert records[1].image == records[2].image
    assert Path(records[1].image).parent == cache and Path(records[1].image).suffix == ".png"
    assert Path(records[1].image).read_bytes() == png


def test_messages_bad_rows_are_counted_by_reason(bad_dir, tmp_path):
    two_assistants = json.dumps({"messages": [
        {"role": "user", "content": [{"type": "image", "image": "good.png"}]},
        {"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]})
    lines = [
        _messages_row({"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}),  # 1
        json.dumps({"messages": [{"role": "user", "content": "no image"},
                                 {"role": "assistant", "content": "x"}]}),  # 2
        two_assistants,  # 3
        _messages_row({"type": "image", "image": "good.png"}, assistant=""),  # 4
        _messages_row({"type": "image", "image": "good.png"}, assistant=[{"type": "text", "text": 5}]),  # 5
        json.dumps({"conversation": []}),  # 6
        _messages_row({"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}),  # 7
        _messages_row({"type": "image", "image": "good.png"}),  # 8: fine
    ]
    (bad_dir / "chat.jsonl").write_text("\n".join(lines) + "\n")
    result = read_messages(bad_dir / "chat.jsonl", "skip", tmp_path / "cache")
    assert [r.id for r in result.records] == ["chat:8"]
    assert result.skipped == Counter(unsupported_image=1, missing_image=1, malformed_line=1, empty_text=1,
                                     non_string_text=1, missing_key=1, unreadable_image=1)
    assert [e.split(":")[1] for e in result.errors] == ["1", "2", "3", "4", "5", "6", "7"]


# --- errors name file and line --------------------------------------------------------------


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_json_syntax_error_names_file_line_and_column(on_error):
    # a file that is not JSON cannot be read record by record: it raises even with skip
    with pytest.raises(DataError) as exc:
        read_json_ocr(BAD / "broken.json", on_error)
    assert "broken.json:6:" in str(exc.value) and "column 3" in str(exc.value)
    assert exc.value.line == 6


def test_json_bad_record_names_index_and_line():
    with pytest.raises(DataError) as exc:
        read_json_ocr(BAD / "bad_records.json")
    assert "bad_records.json:6: record [1]: missing key 'ocr_results'" in str(exc.value)


def test_json_skip_counts_each_bad_record_at_its_line():
    result = read_json_ocr(BAD / "bad_records.json", "skip")
    assert [r.id for r in result.records] == ["bad_records:0", "bad_records:6"]
    assert result.records[1].image == str(BAD / "jpeg_named.png")
    assert result.skipped == Counter(missing_key=1, non_string_text=1, empty_text=1, missing_image=1,
                                     unreadable_image=1, malformed_line=1)
    where = [e.split(": ")[0].rsplit(":", 1)[1] + " " + e.split(": ")[1] for e in result.errors]
    assert where == ["6 record [1]", "9 record [2]", "13 record [3]", "17 record [4]", "21 record [5]",
                     "29 record [7]"]
    assert all("bad_records.json" in e for e in result.errors)


def test_json_lines_counted_with_crlf(bad_dir):
    text = (bad_dir / "bad_records.json").read_text().replace("\n", "\r\n")
    (bad_dir / "crlf.json").write_bytes(text.encode())
    with pytest.raises(DataError, match=r"crlf\.json:6: record \[1\]"):
        read_json_ocr(bad_dir / "crlf.json")


def test_json_non_utf8_names_line_or_skips_the_record():
    with pytest.raises(DataError, match=r"non_utf8\.json:3: invalid UTF-8 byte 0xe9"):
        read_json_ocr(BAD / "non_utf8.json")
    result = read_json_ocr(BAD / "non_utf8.json", "skip")
    assert [r.text for r in result.records] == ["ok", "also ok"]
    assert result.skipped == Counter(non_utf8=1)
    assert "non_utf8.json:3: record [1]" in result.errors[0]


def test_json_must_be_an_array(tmp_path):
    (tmp_path / "obj.json").write_text('{"img_path": "a.png"}')
    with pytest.raises(DataError, match=r"obj\.json:1: expected a JSON array"):
        read_json_ocr(tmp_path / "obj.json")


def test_jsonl_non_utf8_names_line_or_skips_it():
    with pytest.raises(DataError, match=r"non_utf8\.jsonl:3: invalid UTF-8 byte 0xe9 at column 39"):
        read_jsonl(BAD / "non_utf8.jsonl")
    result = read_jsonl(BAD / "non_utf8.jsonl", "skip")
    assert [r.text for r in result.records] == ["one", "two", "four"]
    assert [r.id for r in result.records] == ["non_utf8:1", "non_utf8:2", "non_utf8:4"]
    assert result.skipped == Counter(non_utf8=1)


def test_jsonl_bom_and_mixed_newlines():
    with pytest.raises(DataError) as exc:
        read_jsonl(BAD / "mixed_newlines.jsonl")
    assert "mixed_newlines.jsonl:4: malformed JSON" in str(exc.value)
    result = read_jsonl(BAD / "mixed_newlines.jsonl", OnError.skip)
    assert [r.text for r in result.records] == ["crlf one", "lf two", "crlf three", "crlf five"]
    assert [r.id for r in result.records] == [f"mixed_newlines:{n}" for n in (1, 2, 3, 5)]
    assert result.records[0].prompt == "Read this line."  # the BOM did not break line 1
    assert result.skipped == Counter(malformed_line=1)


def test_jsonl_skip_counts_every_bad_value_by_reason():
    result = read_jsonl(BAD / "bad_values.jsonl", "skip")
    good = [line for line, (_, reason) in BAD_VALUES.items() if reason is None]
    assert [r.text for r in result.records] == ["fine", "fine too"] and len(good) == 2
    assert result.skipped == Counter(reason for _, reason in BAD_VALUES.values() if reason)
    expected = [f"bad_values.jsonl:{line}: " for line, (_, reason) in BAD_VALUES.items() if reason]
    assert [e[e.index("bad_values.jsonl"):].split(" ")[0] + " " for e in result.errors] == expected


@pytest.mark.parametrize("line", [line for line, (_, reason) in BAD_VALUES.items() if reason])
def test_jsonl_raise_names_file_and_line_of_each_bad_value(bad_dir, line):
    # keep line 1 (the id the duplicate refers to), blank out the rest before the bad line
    rows = [BAD_VALUES[1][0]] + [""] * (line - 2) + [BAD_VALUES[line][0]]
    (bad_dir / "bad_values.jsonl").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError) as exc:
        read_jsonl(bad_dir / "bad_values.jsonl")
    assert f"bad_values.jsonl:{line}: " in str(exc.value)
    assert exc.value.line == line


def test_line_separator_inside_a_string_does_not_split_the_line(bad_dir):
    text = "one\u2028two\x85three"
    (bad_dir / "u2028.jsonl").write_text(
        json.dumps({"image": "good.png", "response": text}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert [r.text for r in read_jsonl(bad_dir / "u2028.jsonl").records] == [text]


def test_utf16_file_and_missing_file_are_named(tmp_path):
    (tmp_path / "u16.jsonl").write_bytes('{"image": "a.png"}\n'.encode("utf-16"))
    with pytest.raises(DataError, match=r"u16\.jsonl:1: file is UTF-16"):
        read_jsonl(tmp_path / "u16.jsonl")
    with pytest.raises(DataError, match=r"nope\.json: data file not found"):
        read_json_ocr(tmp_path / "nope.json")


def test_on_error_accepts_enum_and_string_and_rejects_others():
    assert read_jsonl(BAD / "non_utf8.jsonl", OnError.skip).skipped == Counter(non_utf8=1)
    with pytest.raises(ValueError, match="data.on_error='ignore'"):
        read_jsonl(BAD / "non_utf8.jsonl", "ignore")
