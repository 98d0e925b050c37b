"""data=line_folder: image + .gt.txt pairs as kraken, OCRopus, Calamari and tesstrain write them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from PIL import Image

from ocrft.config import DataConfig
from ocrft.data.line_folder import read_line_folder, read_line_folder_splits, scan
from ocrft.data.loading import load_data
from ocrft.data.reading import WHOLE
from ocrft.data.record import DataError


def line(path: Path, text: str | bytes | None, shade: int = 0, suffix: str = ".png") -> Path:
    """An image ``path`` (any PIL format by its suffix) and, unless text is None, its X.gt.txt."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (24, 8), shade).save(path)
    if text is not None:
        stem = path.name[: -len(suffix)]
        gt = path.parent / f"{stem}.gt.txt"
        gt.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def data_cfg(**kw):
    return OmegaConf.structured(DataConfig(format="line_folder", **kw))


@pytest.fixture
def ocropus_book(tmp_path: Path) -> Path:
    """What ocropus-nlbin + gpageseg leave, with ground truth typed for most lines:
    page images at the top, line images per page folder, some lines .bin.png + .nrm.png + .png."""
    book = tmp_path / "book"
    for page in range(1, 5):
        line(book / f"{page:04d}.bin.png", None)  # the page image: no ground truth of its own
        for n in range(1, 4):
            line(book / f"{page:04d}" / f"01000{n}.bin.png", f"page {page} line {n}\n", shade=page * 10 + n,
                 suffix=".bin.png")
    # a line with its greyscale (.nrm.png) and an original (.png) beside the binarized one
    line(book / "0001" / "010001.nrm.png", None, suffix=".nrm.png")
    line(book / "0001" / "010001.png", None)
    line(book / "0002" / "010009.bin.png", None, suffix=".bin.png")  # no ground truth typed yet
    (book / "0003" / "010042.gt.txt").write_text("a transcription whose image was deleted\n")
    (book / "0004" / "010003.gt.txt").write_text("\n")  # blank: nothing to learn
    return book


def test_pairs_orphans_and_preferences(ocropus_book: Path, caplog):
    with caplog.at_level(logging.INFO):
        result = read_line_folder(ocropus_book)
    ids = [r.id for r in result.records]
    assert ids == [f"{p:04d}/01000{n}" for p in range(1, 5) for n in range(1, 4) if (p, n) != (4, 3)]
    first = result.records[0]
    # the plain image wins over .nrm.png and .bin.png; the id keeps no suffix
    assert first.image == str(ocropus_book / "0001" / "010001.png")
    assert first.text == "page 1 line 1"
    assert first.meta == {"gt_file": str(ocropus_book / "0001" / "010001.gt.txt")}
    assert result.records[1].image.endswith("0001/010002.bin.png")
    # several page folders: a page is the group, so it never straddles two splits
    assert {r.group for r in result.records} == {"0001", "0002", "0003", "0004"}
    # 4 page images + 1 untyped line; 1 orphan transcription; 1 blank one
    assert dict(result.skipped) == {"no_ground_truth": 5, "no_image": 1, "empty_text": 1}
    assert "0002/010009.bin.png" in caplog.text and "010042.gt.txt" in caplog.text
    assert "2 lines have several images" in caplog.text


def test_text_keeps_spaces_and_strips_only_the_final_newline(tmp_path: Path):
    line(tmp_path / "a.png", "  leading and trailing  \r\n")
    line(tmp_path / "b.tif", "two\nlines\n\n", suffix=".tif")
    line(tmp_path / "page.1.jpg", "\ufeffstem with a dot", suffix=".jpg")  # tesstrain-style stem, BOM
    records = {r.id: r for r in read_line_folder(tmp_path).records}
    assert records["a"].text == "  leading and trailing  "
    assert records["b"].text == "two\nlines\n"
    assert records["page.1"].text == "stem with a dot"
    # one folder: each image is its own group
    assert records["a"].group == records["a"].image


def test_non_utf8_names_the_file_or_is_skipped(tmp_path: Path):
    line(tmp_path / "good.png", "fine")
    line(tmp_path / "bad.png", "caf\xe9".encode("latin-1"))
    with pytest.raises(DataError, match=r"bad\.gt\.txt:1: invalid UTF-8 byte 0xe9"):
        read_line_folder(tmp_path)
    result = read_line_folder(tmp_path, on_error="skip")
    assert [r.id for r in result.records] == ["good"] and dict(result.skipped) == {"non_utf8": 1}


def test_unreadable_image_is_a_data_error(tmp_path: Path):
    line(tmp_path / "good.png", "fine")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (tmp_path / "broken.gt.txt").write_text("text")
    with pytest.raises(DataError, match="broken.png"):
        read_line_folder(tmp_path)


def test_not_a_line_folder(tmp_path: Path):
    with pytest.raises(DataError, match="no line images"):
        read_line_folder(tmp_path)
    with pytest.raises(DataError, match="not a folder"):
        read_line_folder(tmp_path / "missing")


def test_split_folders_are_the_splits(tmp_path: Path):
    for split, n in (("train", 4), ("validation", 2), ("test", 2)):
        for i in range(n):
            line(tmp_path / split / "doc" / f"{i}.png", f"{split} {i}", shade=i)
    line(tmp_path / "notes" / "x.png", "outside the split folders")
    parts = read_line_folder_splits(tmp_path)
    assert {k: [r.id for r in v.records] for k, v in parts.items()} == {
        "train": [f"train/doc/{i}" for i in range(4)],
        "val": ["validation/doc/0", "validation/doc/1"],
        "test": ["test/doc/0", "test/doc/1"],
    }
    assert dict(parts["train"].skipped) == {"outside_split_folders": 1}
    # read through load_data: the folders are used as they are, not re-split by the ratios
    loaded = load_data(data_cfg(path=str(tmp_path)))
    assert {k: len(v) for k, v in loaded.splits.items()} == {"train": 4, "val": 2, "test": 2}
    assert "validation" not in loaded.sources["val"] and "val split" in loaded.sources["val"]


