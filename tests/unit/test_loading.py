"""ocrft.data.loading: which file feeds which split, splitting, skipping, synthetic caching."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ocrft.config import ConfigError, DataConfig, OnError
from ocrft.data import synthetic
from ocrft.data.loading import load_data
from ocrft.data.record import DataError
from ocrft.data.splits import split_records

ASSETS = Path(__file__).resolve().parents[1] / "assets"
TINY = ASSETS / "tiny_ocr"
BAD = ASSETS / "bad_input"


def data_cfg(**kw):
    """A typed ``data`` node, as Hydra hands it over (DictConfig over DataConfig)."""
    return OmegaConf.structured(DataConfig(**kw))


@pytest.fixture
def split_folder(tmp_path: Path) -> Path:
    """train/val/test.json (json_ocr) beside the tiny images: 8 / 2 / 2 records."""
    rows = json.loads((TINY / "ocr.json").read_text())
    for row in rows:
        shutil.copy(TINY / row["img_path"], tmp_path / row["img_path"])
    for name, part in (("train", rows[:8]), ("val", rows[8:10]), ("test", rows[10:])):
        (tmp_path / f"{name}.json").write_text(json.dumps(part))
    return tmp_path


def test_tiny_ocr_config_loads_and_splits_the_single_file(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)  # conf/data/tiny_ocr.yaml names a repo-relative path
    # the YAML over its schema (what composing data=tiny_ocr gives), without Hydra's plugin scan
    yaml = OmegaConf.load(repo_root / "conf" / "data" / "tiny_ocr.yaml")
    assert list(yaml.pop("defaults")) == ["base_data"]
    cfg = OmegaConf.merge(OmegaConf.structured(DataConfig), yaml)
    loaded = load_data(cfg, run_dir=None)
    sizes = {k: len(v) for k, v in loaded.splits.items()}
    assert sizes == {"train": 10, "val": 1, "test": 1}
    ids = [r.id for split in loaded.splits.values() for r in split]
    assert len(ids) == len(set(ids)) == 12
    expected = split_records(loaded.splits["train"] + loaded.splits["val"] + loaded.splits["test"], 0.8, 0.1, 42)
    assert {k: {r.id for r in v} for k, v in expected.items()} == {k: {r.id for r in v} for k, v in loaded.splits.items()}
    assert "seed 42" in loaded.sources["train"] and "ocr.json" in loaded.sources["train"]
    assert loaded.skipped == {}


def test_split_seed_and_ratios_change_the_split():
    base = dict(format="json_ocr", path=str(TINY / "ocr.json"))
    a = load_data(data_cfg(**base, split_seed=1))
    b = load_data(data_cfg(**base, split_seed=2))
    assert {r.id for r in a.splits["test"]} != {r.id for r in b.splits["test"]} or \
        {r.id for r in a.splits["val"]} != {r.id for r in b.splits["val"]}
    half = load_data(data_cfg(**base, train_ratio=0.5, val_ratio=0.25))
    assert {k: len(v) for k, v in half.splits.items()} == {"train": 6, "val": 3, "test": 3}


def test_folder_layout_reads_one_file_per_split(split_folder):
    loaded = load_data(data_cfg(format="json_ocr", path=str(split_folder)))
    assert {k: len(v) for k, v in loaded.splits.items()} == {"train": 8, "val": 2, "test": 2}
    assert loaded.sources == {s: str(split_folder / f"{s}.json") for s in ("train", "val", "test")}
    assert loaded.splits["val"][0].id == "val:0"


def test_explicit_files_win_over_the_folder(split_folder, tmp_path):
    other = tmp_path / "other_test.json"
    other.write_text(json.dumps([{"img_path": "line_00.png", "ocr_results": "override"}]))
    loaded = load_data(data_cfg(format="json_ocr", path=str(split_folder), test_file=str(other)))
    assert [r.text for r in loaded.splits["test"]] == ["override"]
    assert len(loaded.splits["train"]) == 8 and loaded.sources["test"] == str(other)
    only = load_data(data_cfg(format="json_ocr", train_file=str(split_folder / "val.json")), splits=("train",))
    assert list(only.splits) == ["train"] and len(only.splits["train"]) == 2


def test_missing_split_file_names_its_path(split_folder):
    (split_folder / "val.json").unlink()
    with pytest.raises(ConfigError) as exc:
        load_data(data_cfg(format="json_ocr", path=str(split_folder)))
    assert str(split_folder / "val.json") in str(exc.value) and "data.path" in str(exc.value)
    # a split not asked for is not required
    assert list(load_data(data_cfg(format="json_ocr", path=str(split_folder)), splits=("test",)).splits) == ["test"]


def test_no_source_names_the_keys_to_set():
    with pytest.raises(ValueError, match=r"data\.path.*data\.train_file"):
        load_data(data_cfg(format="json_ocr"))
    with pytest.raises(ConfigError, match="data.path=/no/such/dir does not exist"):
        load_data(data_cfg(format="json_ocr", path="/no/such/dir"))
    with pytest.raises(ValueError, match=r"data\.format='csv' is unknown.*synthetic"):
        load_data(data_cfg(format="csv", path=str(TINY)))


@pytest.mark.parametrize("on_error", ["skip", OnError.skip])
def test_skipped_records_are_summed_by_reason(tmp_path, on_error):
    folder = Path(shutil.copytree(BAD, tmp_path / "bad"))
    for split in ("train", "val", "test"):
        shutil.copy(folder / "bad_values.jsonl", folder / f"{split}.jsonl")
    cfg = OmegaConf.create({**OmegaConf.to_container(data_cfg(format="jsonl_vision", path=str(folder))),
                            "on_error": on_error})
    loaded = load_data(cfg)
    assert {k: len(v) for k, v in loaded.splits.items()} == {"train": 2, "val": 2, "test": 2}
    assert loaded.skipped["unreadable_image"] == 9 and loaded.skipped["empty_text"] == 6
    assert sum(loaded.skipped.values()) == 30


def test_raise_is_the_default_and_names_file_and_line(tmp_path):
    folder = Path(shutil.copytree(BAD, tmp_path / "bad"))
    shutil.copy(folder / "bad_values.jsonl", folder / "train.jsonl")
    with pytest.raises(DataError, match=r"train\.jsonl:2: 'response' must be a string"):
        load_data(data_cfg(format="jsonl_vision", path=str(folder)), splits=("train",))


def test_a_file_with_no_usable_record_is_an_error(tmp_path):
    shutil.copy(BAD / "truncated.png", tmp_path / "t.png")
    (tmp_path / "train.jsonl").write_text(json.dumps({"image": "t.png", "response": "x"}) + "\n")
    with pytest.raises(DataError, match=r"train\.jsonl: no usable records"):
        load_data(data_cfg(format="jsonl_vision", path=str(tmp_path), on_error="skip"), splits=("train",))


def test_page_xml_reads_prepared_lines(tmp_path):
    for split in ("train", "val", "test"):
        (tmp_path / "lines").mkdir(exist_ok=True)
        shutil.copy(BAD / "good.png", tmp_path / "lines" / f"{split}.png")
        row = {"image": f"lines/{split}.png", "text": split, "id": f"{split}-1", "page": f"p-{split}"}
        (tmp_path / f"{split}.jsonl").write_text(json.dumps(row) + "\n")
    loaded = load_data(data_cfg(format="page_xml", path=str(tmp_path)))
    assert {k: [r.text for r in v] for k, v in loaded.splits.items()} == {s: [s] for s in ("train", "val", "test")}
    assert loaded.splits["val"][0].group == "p-val"


def test_messages_data_urls_are_decoded_under_the_run(tmp_path):
    import base64

    url = "data:image/png;base64," + base64.b64encode((BAD / "good.png").read_bytes()).decode()
    row = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]},
                        {"role": "assistant", "content": "good line"}]}
    (tmp_path / "chat.jsonl").write_text(json.dumps(row) + "\n")
    run_dir = tmp_path / "run"
    loaded = load_data(data_cfg(format="messages", train_file=str(tmp_path / "chat.jsonl")), run_dir, ("train",))
    assert Path(loaded.splits["train"][0].image).parent == run_dir / "images"


def test_overlapping_images_are_warned_about(split_folder, caplog):
    shutil.copy(split_folder / "train.json", split_folder / "test.json")
    with caplog.at_level(logging.WARNING, logger="ocrft.data.loading"):
        load_data(data_cfg(format="json_ocr", path=str(split_folder)))
    assert "appear in more than one split" in caplog.text


def synthetic_cfg(cache: Path, **kw):
    return data_cfg(format="synthetic", num_train=6, num_val=2, num_test=3, cache_dir=str(cache), **kw)


def test_synthetic_generates_seeded_splits_once_and_reuses_them(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = load_data(synthetic_cfg(cache, charset="digits"))
    assert {k: len(v) for k, v in first.splits.items()} == {"train": 6, "val": 2, "test": 3}
    assert all(r.text.isdigit() for v in first.splits.values() for r in v)
    assert {r.id.split("-")[0] for r in first.splits["val"]} == {"val"}
    # each split has its own seed: no split repeats another's texts
    assert not {r.text for r in first.splits["train"]} & {r.text for r in first.splits["test"]}
    folders = sorted(p.name for p in cache.iterdir() if p.is_dir())  # beside them: the builders' lock files
    assert len(folders) == 3 and not any(name.startswith(".") for name in folders)  # no temp dirs left

    def fail(*args, **kwargs):
        raise AssertionError("re-rendered instead of reusing the cache")

    monkeypatch.setattr(synthetic, "generate_lines", fail)
    again = load_data(synthetic_cfg(cache, charset="digits"))
    assert again.splits == first.splits and again.sources == first.sources
    monkeypatch.undo()
    other = load_data(synthetic_cfg(cache, charset="digits", split_seed=43))
    assert other.sources["train"] != first.sources["train"]
    assert [r.text for r in other.splits["train"]] != [r.text for r in first.splits["train"]]


def test_synthetic_cache_survives_a_failed_render(tmp_path, monkeypatch):
    cache = tmp_path / "cache"

    def boom(out_dir, **kwargs):
        (Path(out_dir) / "half.png").write_bytes(b"")
        raise RuntimeError("killed mid-render")

    monkeypatch.setattr(synthetic, "generate_lines", boom)
    with pytest.raises(RuntimeError):
        load_data(synthetic_cfg(cache), splits=("train",))
    # nothing half-written is left to be reused (the builders' lock file stays, empty)
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []
    monkeypatch.undo()
    assert len(load_data(synthetic_cfg(cache), splits=("train",)).splits["train"]) == 6


def test_synthetic_invoices(tmp_path):
    cfg = data_cfg(format="synthetic_invoice", num_train=2, num_val=1, num_test=1, cache_dir=str(tmp_path))
    loaded = load_data(cfg)
    assert {k: len(v) for k, v in loaded.splits.items()} == {"train": 2, "val": 1, "test": 1}
    assert all("invoice_number" in json.loads(r.text) for v in loaded.splits.values() for r in v)


def test_plain_dataclass_config_works_too():
    loaded = load_data(DataConfig(format="json_ocr", path=str(TINY / "ocr.json")), splits=("train",))
    assert len(loaded.splits["train"]) == 10


# --- empty validation: carved from train, split by line, or a clear stop ------------------


def _pages(tmp_path: Path, pages: int, lines: int) -> Path:
    """A lines JSONL file: ``pages`` pages of ``lines`` lines each (one image per line)."""
    from PIL import Image

    rows = []
    for p in range(pages):
        for n in range(lines):
            Image.new("L", (16, 6), p * 10 + n).save(tmp_path / f"p{p}_{n}.png")
            rows.append(json.dumps({"image": f"p{p}_{n}.png", "text": f"page {p} line {n}", "page": f"p{p}"}))
    (tmp_path / "lines.jsonl").write_text("\n".join(rows) + "\n")
    return tmp_path / "lines.jsonl"


def test_val_from_train_carves_whole_pages_seeded(tmp_path, caplog):
    path = _pages(tmp_path, pages=10, lines=3)
    base = dict(format="lines_jsonl", path=str(path), train_ratio=0.9, val_ratio=0.0)
    with caplog.at_level(logging.WARNING):
        empty = load_data(data_cfg(**base))
    assert empty.splits["val"] == []
    assert any(r.levelno == logging.WARNING and "data val: 0 records" in r.getMessage() for r in caplog.records)
    carved = load_data(data_cfg(**base, val_from_train=0.2))
    pages = {s: {r.group for r in v} for s, v in carved.splits.items()}
    assert len(carved.splits["val"]) == 6 and len(pages["val"]) == 2  # 0.2 of 27 lines: two whole pages
    assert not pages["val"] & pages["train"] and not pages["val"] & pages["test"]
    assert carved.splits["test"] == empty.splits["test"]  # test untouched
    assert {r.id for r in carved.splits["train"] + carved.splits["val"]} == {r.id for r in empty.splits["train"]}
    assert "data.val_from_train" in carved.sources["val"]
    again = load_data(data_cfg(**base, val_from_train=0.2))
    other = load_data(data_cfg(**base, val_from_train=0.2, split_seed=7))
    assert [r.id for r in again.splits["val"]] == [r.id for r in carved.splits["val"]]
    assert {r.group for r in other.splits["val"]} != pages["val"]  # the seed chooses the pages


def test_val_from_train_leaves_a_real_val_split_alone(split_folder):
    loaded = load_data(data_cfg(format="json_ocr", path=str(split_folder), val_from_train=0.5))
    assert {k: len(v) for k, v in loaded.splits.items()} == {"train": 8, "val": 2, "test": 2}


def test_split_by_line_splits_one_page(tmp_path, caplog):
    path = _pages(tmp_path, pages=1, lines=10)
    by_page = load_data(data_cfg(format="lines_jsonl", path=str(path)))
    assert {k: len(v) for k, v in by_page.splits.items()} == {"train": 10, "val": 0, "test": 0}
    with caplog.at_level(logging.WARNING):
        by_line = load_data(data_cfg(format="lines_jsonl", path=str(path), split_by_line=True))
    assert {k: len(v) for k, v in by_line.splits.items()} == {"train": 8, "val": 1, "test": 1}
    assert "split_by_line=true" in caplog.text and "optimistic" in caplog.text
    assert "by line" in by_line.sources["test"]


def test_empty_val_stops_a_validating_run():
    from ocrft.training.validation import check_validation_data
    from ocrft.config import ConfigError

    with pytest.raises(ConfigError, match=r"eval.every_n_steps=5 .*val split is empty.*data.format=line_folder; "
                                          r"val from LINES \(has no val split\).*data.val_from_train=.*eval.every_n_steps=0"):
        check_validation_data(5, [], "line_folder", "LINES (has no val split)")
    check_validation_data(0, [], "line_folder", "LINES")  # not validating: nothing to check
    check_validation_data(5, ["a record"], "line_folder", "LINES")


def test_split_all_is_every_record_once_with_unique_ids(split_folder, tmp_path):
    loaded = load_data(data_cfg(format="json_ocr", path=str(split_folder)), splits=("all",))
    assert {k: len(v) for k, v in loaded.splits.items()} == {"train": 8, "val": 2, "test": 2, "all": 12}
    assert [r.id for r in loaded.splits["all"]][:1] == ["train:0"]  # ids as the splits have them
    assert str(split_folder / "test.json") in loaded.sources["all"]
    # a folder without a val file: val is empty, not an error, when every split is asked for
    (split_folder / "val.json").unlink()
    assert len(load_data(data_cfg(format="json_ocr", path=str(split_folder)), splits=("all",)).splits["all"]) == 10
    # one file named as two splits is read once; two files whose rows share fallback ids
    # ("<file stem>:<index>") keep them apart as <split>/<id>
    same = load_data(data_cfg(format="json_ocr", train_file=str(split_folder / "train.json"),
                              test_file=str(split_folder / "train.json")), splits=("all",))  # fmt: skip
    assert len(same.splits["all"]) == 8
    twin = tmp_path / "twin" / "train.json"
    twin.parent.mkdir()
    twin.write_text((split_folder / "test.json").read_text())
    for png in split_folder.glob("*.png"):
        shutil.copy(png, twin.parent / png.name)
    clash = load_data(data_cfg(format="json_ocr", train_file=str(split_folder / "train.json"), test_file=str(twin)),
                      splits=("all",))  # fmt: skip
    ids = [r.id for r in clash.splits["all"]]
    assert len(ids) == len(set(ids)) == 10 and "train/train:0" in ids and "test/train:0" in ids


def test_train_ratio_zero_makes_a_single_source_all_test():
    everything = load_data(data_cfg(format="json_ocr", path=str(TINY / "ocr.json"), train_ratio=0, val_ratio=0))
    assert {k: len(v) for k, v in everything.splits.items()} == {"train": 0, "val": 0, "test": 12}
    with pytest.raises(ConfigError, match=r"^data\.train_ratio=1\.5 must be between 0 and 1"):
        load_data(data_cfg(format="json_ocr", path=str(TINY / "ocr.json"), train_ratio=1.5))
    with pytest.raises(ConfigError, match=r"^data\.train_ratio=0\.8 \+ data\.val_ratio=0\.5 must be at most 1"):
        split_records([], 0.8, 0.5, 0)
