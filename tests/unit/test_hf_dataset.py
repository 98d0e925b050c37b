"""data=hf_dataset: parquet with embedded image bytes (the hub's layout), save_to_disk folders,
imagefolders; images are written to the cache undecoded; columns and split names checked."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from PIL import Image

from ocrft.config import DataConfig
from ocrft.data.hf_dataset import read_hf_splits
from ocrft.data.loading import load_data
from ocrft.data.reading import WHOLE
from ocrft.data.record import DataError
from ocrft.config import ConfigError


def png(shade: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (20, 6), shade).save(buf, format="PNG")
    return buf.getvalue()


def data_cfg(**kw):
    return OmegaConf.structured(DataConfig(format="hf_dataset", **kw))


def write_parquet(path: Path, n: int, start: int = 0, text_column: str = "text") -> list[bytes]:
    """A parquet file as the hub stores image datasets: image = struct{bytes, path}."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    images = [png(start + i) for i in range(n)]
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({
        "image": pa.array([{"bytes": b, "path": f"line_{start + i}.png"} for i, b in enumerate(images)], image_type),
        text_column: [f"line {start + i} " for i in range(n)],
    })
    # the metadata datasets writes, so the column is read as an Image feature
    features = {"image": {"_type": "Image"}, text_column: {"dtype": "string", "_type": "Value"}}
    table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return images


def test_one_parquet_file_is_split_by_the_ratios(tmp_path: Path):
    images = write_parquet(tmp_path / "lines.parquet", 10)
    parts = read_hf_splits(tmp_path / "lines.parquet", cache_dir=tmp_path / "cache")
    assert list(parts) == [WHOLE]
    records = parts[WHOLE].records
    assert [r.text for r in records] == [f"line {i} " for i in range(10)]  # spaces kept
    # each image's bytes, content-addressed in the cache, undecoded
    assert [Path(r.image).read_bytes() for r in records] == images
    assert all(Path(r.image).parent == tmp_path / "cache" and r.image.endswith(".png") for r in records)
    loaded = load_data(data_cfg(path=str(tmp_path / "lines.parquet"), cache_dir=str(tmp_path / "c2")))
    assert {k: len(v) for k, v in loaded.splits.items()} == {"train": 8, "val": 1, "test": 1}


def test_hub_layout_folder_keeps_its_named_splits(tmp_path: Path):
    write_parquet(tmp_path / "data" / "train-00000-of-00001.parquet", 6)
    write_parquet(tmp_path / "data" / "validation-00000-of-00001.parquet", 2, start=50)
    write_parquet(tmp_path / "data" / "test-00000-of-00001.parquet", 3, start=100)
    loaded = load_data(data_cfg(path=str(tmp_path), cache_dir=str(tmp_path / "cache")))
    assert {k: len(v) for k, v in loaded.splits.items()} == {"train": 6, "val": 2, "test": 3}
    assert loaded.splits["val"][0].text == "line 50 " and "val split" in loaded.sources["val"]


def test_save_to_disk_datasetdict(tmp_path: Path):
    import datasets

    def part(n: int, start: int) -> "datasets.Dataset":
        rows = {"image": [{"bytes": png(start + i), "path": None} for i in range(n)],
                "transcription": [f"t{start + i}" for i in range(n)], "id": [f"s{start + i}" for i in range(n)]}
        features = datasets.Features({"image": datasets.Image(), "transcription": datasets.Value("string"),
                                      "id": datasets.Value("string")})
        return datasets.Dataset.from_dict(rows, features=features)

    saved = tmp_path / "saved"
    datasets.DatasetDict({"train": part(4, 0), "validation": part(2, 10), "test": part(2, 20)}).save_to_disk(str(saved))
    loaded = load_data(data_cfg(path=str(saved), text_column="transcription", cache_dir=str(tmp_path / "cache")))
    assert {k: [r.id for r in v] for k, v in loaded.splits.items()} == {
        "train": ["s0", "s1", "s2", "s3"], "val": ["s10", "s11"], "test": ["s20", "s21"]}
    assert Path(loaded.splits["test"][1].image).read_bytes() == png(21)


