"""Stop a sample whose generated tail repeats: the loop guard (``eval.loop_guard``).

VLMs loop on OCR: Qwen2.5/3-VL repeat a phrase until ``max_new_tokens``, which costs the
whole token budget per looping sample and yields a text scored as degenerate anyway.
``repetition_penalty`` and ``no_repeat_ngram_size`` prevent loops by changing every token's
probability, which also breaks text that legitimately repeats (tables, numbers). The guard
changes nothing until a loop is certain: it stops a row once its tail is ``max_repeats``
back-to-back copies of one unit of 1..``ngram`` tokens, and the text is cut after the first
copy (the unit itself may be real text; its repetitions are not).
"""

from __future__ import annotations

from typing import Optional, Sequence


def loop_start(tokens: Sequence[int], ngram: int, max_repeats: int) -> Optional[int]:
    """Where the repetition starts if ``tokens`` ends in ``max_repeats`` copies of one unit
    of 1..``ngram`` tokens (the index of the second copy), else None.

    The shortest unit wins, so ``a a a a`` is cut after one ``a``, not after ``a a``.
    """
    n = len(tokens)
    for unit in range(1, ngram + 1):
        span = unit * max_repeats
        if span > n:
            break
        tail = tokens[n - span :]
        # compare copy by copy against the last one: most units fail on the first compare
        last = tail[span - unit :]
        if all(tail[k : k + unit] == last for k in range(span - 2 * unit, -1, -unit)):
            return n - span + unit
    return None


class LoopGuard:
    """A transformers stopping criterion: marks a row done when :func:`loop_start` finds a
    loop in its generated tokens; ``cuts[row]`` is then where its text is cut (relative to
    the first generated token). A row that produced an end token is left alone from then on:
    the padding that follows it while its batch-mates run is not a loop.
    """

    def __init__(self, prompt_length: int, ngram: int, max_repeats: int, eos_ids: Sequence[int]):
        self.prompt_length = prompt_length
        self.ngram = ngram
        self.max_repeats = max_repeats
        self.eos_ids = set(eos_ids)
        self.cuts: dict[int, int] = {}
        self.ended: set[int] = set()
        self._window = ngram * max_repeats

    def __call__(self, input_ids, scores=None, **kwargs):
        import torch

        done = []
        generated = input_ids[:, self.prompt_length :]
        start = max(0, generated.shape[1] - self._window)
        # called once per new token: the last column is each row's newest token
        for row, tail in enumerate(generated[:, start:].tolist()):
            if row in self.cuts:
                done.append(True)
                continue
            if row in self.ended or tail[-1] in self.eos_ids:
                self.ended.add(row)
                done.append(False)  # finished normally; what follows is padding
                continue
            cut = loop_start(tail, self.ngram, self.max_repeats)
            if cut is not None:
                self.cuts[row] = start + cut
            done.append(cut is not None)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
