"""eval.loop_guard.retries: a looped or cut read is generated again with sampling, that row
only, and the better-ended attempt is kept and counted."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from ocrft.evaluation.generation import Generation, better_attempt
from tests.helpers import REPO, compose

# The shipped demo base reads tiny_ocr's lines: with 8 new tokens a few lines end at their end
# token, the longer ones are cut, and a loop guard of 2 copies of 1..2 tokens stops one.
SHORT_READS = ["model=demo_base", "prompt=ocr_line", "data=tiny_ocr", f"data.path={REPO / 'tests/assets/tiny_ocr/ocr.json'}",
               "eval.max_new_tokens=8", "eval.loop_guard.ngram=2", "eval.loop_guard.max_repeats=2"]  # fmt: skip


def test_the_better_ended_attempt_is_kept():
    ended = Generation("ab", mean_logprob=-2.0, ended=True)
    cut = Generation("abab", mean_logprob=-0.1, ended=False)
    looped = Generation("a", looped=True, mean_logprob=-0.01, ended=False)
    assert better_attempt(cut, ended) is ended and better_attempt(ended, cut) is ended  # an end token wins
    assert better_attempt(looped, cut) is cut and better_attempt(cut, looped) is cut  # then: no loop
    surer = Generation("abac", mean_logprob=-0.05, ended=False)
    assert better_attempt(cut, surer) is surer  # between equals: the higher mean log-probability
    assert better_attempt(surer, Generation("x", mean_logprob=-0.05, ended=False)) is surer  # a tie keeps the first


def _reads():
    from ocrft.data.images import open_image
    from ocrft.data.loading import load_data
    from ocrft.evaluation.generation import build_generator

    cfg = compose(SHORT_READS)
    records = load_data(cfg.data, None, splits=("train",)).splits["train"]
    return build_generator(cfg), [open_image(r.image) for r in records], [cfg.prompt.text] * len(records)


@pytest.mark.slow
def test_retries_touch_only_looped_or_cut_rows_and_count_attempts():
    generator, images, prompts = _reads()
    first = generator.generate_detailed(images, prompts)
    assert generator.retries == 0 and all(g.attempts == 1 for g in first)
    well = [i for i, g in enumerate(first) if g.ended_well]
    assert well and any(g.looped for g in first) and any(not g.ended and not g.looped for g in first)

    calls = []  # (rows read: indices into images, their Generations) of each generate call
    once = generator._generate_once

    def spy(batch_images, batch_prompts, max_new_tokens, seed=None):
        outputs = once(batch_images, batch_prompts, max_new_tokens, seed=seed)
        calls.append(([next(i for i, im in enumerate(images) if im is b) for b in batch_images], list(outputs)))
        return outputs

    generator._generate_once = spy
    generator.retries = 2
    retried = generator.generate_detailed(images, prompts)
    assert calls[0] == (list(range(len(images))), first)  # the first read: every row, greedy as before
    assert len(calls) == 3  # some rows were still cut after the first retry
    kept = list(first)
    for rows, outputs in calls[1:]:  # each retry reads the rows not ended well so far, only those
        assert rows == [i for i, g in enumerate(kept) if not g.ended_well]
        for i, g in zip(rows, outputs):
            kept[i] = better_attempt(kept[i], g)
    for i, (g, r) in enumerate(zip(first, retried)):
        reads = sum(i in rows for rows, _ in calls)
        assert r.attempts == reads and replace(kept[i], attempts=reads) == r
        if i in well:
            assert r == g  # untouched: the greedy read, one attempt
        else:
            assert reads > 1 and better_attempt(r, g) is r  # never worse-ended than the greedy read


@pytest.mark.slow
def test_a_sampled_read_records_the_drawn_tokens_log_probabilities():
    """A retry's confidence is the log-probability of the tokens it drew, as transformers
    computes it from every step's scores (at temperature 1 the two distributions agree)."""
    generator, images, prompts = _reads()
    generator.retry_temperature = 1.0
    seen = {}
    real_generate = generator.model.generate

    def spy(**kwargs):
        out = real_generate(**kwargs, output_scores=True, return_dict_in_generate=True)
        seen.update(out=out, prompt_length=kwargs["input_ids"].shape[1])
        return out.sequences

    generator.model.generate = spy
    ours = generator._generate_once(images[:4], prompts[:4], None, seed=3)
    out = seen["out"]
    scores = generator.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
    for row, g in enumerate(ours):
        theirs = scores[row, : g.num_tokens]
        assert g.mean_logprob == pytest.approx(theirs.mean().item(), abs=1e-4)
        assert g.min_logprob == pytest.approx(theirs.min().item(), abs=1e-4)


@pytest.mark.slow
def test_a_retry_leaves_the_callers_random_state_alone():
    import torch

    generator, images, prompts = _reads()
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    generator._generate_once(images[:2], prompts[:2], None, seed=2)
    assert torch.equal(torch.rand(3), expected)  # a validation mid-training does not shift the run's draws


def test_scores_record_attempts_per_sample(tmp_path):
    from ocrft.data.record import Record
    from ocrft.evaluation.scoring import score_and_write

    records = [Record(id=str(i), image=f"{i}.png", text=t) for i, t in enumerate(["ab", "cd", "ef"])]
    metrics, paths = score_and_write(records, ["ab", "cd", "e"], compose([]).eval, model_name="m", out_dir=tmp_path,
                                     attempts=[1, 3, 2])  # fmt: skip
    samples = json.loads((tmp_path / "results.json").read_text())["samples"]
    assert [s["attempts"] for s in samples] == [1, 3, 2]
    assert metrics["retried_rate"] == pytest.approx(2 / 3)


@pytest.mark.slow
def test_eval_with_retries_rereads_only_what_did_not_end(tmp_path):
    """task=eval end to end: a line that ended at its end token reads the same with retries
    on; the others may change, and the loop guard stops no more of them than without."""
    from tests.helpers import run

    reads = {}
    for retries in (0, 2):
        # one batch of all ten lines, as _reads generates them: the same padding, the same reads
        record = run(["task=eval", *SHORT_READS, "eval.split=train", "eval.batch_size=16",
                      f"eval.loop_guard.retries={retries}"], tmp_path / str(retries))  # fmt: skip
        samples = json.loads(Path(record["paths"]["results"]).read_text())["samples"]
        reads[retries] = record, [s["prediction"] for s in samples]
    rows = [json.loads(line) for line in (tmp_path / "0" / "eval_checkpoint.jsonl").read_text().splitlines()]
    generator, images, prompts = _reads()
    ended = {i for i, g in enumerate(generator.generate_detailed(images, prompts)) if g.ended_well}
    assert len(rows) == len(reads[0][1]) and ended
    for i in ended:
        assert reads[2][1][i] == reads[0][1][i]
    assert reads[2][0]["metrics"]["eval/looped_rate"] <= reads[0][0]["metrics"]["eval/looped_rate"]
