"""Dataset analysis: hand-checked statistics, unseen characters, and task=analyze's files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from PIL import Image

from ocrft.tasks.analyze import analysis_markdown, analyze_splits, plot_analysis, run_analyze
from ocrft.config import DataConfig
from ocrft.data.record import Record
from ocrft.runner import RunContext
from ocrft.tracking import NullTracker


def image(path: Path, size: tuple[int, int]) -> str:
    Image.new("L", size, 255).save(path)
    return str(path)


@pytest.fixture
def splits(tmp_path):
    return {
        "train": [
            Record("t1", image(tmp_path / "t1.png", (100, 20)), "abc"),
            Record("t2", image(tmp_path / "t2.png", (300, 40)), "abcab"),
            Record("t3", image(tmp_path / "t3.png", (200, 30)), "b"),
        ],
        "val": [Record("v1", image(tmp_path / "v1.png", (50, 10)), "abz")],
        "test": [
            Record("x1", image(tmp_path / "x1.png", (80, 16)), "ЖaЖ|"),
            Record("x2", str(tmp_path / "missing.png"), "ab"),
            Record("x3", Image.new("L", (7, 9)), "c"),  # an in-memory image counts too
        ],
    }


def test_sizes_and_length_and_image_stats(splits):
    a = analyze_splits(splits)
    train = a["splits"]["train"]
    assert train["num_samples"] == 3
    # lengths 3, 5, 1
    assert train["text_length"] == {"min": 1, "mean": 3.0, "median": 3, "max": 5}
    assert train["text_length_hist"] == {1: 1, 3: 1, 5: 1}
    assert train["image_width"] == {"min": 100, "mean": 200.0, "median": 200, "max": 300}
    assert train["image_height"]["median"] == 30
    assert train["char_freq"] == {"a": 3, "b": 4, "c": 2} and list(train["char_freq"])[0] == "b"
    assert train["num_chars"] == 9 and train["distinct_chars"] == 3
    test = a["splits"]["test"]
    assert test["unreadable_images"] == 1  # missing.png: counted, not a crash
    assert test["image_width"] == {"min": 7, "mean": 43.5, "median": 43.5, "max": 80}


def test_unseen_characters(splits):
    a = analyze_splits(splits)
    assert a["unseen_chars"] == {"val": {"z": 1}, "test": {"Ж": 2, "|": 1}}
    assert a["samples_with_unseen_chars"] == {"val": 1, "test": 1}
    assert "train" not in a["unseen_chars"]


def test_empty_split_and_no_train(tmp_path):
    a = analyze_splits({"test": [], "val": [Record("v", image(tmp_path / "v.png", (4, 4)), "q")]})
    assert a["splits"]["test"]["text_length"] is None and a["splits"]["test"]["num_samples"] == 0
    assert a["unseen_chars"]["val"] == {"q": 1}  # nothing was seen without a train split


def test_markdown_and_plot(splits, tmp_path):
    a = analyze_splits(splits)
    md = analysis_markdown(a)
    assert "| train | 3 | 1 / 3.0 / 3 / 5 |" in md
    assert "never seen in train: 2 (1 samples affected)" in md
    assert "| Ж | U+0416 | 2 |" in md and "| &#124; | U+007C | 1 |" in md  # a pipe cannot break the table
    png = plot_analysis(json.loads(json.dumps(a)), tmp_path / "a.png")  # also works from the JSON file
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 500


def test_run_analyze_writes_its_files(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for split, texts in {"train": ["abc", "bcd"], "val": ["ab"], "test": ["abx", "yy"]}.items():
        rows = [{"img_path": image(data / f"{split}{i}.png", (60, 20)), "ocr_results": t} for i, t in enumerate(texts)]
        (data / f"{split}.json").write_text(json.dumps(rows))
    cfg = OmegaConf.create({"data": OmegaConf.structured(DataConfig(format="json_ocr", path=str(data)))})
    run_dir = tmp_path / "run"
    result = run_analyze(cfg, RunContext(run_dir=run_dir, tracker=NullTracker()))
    analysis = json.loads((run_dir / "analysis.json").read_text())
    assert analysis["unseen_chars"]["test"] == {"x": 1, "y": 2}
    assert result.metrics["analyze/test/unseen_chars"] == 2 and result.metrics["analyze/train/num_samples"] == 2
    assert (run_dir / "analysis.md").read_text().startswith("# Dataset analysis")
    assert Path(result.paths["analysis_plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run_dir / "analysis.csv").read_text().startswith("split,num_samples,")
    assert {"analysis_parquet", "analysis_chars_csv", "analysis_chars_parquet"} <= set(result.paths)


def test_tables_hold_the_numbers_of_the_analysis(splits, tmp_path):
    import pandas as pd

    from ocrft.tasks.analyze import chars_frame, splits_frame, write_tables

    a = analyze_splits(splits)
    table = splits_frame(a)
    assert list(table.index) == ["train", "val", "test"]
    train, test = table.loc["train"], table.loc["test"]
    assert (train["num_samples"], train["text_length_min"], train["text_length_mean"], train["text_length_max"]) == (3, 1, 3.0, 5)
    assert train["image_width_median"] == 200 and pd.isna(train["unseen_chars"])
    assert (test["unreadable_images"], test["unseen_chars"], test["samples_with_unseen_chars"]) == (1, 2, 1)
    chars = chars_frame(a)
    zhe = chars[(chars.split == "test") & (chars.char == "Ж")].iloc[0]
    assert (zhe["code_point"], zhe["count"], zhe["seen_in_train"]) == ("U+0416", 2, False)
    assert chars[chars.split == "train"].set_index("char")["count"].to_dict() == {"b": 4, "a": 3, "c": 2}
    assert chars[chars.split == "train"]["seen_in_train"].all()

    paths = write_tables(a, tmp_path)
    assert pd.read_csv(paths["analysis_csv"], index_col="split").loc["test", "num_samples"] == 3
    back = pd.read_parquet(paths["analysis_parquet"])
    pd.testing.assert_frame_equal(back, table)  # the parquet file round-trips exactly
    assert len(pd.read_parquet(paths["analysis_chars_parquet"])) == len(chars) == sum(len(s["char_freq"]) for s in a["splits"].values())


def test_tables_of_an_empty_split(tmp_path):
    import pandas as pd

    from ocrft.tasks.analyze import splits_frame

    a = analyze_splits({"test": [], "val": [Record("v", image(tmp_path / "v.png", (4, 4)), "q")]})
    table = splits_frame(a)
    assert table.loc["test", "num_samples"] == 0 and pd.isna(table.loc["test", "text_length_mean"])
    assert table.loc["val", "unseen_chars"] == 1  # nothing was seen without a train split
