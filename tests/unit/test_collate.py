"""Collation per family: loss on target tokens only, padding sides, image-token budget."""

from __future__ import annotations

import pytest
from PIL import Image

from ocrft.models.collate import SEQUENCE_KEYS, Collator, Sample, SequenceTooLongError
from ocrft.models.loading import ensure_tiny, resolve_model


def _samples(targets):
    return [Sample(Image.new("RGB", (64 + 40 * i, 32), "white"), "Read.", t) for i, t in enumerate(targets)]


def test_labels_cover_exactly_the_target(family_processor):
    family, processor = family_processor
    collator = Collator(processor, family)
    targets = ["hello", "Привіт, світ!"]
    batch = collator(_samples(targets))
    tok = processor.tokenizer
    for row, target in enumerate(targets):
        labels = batch["labels"][row]
        kept = labels[labels != -100].tolist()
        assert tok.decode(kept, skip_special_tokens=False) == target + family.target_suffix(processor)
        # the labelled tokens are the last real tokens of the right-padded row
        n_real = int(batch["attention_mask"][row].sum())
        assert batch["input_ids"][row, n_real - len(kept) : n_real].tolist() == kept


def test_generation_batches_are_left_padded(family_processor):
    family, processor = family_processor
    batch = Collator(processor, family)(_samples([None, None]), padding_side="left")
    assert "labels" not in batch
    mask = batch["attention_mask"]
    assert bool(mask[:, -1].all())  # every row ends with a real token: generation continues there
    assert batch["input_ids"].shape[0] == 2


def test_prompt_longer_than_max_length_names_the_key(family_processor):
    family, processor = family_processor
    with pytest.raises(SequenceTooLongError, match="train.max_length=4"):
        Collator(processor, family, max_length=4)(_samples(["abc"]))


def test_long_target_is_refused_never_cut(family_processor):
    """The collator's backstop: a target that does not fit raises, naming the sample; it is
    not truncated (training checks every sample before it starts: test_token_lengths)."""
    family, processor = family_processor
    full = Collator(processor, family)(_samples(["x" * 50]))
    n_total = full["input_ids"].shape[1]
    samples = [Sample(s.image, s.prompt, s.target, id="line-7") for s in _samples(["x" * 50])]
    with pytest.raises(SequenceTooLongError, match=rf"'line-7' is {n_total} tokens.*train.max_length={n_total - 1}"):
        Collator(processor, family, max_length=n_total - 1)(samples)
    fits = Collator(processor, family, max_length=n_total)(samples)
    assert fits["input_ids"].shape[1] == n_total


def test_tiny_checkpoint_reloads_through_from_pretrained(tmp_path):
    out = ensure_tiny("qwen2_vl", root=tmp_path)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    assert resolve_model("qwen2_vl", str(out)).base_path == str(out)


@pytest.mark.parametrize("targets", [["hello", "a", "Привіт, світ!"], [None, None, None]])
def test_one_processor_call_per_batch_builds_what_one_call_per_sample_does(family_processor, targets):
    """The batch's prompts go through the processor together; each row must still be exactly
    the sample collated alone (same tokens, labels, token types), and the image tensors the
    per-sample ones in order, whatever padding the processor added in between."""
    import torch

    family, processor = family_processor
    collator = Collator(processor, family)
    samples = _samples(targets)
    batch = collator(samples)
    alone = [collator([s]) for s in samples]
    real = batch["attention_mask"].bool()
    per_token = [k for k in (*SEQUENCE_KEYS, "labels") if k in batch]
    assert "input_ids" in per_token and ("labels" in per_token) == (targets[0] is not None)
    for i, single in enumerate(alone):
        for key in per_token:
            assert torch.equal(batch[key][i][real[i]], single[key][0]), (key, i)
    for key in ("pixel_values", "image_grid_thw"):
        if key in batch:
            assert torch.equal(batch[key], torch.cat([s[key] for s in alone])), key