def test_load_data_splits_by_page_folder(ocropus_book: Path):
    loaded = load_data(data_cfg(path=str(ocropus_book), train_ratio=0.5, val_ratio=0.25))
    pages = {split: {r.group for r in records} for split, records in loaded.splits.items()}
    assert all(pages.values())
    assert not (pages["train"] & pages["val"]) and not (pages["train"] & pages["test"]) and not (pages["val"] & pages["test"])
    assert sum(len(v) for v in loaded.splits.values()) == 11
    assert loaded.skipped == {"no_ground_truth": 5, "no_image": 1, "empty_text": 1}
    assert read_line_folder_splits(ocropus_book).keys() == {WHOLE}


def test_scan_prefers_plain_then_nrm_then_bin(tmp_path: Path):
    for suffix in (".bin.png", ".nrm.png"):
        line(tmp_path / f"x{suffix}", None, suffix=suffix)
    images, gts, alternatives = scan(tmp_path)
    assert images == {"x": tmp_path / "x.nrm.png"} and gts == {} and alternatives == 1


def test_task_prepare_and_read_back(ocropus_book: Path, tmp_path: Path):
    from tests.helpers import run

    out = tmp_path / "prepared"
    record = run(["task=prepare", "data=line_folder", f"data.path={ocropus_book}", f"data.output_dir={out}"],
                 tmp_path / "run")
    assert record["status"] == "finished"
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["lines_written"]["total"] == 11 and report["files"]["train"] == "train.jsonl"
    assert report["lines_skipped"] == {"empty_text": 1, "no_ground_truth": 5, "no_image": 1}
    rows = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    assert rows and {"image", "text", "id", "page"} <= rows[0].keys()
    # pages never straddle the written splits either
    pages = {s: {json.loads(x)["page"] for x in (out / f"{s}.jsonl").read_text().splitlines()} for s in ("train", "val", "test")}
    assert not (pages["train"] & pages["test"]) and not (pages["train"] & pages["val"])
    # the prepared folder reads back with the same data= choice
    back = load_data(data_cfg(path=str(out)))
    assert {s: len(v) for s, v in back.splits.items()} == {s: report["lines_written"][s] for s in ("train", "val", "test")}
    assert all(Path(r.image).is_file() for v in back.splits.values() for r in v)


@pytest.mark.slow
@pytest.mark.integration
def test_train_reads_a_line_folder_and_needs_a_val_split(tmp_path: Path, repo_root: Path, monkeypatch):
    """The real entry point on a kraken-style folder with train/ and test/ but no val/: asked to
    validate it stops before loading the model; with data.val_from_train it trains and scores."""
    import shutil

    from ocrft.config import ConfigError
    from ocrft.models import bundle
    from tests.helpers import run

    tiny = repo_root / "tests" / "assets" / "tiny_ocr"
    lines = tmp_path / "lines"
    for i, row in enumerate(json.loads((tiny / "ocr.json").read_text())):
        folder = lines / ("test" if i >= 9 else "train") / f"doc{i // 3}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(tiny / row["img_path"], folder / f"{i:04d}.png")
        (folder / f"{i:04d}.gt.txt").write_text(row["ocr_results"] + "\n")
    args = ["task=train", "model=tiny_qwen2_vl", "data=line_folder", f"data.path={lines}", "train.max_steps=2",
            "train.per_device_train_batch_size=4", "eval.max_new_tokens=4", "eval.before_after=false",
            "eval.every_n_steps=2", "train.save_steps=100"]

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the empty val split was noticed")

    with monkeypatch.context() as m:
        # the one loader's own name for it: load_bundle reads the weights through it
        m.setattr(bundle, "load_model", no_model)
        with pytest.raises(ConfigError, match=r"val split is empty .*lines \(has no val split\)"):
            run(args, tmp_path / "no_val")
    record = run([*args, "data.val_from_train=0.34"], tmp_path / "run")
    assert record["status"] == "finished"
    metrics = record["metrics"]
    assert metrics["data/train_samples"] == 6  # 9 train lines, one of 3 documents carved into val
    assert metrics["val/best_step"] == 2 and 0 <= metrics["val/cer"]
    results = json.loads(Path(record["paths"]["results"]).read_text())
    assert sorted(Path(s["image_path"]).name for s in results["samples"]) == ["0009.png", "0010.png", "0011.png"]


def test_task_prepare_keeps_the_split_folders(tmp_path: Path):
    """train/ validation/ test/ folders are the dataset's own splits: prepare writes them as they
    are instead of pooling and re-splitting them by the ratios."""
    from tests.helpers import run

    src = tmp_path / "src"
    for k, (split, n) in enumerate((("train", 5), ("validation", 2), ("test", 3))):
        for i in range(n):
            line(src / split / "doc" / f"{i}.png", f"{split} {i}", shade=10 * k + i)
    out = tmp_path / "prepared"
    run(["task=prepare", "data=line_folder", f"data.path={src}", f"data.output_dir={out}", "data.train_ratio=0.34"],
        tmp_path / "run")
    ids = {s: [json.loads(x)["id"] for x in (out / f"{s}.jsonl").read_text().splitlines()] for s in ("train", "val", "test")}
    assert ids == {
        "train": [f"train/doc/{i}" for i in range(5)],
        "val": ["validation/doc/0", "validation/doc/1"],
        "test": [f"test/doc/{i}" for i in range(3)],
    }
