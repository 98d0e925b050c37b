"""task=prepare: splits without leakage, safe re-runs, JSON re-splitting with dedup, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from ocrft.data.readers import get_reader
from ocrft.data.record import DataError, Record
from ocrft.data.splits import drop_leaks, split_records
from ocrft.tasks.prepare import IMPORTERS, get_importer
from ocrft.config import ConfigError
from tests.files import NS2013, make_export
from tests.helpers import REPO, prepare

EXPORTS = REPO / "tests" / "assets" / "exports"


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- splits --------------------------------------------------------------------------------


def test_pages_never_straddle_splits_and_the_split_is_seeded(tmp_path):
    counts = make_export(tmp_path / "export", pages=12)
    out = tmp_path / "out"
    result = prepare(tmp_path, "page_xml", f"data.input_dir={tmp_path / 'export'}", f"data.output_dir={out}", "data.target_height=16")
    splits = {s: jsonl(out / f"{s}.jsonl") for s in ("train", "val", "test")}
    pages = {s: {r["page"] for r in rows} for s, rows in splits.items()}
    assert pages["train"].isdisjoint(pages["val"]) and pages["train"].isdisjoint(pages["test"])
    assert pages["val"].isdisjoint(pages["test"])
    assert all(pages.values())  # 12 pages: every split gets some
    assert pages["train"] | pages["val"] | pages["test"] == set(counts)
    for split, rows in splits.items():  # every line of a page is in its page's split
        for page in pages[split]:
            assert sum(r["page"] == page for r in rows) == counts[page]
    total = sum(counts.values())  # 30 lines
    assert result.metrics["prepare/lines_written"] == total
    assert result.metrics["prepare/train/lines"] + result.metrics["prepare/val/lines"] + result.metrics["prepare/test/lines"] == total
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["pages_per_split"] == {s: len(p) for s, p in pages.items()}

    again = tmp_path / "again"
    prepare(tmp_path, "page_xml", f"data.input_dir={tmp_path / 'export'}", f"data.output_dir={again}", "data.target_height=16")
    assert all((out / f"{s}.jsonl").read_bytes() == (again / f"{s}.jsonl").read_bytes() for s in ("train", "val", "test"))


def one_page_export(root: Path, lines: int) -> None:
    """A one-page Transkribus-style export whose lines are each a distinct gray band."""
    (root / "page").mkdir(parents=True)
    image = Image.new("L", (60, 10 * lines), 255)
    for i in range(lines):
        image.paste(10 * i, (2, 10 * i + 2, 58, 10 * i + 8))
    image.save(root / "scan.png")
    body = "".join(
        f'<TextLine id="l{i}"><Coords points="2,{10 * i + 2} 58,{10 * i + 2} 58,{10 * i + 8} 2,{10 * i + 8}"/>'
        f"<TextEquiv><Unicode>line {i}</Unicode></TextEquiv></TextLine>"
        for i in range(lines)
    )
    (root / "page" / "scan.xml").write_text(
        f'<?xml version="1.0" encoding="UTF-8"?><PcGts xmlns="{NS2013}"><Page imageFilename="scan.png" '
        f'imageWidth="60" imageHeight="{10 * lines}"><TextRegion id="r1">{body}</TextRegion></Page></PcGts>'
    )


def test_split_by_line_splits_a_one_page_export(tmp_path, caplog):
    one_page_export(tmp_path / "export", lines=10)
    paged, by_line = tmp_path / "paged", tmp_path / "by_line"
    with caplog.at_level("WARNING", logger="ocrft"):
        prepare(tmp_path, "page_xml", f"data.input_dir={tmp_path / 'export'}", f"data.output_dir={paged}", "data.target_height=8")
    assert [len(jsonl(paged / f"{s}.jsonl")) for s in ("train", "val", "test")] == [10, 0, 0]  # a page is never split
    assert "the export has one page" in caplog.text and "set data.split_by_line=true" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="ocrft"):
        result = prepare(
            tmp_path, "page_xml", f"data.input_dir={tmp_path / 'export'}", f"data.output_dir={by_line}",
            "data.target_height=8", "data.split_by_line=true",
        )  # fmt: skip
    splits = {s: jsonl(by_line / f"{s}.jsonl") for s in ("train", "val", "test")}
    assert {s: len(rows) for s, rows in splits.items()} == {"train": 8, "val": 1, "test": 1}
    assert {r["page"] for rows in splits.values() for r in rows} == {"scan"}
    assert sorted(r["line"] for rows in splits.values() for r in rows) == sorted(f"l{i}" for i in range(10))
    # every line shares the page image's hash: none of them is taken for a leak
    assert result.metrics["prepare/duplicates_removed"] == 0
    report = json.loads((by_line / "prepare_report.json").read_text())
    assert report["settings"]["split_by_line"] is True and report["pages_per_split"] == {"train": 1, "val": 1, "test": 1}
    assert "share a hand and a scan" in caplog.text and "splits are empty" not in caplog.text
    again = tmp_path / "again"  # seeded like the page split
    overrides = (f"data.input_dir={tmp_path / 'export'}", f"data.output_dir={again}", "data.target_height=8", "data.split_by_line=true")
    prepare(tmp_path, "page_xml", *overrides)
    assert all((again / f"{s}.jsonl").read_bytes() == (by_line / f"{s}.jsonl").read_bytes() for s in splits)


def test_split_ratios_count_records_and_keep_big_groups_out_of_tiny_splits():
    singles = [Record(id=str(i), image="x", text="t") for i in range(10)]
    assert {k: len(v) for k, v in split_records(singles, 0.8, 0.1, 0).items()} == {"train": 8, "val": 1, "test": 1}
    # one page of 91 lines and nine of one line: wherever the big page falls in the shuffle,
    # it must not be moved into val or test just to fill them
    records = [Record(id=f"big{i}", image="x", text="t", group="big") for i in range(91)]
    records += [Record(id=f"s{i}", image="x", text="t", group=f"s{i}") for i in range(9)]
    for seed in range(20):
        sizes = {k: len(v) for k, v in split_records(records, 0.8, 0.1, seed).items()}
        assert sizes["train"] >= 91 and sizes["val"] >= 1 and sizes["test"] >= 1, (seed, sizes)


def test_drop_leaks_keeps_the_earliest_split():
    def rec(rid, key):
        return Record(id=rid, image="x", text="t", group=rid, meta={"sha256": key})

    splits = {"train": [rec("a", "k")], "val": [rec("b", "k"), rec("c", "m")], "test": [rec("d", "k"), rec("e", "m"), rec("f", "n")]}
    kept, removed = drop_leaks(splits, key=lambda r: r.meta["sha256"])
    assert {s: [r.id for r in v] for s, v in kept.items()} == {"train": ["a"], "val": ["c"], "test": ["f"]}
    assert removed == [
        {"id": "b", "split": "val", "also_in": "train"},
        {"id": "d", "split": "test", "also_in": "train"},
        {"id": "e", "split": "test", "also_in": "val"},
    ]


# --- the output folder ----------------------------------------------------------------------


def test_rerun_replaces_the_whole_output(tmp_path):
    out = tmp_path / "out"
    prepare(tmp_path, "page_xml", f"data.input_dir={EXPORTS / 'transkribus'}", f"data.output_dir={out}")
    assert (out / "lines" / "Doc_A" / "0001_p1" / "r1l1.png").is_file()
    prepare(tmp_path, "page_xml", f"data.input_dir={EXPORTS / 'escriptorium_page'}", f"data.output_dir={out}")
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == [
        "lines/folio_1/eSc_line_a1.png",
        "lines/folio_1/eSc_line_a2.png",
        "prepare_report.json",
        "test.jsonl",
        "train.jsonl",
        "val.jsonl",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp or old folder left


def test_a_folder_prepare_did_not_write_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(ConfigError, match="not empty and has no prepare_report.json"):
        prepare(tmp_path, "page_xml", f"data.input_dir={EXPORTS / 'transkribus'}", f"data.output_dir={out}")
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]
    with pytest.raises(ConfigError, match="holds the input"):
        prepare(tmp_path, "page_xml", f"data.input_dir={EXPORTS / 'transkribus'}", f"data.output_dir={EXPORTS}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_failed_import_keeps_the_previous_output(tmp_path):
    out = tmp_path / "out"
    prepare(tmp_path, "page_xml", f"data.input_dir={EXPORTS / 'transkribus'}", f"data.output_dir={out}")
    before = (out / "train.jsonl").read_bytes()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.xml").write_text("<notes/>")
    with pytest.raises(DataError, match="no page_xml page files found"):
        prepare(tmp_path, "page_xml", f"data.input_dir={empty}", f"data.output_dir={out}")
    assert (out / "train.jsonl").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "out"]


def test_registry_covers_the_import_formats():
    assert sorted(IMPORTERS) == ["alto", "hf_dataset", "json_ocr", "jsonl_vision", "line_folder", "page_xml"]
    with pytest.raises(ConfigError, match=r"importable: \['alto', 'hf_dataset', 'json_ocr', 'jsonl_vision', 'line_folder', 'page_xml'\]"):
        get_importer("messages")


# --- JSON datasets ------------------------------------------------------------------------


def make_images(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True)
    names = []
    for i in range(n):
        Image.new("L", (8, 8), 20 * i).save(folder / f"img{i}.png")
        names.append(f"img{i}.png")
    return names


def test_json_ocr_is_resplit_with_duplicates_removed(tmp_path):
    data = tmp_path / "data"
    names = make_images(data / "images", 10)
    shutil.copy(data / "images" / "img0.png", data / "images" / "copy_of_0.png")
    rows = [{"img_path": f"images/{n}", "ocr_results": f"text {i}"} for i, n in enumerate(names)]
    rows += [
        {"img_path": "images/copy_of_0.png", "ocr_results": "text 0"},  # same bytes, same text: dropped
        {"img_path": "images/img1.png", "ocr_results": "text 1"},  # same file, same text: dropped
        {"img_path": "images/copy_of_0.png", "ocr_results": "another reading"},  # kept, with img0
    ]
    (data / "labels.json").write_text(json.dumps(rows, ensure_ascii=False))
    out = tmp_path / "out"
    result = prepare(tmp_path, "json_ocr", f"data.path={data / 'labels.json'}", f"data.output_dir={out}")
    assert result.metrics["prepare/duplicates_removed"] == 2 and result.metrics["prepare/lines_written"] == 11
    assert result.metrics["prepare/pages"] == 10  # distinct images
    report = json.loads((out / "prepare_report.json").read_text())
    assert [d["same_as"] for d in report["duplicates"]] == ["labels:0", "labels:1"]
    split_of: dict[bytes, set[str]] = {}
    for split in ("train", "val", "test"):
        written = json.loads((out / f"{split}.json").read_text())
        assert all(set(row) == {"img_path", "ocr_results"} for row in written)
        for row in written:
            image = out / row["img_path"]  # relative to OUT, images left where they were
            assert not Path(row["img_path"]).is_absolute() and image.resolve().parent == (data / "images").resolve()
            split_of.setdefault(image.read_bytes(), set()).add(split)
        # what task=prepare writes, the json_ocr reader reads
        assert len(get_reader("json_ocr").read(out / f"{split}.json").records) == len(written)
    assert all(len(s) == 1 for s in split_of.values())  # no image content in two splits


def test_jsonl_vision_keeps_prompts(tmp_path):
    data = tmp_path / "data"
    names = make_images(data, 6)
    rows = [{"text": f"Transcribe {i}", "image": n, "response": f"r{i}"} for i, n in enumerate(names)]
    rows[0] = {"image": names[0], "response": "no prompt"}
    (data / "vision.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    prepare(tmp_path, "jsonl_vision", f"data.input_dir={data / 'vision.jsonl'}", f"data.output_dir={out}")
    written = [r for s in ("train", "val", "test") for r in jsonl(out / f"{s}.jsonl")]
    by_response = {r["response"]: r for r in written}
    assert set(by_response) == {"no prompt", "r1", "r2", "r3", "r4", "r5"}
    assert "text" not in by_response["no prompt"] and by_response["r3"]["text"] == "Transcribe 3"
    assert by_response["r3"]["image"] == os.path.relpath(data / names[3], out)


# --- the real command line ------------------------------------------------------------------


@pytest.mark.integration
def test_cli_prepares_a_transkribus_export(tmp_path):
    out, run_dir = tmp_path / "out", tmp_path / "run"
    cmd = [
        sys.executable, "-m", "ocrft", "task=prepare", "data=page_xml", "tracking=none",
        f"data.input_dir={EXPORTS / 'transkribus'}", f"data.output_dir={out}", f"run_dir={run_dir}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120, env={**os.environ, "HYDRA_FULL_ERROR": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "finished" and record["task"] == "prepare"
    assert record["metrics"]["prepare/lines_written"] == 5 and record["metrics"]["prepare/lines_skipped"] == 6
    assert record["paths"]["prepare_report"] == str(out / "prepare_report.json")
    rows = [r for s in ("train", "val", "test") for r in jsonl(out / f"{s}.jsonl")]
    assert {Image.open(out / r["image"]).height for r in rows} == {128}
