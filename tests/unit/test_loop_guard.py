"""The loop guard (eval.loop_guard), generation options and per-token confidence."""

from __future__ import annotations

import json

import pytest

from ocrft.evaluation.loop_guard import loop_start
from tests.helpers import compose, run


def test_loop_start_finds_the_second_copy_of_the_shortest_unit():
    assert loop_start([7, 1, 1, 1, 1], ngram=4, max_repeats=4) == 2
    assert loop_start([7, 8, 1, 2, 1, 2, 1, 2, 1, 2], ngram=4, max_repeats=4) == 4
    # "a a a a a a a a" is four copies of "a a" too: one "a" is kept, not two
    assert loop_start([5] * 8, ngram=4, max_repeats=4) == 5


def test_loop_start_leaves_text_that_repeats_less_than_max_repeats():
    separator_row = [9, 3, 4] * 11  # an 11-column table separator, "|---" x 11
    assert loop_start(separator_row, ngram=32, max_repeats=12) is None
    assert loop_start(separator_row + [9, 3, 4], ngram=32, max_repeats=12) == 3
    assert loop_start([1, 2, 3, 1, 2, 3, 1, 2, 4], ngram=3, max_repeats=2) is None
    assert loop_start([1, 2, 3], ngram=8, max_repeats=4) is None  # too short to hold 4 copies


def _tiny_generator(*overrides: str):
    from ocrft.evaluation.generation import build_generator

    cfg = compose(["model=tiny_qwen2_vl", "eval.max_new_tokens=48", *overrides])
    return build_generator(cfg)


def _images():
    from PIL import Image

    return [Image.new("RGB", (64, 32), "white"), Image.new("RGB", (96, 32), (180, 180, 180))]


@pytest.mark.slow
def test_guard_cuts_a_looping_model_where_its_loop_starts():
    """An untrained tiny model loops; guarded, its text is the unguarded text cut short."""
    prompts = ["Read the text."] * 2
    # 128 tokens: long enough for a random model to fall into a loop whatever the float order
    generator = _tiny_generator("eval.loop_guard.ngram=8", "eval.loop_guard.max_repeats=4", "eval.max_new_tokens=128")
    guarded = generator.generate_detailed(_images(), prompts)
    generator.loop_guard = None
    free = generator.generate_detailed(_images(), prompts)
    assert any(g.looped for g in guarded) and not any(g.looped for g in free)
    for g, f in zip(guarded, free):
        if g.looped:
            assert g.num_tokens < f.num_tokens  # the unguarded row ran on
            assert f.text.startswith(g.text) and len(g.text) < len(f.text)
        else:  # stopping one row leaves its batch-mates as they were
            assert g == f


@pytest.mark.slow
def test_confidence_equals_transformers_transition_scores():
    """The recorded log-probabilities are those HF computes from all the logits it keeps."""
    import torch

    from ocrft.models.collate import Sample

    generator = _tiny_generator("eval.loop_guard.enabled=false", "eval.max_new_tokens=12")
    prompts = ["Read the text."] * 2
    ours = generator.generate_detailed(_images(), prompts)
    batch = generator.collator([Sample(image=i, prompt=p) for i, p in zip(_images(), prompts)], padding_side="left")
    with torch.inference_mode():
        out = generator.model.generate(**batch, max_new_tokens=12, eos_token_id=generator.eos_ids,
                                       pad_token_id=generator.pad_id, output_scores=True, return_dict_in_generate=True,
                                       **generator.generate_kwargs)  # fmt: skip
    scores = generator.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
    for row, g in enumerate(ours):
        theirs = scores[row, : g.num_tokens]
        assert g.mean_logprob == pytest.approx(theirs.mean().item(), abs=1e-4)
        assert g.min_logprob == pytest.approx(theirs.min().item(), abs=1e-4)
        assert g.min_logprob <= g.mean_logprob <= 0


@pytest.mark.slow
def test_generation_options_reach_generate():
    """no_repeat_ngram_size and repetition_penalty are handed to transformers and change the text."""
    generator = _tiny_generator("eval.loop_guard.enabled=false", "eval.no_repeat_ngram_size=2",
                                "eval.repetition_penalty=1.3")  # fmt: skip
    seen = {}
    real_generate = generator.model.generate

    def spy(**kwargs):
        seen.update(kwargs)
        out = real_generate(**kwargs)
        seen["ids"] = out[:, kwargs["input_ids"].shape[1] :].tolist()
        return out

    generator.model.generate = spy
    constrained = generator.generate(_images(), ["Read the text."] * 2)
    assert seen["no_repeat_ngram_size"] == 2 and seen["repetition_penalty"] == 1.3
    for ids in seen["ids"]:
        ids = ids[: generator._end(ids) or len(ids)]
        bigrams = list(zip(ids, ids[1:]))
        assert len(set(bigrams)) == len(bigrams)  # no token bigram twice: the option took effect
    generator.generate_kwargs.update(no_repeat_ngram_size=0, repetition_penalty=1.0)
    assert generator.generate(_images(), ["Read the text."] * 2) != constrained


@pytest.mark.slow
def test_eval_counts_guarded_samples_as_degenerate(tmp_path):
    """task=eval with the guard on: looped samples are flagged, degenerate, and resumable."""
    overrides = ["task=eval", "model=tiny_qwen2_vl", "data=synthetic", "data.num_test=4", "eval.max_new_tokens=128",
                 "eval.loop_guard.ngram=8", "eval.loop_guard.max_repeats=4", "eval.batch_size=4"]  # fmt: skip
    record = run(overrides, tmp_path / "run")
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    looped = [s for s in results["samples"] if s.get("looped")]
    assert looped and all(s["degenerate"] for s in looped)
    assert record["metrics"]["eval/looped_rate"] == len(looped) / len(results["samples"])
    assert record["metrics"]["eval/degenerate_rate"] >= record["metrics"]["eval/looped_rate"]
    rows = [json.loads(line) for line in (tmp_path / "run" / "eval_checkpoint.jsonl").read_text().splitlines()]
    assert sum(r["looped"] for r in rows) == len(looped)


def test_padding_after_an_end_token_is_not_a_loop():
    """A row that ended long before its batch-mates is padded; the guard must not flag it
    once its end token has left the window it looks at."""
    import torch

    from ocrft.evaluation.loop_guard import LoopGuard

    eos, pad = 2, 0
    guard = LoopGuard(prompt_length=1, ngram=2, max_repeats=3, eos_ids=[eos])
    rows = [[9, 5, eos], [9, 5, 6]]  # prompt token 9; row 0 ends at its second token
    for step in range(12):  # row 0 is padded on, row 1 keeps writing new tokens
        done = guard(torch.tensor(rows))
        assert done.tolist() == [False, False]
        rows[0].append(pad)
        rows[1].append(10 + step)
    assert guard.cuts == {}