def test_imagefolder_with_metadata_resolves_paths(tmp_path: Path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rows = []
    for i in range(4):
        (folder / f"{i}.png").write_bytes(png(i))
        rows.append(json.dumps({"file_name": f"{i}.png", "text": f"caption {i}"}))
    (folder / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    parts = read_hf_splits(folder, cache_dir=tmp_path / "cache")
    records = sorted(parts[WHOLE].records, key=lambda r: r.text)
    assert [r.text for r in records] == [f"caption {i}" for i in range(4)]
    assert [Path(r.image).read_bytes() for r in records] == [png(i) for i in range(4)]


def test_missing_column_names_it_and_lists_the_columns(tmp_path: Path):
    write_parquet(tmp_path / "lines.parquet", 3, text_column="ground_truth")
    with pytest.raises(ConfigError, match=r"data.text_column='text' is not a column .*\['image', 'ground_truth'\]"):
        load_data(data_cfg(path=str(tmp_path / "lines.parquet"), cache_dir=str(tmp_path / "cache")))
    with pytest.raises(ConfigError, match=r"data.image_column='picture'"):
        read_hf_splits(tmp_path / "lines.parquet", image_column="picture", text_column="ground_truth")


def test_unreachable_hub_id_is_one_clear_error(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # so the id is not a local folder
    with pytest.raises(DataError, match=r"no-such-owner/no-such-dataset: not a local path, and the hub dataset could not"):
        load_data(data_cfg(path="no-such-owner/no-such-dataset"))
    with pytest.raises(ConfigError, match="data.path=.*does not exist"):
        load_data(data_cfg(path=str(tmp_path / "missing" / "x.parquet")))


def test_empty_text_is_a_bad_record(tmp_path: Path):
    import datasets

    ds = datasets.Dataset.from_dict({"image": [{"bytes": png(1), "path": None}] * 2, "text": ["ok", "  "]},
                                    features=datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")}))
    ds.to_parquet(str(tmp_path / "x.parquet"))
    with pytest.raises(DataError, match=r"all row 1: 'text' is empty"):
        read_hf_splits(tmp_path / "x.parquet", cache_dir=tmp_path / "cache")
    parts = read_hf_splits(tmp_path / "x.parquet", on_error="skip", cache_dir=tmp_path / "cache")
    assert len(parts[WHOLE].records) == 1 and dict(parts[WHOLE].skipped) == {"empty_text": 1}


def test_task_prepare_writes_images_into_the_output(tmp_path: Path):
    from tests.helpers import run

    write_parquet(tmp_path / "src" / "data" / "train-00000-of-00001.parquet", 10)
    out = tmp_path / "prepared"
    record = run(["task=prepare", "data=hf_dataset", f"data.path={tmp_path / 'src'}", f"data.output_dir={out}"],
                 tmp_path / "run")
    assert record["status"] == "finished"
    rows = [json.loads(x) for s in ("train", "val", "test") for x in (out / f"{s}.jsonl").read_text().splitlines()]
    assert len(rows) == 10 and all(r["image"].startswith("images/") and (out / r["image"]).is_file() for r in rows)
    back = load_data(data_cfg(path=str(out)))
    assert sum(len(v) for v in back.splits.values()) == 10


def test_a_plain_binary_column_of_encoded_images(tmp_path: Path):
    """pandas.to_parquet and webdataset conversions store the encoded file as raw bytes,
    with no Image feature: those are images too."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    images = [png(i) for i in range(4)]
    pq.write_table(pa.table({"image": pa.array(images, pa.binary()), "text": [f"t{i}" for i in range(4)]}),
                   tmp_path / "plain.parquet")
    (part,) = read_hf_splits(tmp_path / "plain.parquet", cache_dir=tmp_path / "cache").values()
    assert [Path(r.image).read_bytes() for r in part.records] == images
    assert [r.text for r in part.records] == ["t0", "t1", "t2", "t3"]
