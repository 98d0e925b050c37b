"""Token budgets per family: counts equal what the collator feeds, too-long samples are refused
(naming them) or skipped and counted, and no image is ever cut."""

from __future__ import annotations

import time

import pytest
from PIL import Image

from ocrft.data.images import open_image
from ocrft.data.record import DataError, Record
from ocrft.models.collate import Collator, Sample
from ocrft.models.loading import load_processor, resolve_model
from ocrft.models.registry import get_family
from ocrft.training.token_lengths import check_splits, count_tokens, fit_max_length, length_stats

PROMPT = "Read the text."
LONG = "the end of a very long line " * 8


def _qwen_expanded(processor, batch, row: int) -> int:
    merge = processor.image_processor.merge_size
    return int(batch["image_grid_thw"][row].prod()) // merge**2


def _fixed_expanded(processor, batch, row: int) -> int:
    return processor.image_seq_length


# How many placeholder tokens each family's processor expands one image into, from its own
# image outputs (Qwen: the patch grid merged 2x2) or its fixed sequence length.
EXPANDED = {"qwen2_vl": _qwen_expanded, "qwen2_5_vl": _qwen_expanded, "qwen3_vl": _qwen_expanded,
            "gemma3": _fixed_expanded, "paligemma": _fixed_expanded}  # fmt: skip


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> list[Record]:
    """Lines of several widths (the dynamic-resolution families give them different image
    token counts); sample "long" has a target far longer than the others."""
    folder = tmp_path_factory.mktemp("lines")
    out = []
    for i, (width, text) in enumerate([(48, "ab"), (160, "hello"), (400, "a wider line"), (96, "x"), (160, LONG)]):
        path = folder / f"{i}.png"
        Image.new("RGB", (width, 32), "white").save(path)
        out.append(Record("long" if text == LONG else f"s{i}", str(path), text))
    return out


def _batch(collator: Collator, records: list[Record], max_length=None) -> dict:
    samples = [Sample(open_image(r.image), r.prompt or PROMPT, r.text, id=r.id) for r in records]
    collator.max_length = max_length
    return collator(samples)


def test_counts_are_what_the_collator_feeds(family_processor, records):
    family, processor = family_processor
    counts = count_tokens(records, processor, family, PROMPT)
    batch = _batch(Collator(processor, family), records)
    image_id = processor.tokenizer.convert_tokens_to_ids(family.image_token)
    for row, c in enumerate(counts):
        assert c.id == records[row].id
        assert c.total == int(batch["attention_mask"][row].sum())
        assert c.image == int((batch["input_ids"][row] == image_id).sum()) == EXPANDED[family.name](processor, batch, row)
    stats = length_stats(counts)
    assert stats["total"]["max"] == max(c.total for c in counts) == counts[-1].total  # the long target
    assert stats["total"]["min"] <= stats["total"]["p50"] <= stats["total"]["p90"] <= stats["total"]["p99"]


def test_too_long_sample_is_refused_naming_it(family_processor, records):
    family, processor = family_processor
    counts = count_tokens(records, processor, family, PROMPT)
    limit = max(c.total for c in counts if c.id != "long")
    long = counts[-1]
    with pytest.raises(DataError) as err:
        fit_max_length(records, counts, limit, "raise", split="train")
    message = str(err.value)
    assert f"1 of {len(records)} train samples are longer than train.max_length={limit}" in message
    assert f"'long' ({long.total} tokens, {long.image} of them image tokens)" in message
    assert "model.max_pixels" in message and "data.on_error=skip" in message
    assert "'s0'" not in message


def test_skip_leaves_out_and_counts_and_no_image_is_cut(family_processor, records):
    family, processor = family_processor
    counts = count_tokens(records, processor, family, PROMPT)
    limit = max(c.total for c in counts if c.id != "long")
    splits = {"train": list(records), "val": records[:2]}
    kept, skipped = check_splits(splits, ("train", "val"), processor, family, prompt=PROMPT, system=None, max_length=limit, on_error="skip")
    assert skipped == 1
    assert [r.id for r in splits["train"]] == [r.id for r in records if r.id != "long"]
    assert [c.id for c in kept["train"]] == [r.id for r in splits["train"]] and len(splits["val"]) == 2
    # every kept sample fits whole: the collator's backstop does not fire, and each row holds
    # all the image tokens its processor output stands for
    batch = _batch(Collator(processor, family), splits["train"], max_length=limit)
    image_id = processor.tokenizer.convert_tokens_to_ids(family.image_token)
    for row in range(len(splits["train"])):
        assert int((batch["input_ids"][row] == image_id).sum()) == EXPANDED[family.name](processor, batch, row)
        assert int(batch["attention_mask"][row].sum()) <= limit


def test_skip_refuses_when_no_sample_fits(family_processor, records):
    family, processor = family_processor
    counts = count_tokens(records, processor, family, PROMPT)
    with pytest.raises(DataError, match=rf"{len(records)} of {len(records)} val samples are longer"):
        fit_max_length(records, counts, min(c.total for c in counts) - 1, "skip", split="val")


def test_256_samples_are_counted_in_seconds(tmp_path):
    family = get_family("qwen2_vl")
    processor = load_processor(resolve_model("qwen2_vl", "tiny:qwen2_vl"))
    records = []
    for i in range(256):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (40 + 7 * (i % 50), 32), "white").save(path)
        records.append(Record(f"r{i}", str(path), "x" * (4 + i % 9)))
    t0 = time.perf_counter()
    counts = count_tokens(records, processor, family, PROMPT)
    assert len(counts) == 256 and time.perf_counter() - t0 < 5.0
    assert len({c.image for c in counts}) > 5  # widths differ, so do image token counts


def test_exif_rotated_image_counts_as_fed(tmp_path):
    """A phone photo stored sideways is fed upright (open_image); its count is still exact."""
    family = get_family("qwen2_vl")
    processor = load_processor(resolve_model("qwen2_vl", "tiny:qwen2_vl"))
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 320 wide, shown rotated 90 degrees: 32 wide, 320 high
    Image.new("RGB", (320, 48), "white").save(rotated, exif=exif)
    (count,) = count_tokens([Record("b", str(rotated), "x")], processor, family, PROMPT)
    batch = _batch(Collator(processor, family), [Record("b", str(rotated), "x")])
    assert open_image(rotated).size == (48, 320)
    assert count.total == int(batch["attention_mask"][0].sum())


def test_no_limit_keeps_everything(records):
    assert fit_max_length(records, [], None, "raise", split="train") == records
