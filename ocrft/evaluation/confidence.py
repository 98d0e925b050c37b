"""Token log-probabilities of greedy generation, recorded as each token is chosen.

A cascade (ocrft.evaluation.cascade) routes a sample by how sure the local model was. The
log-probability of each greedy token is ``max(logits) - logsumexp(logits)`` of the step that
chose it, so recording that one number per row and step during ``generate`` needs no second
forward pass and keeps no logits (``output_scores=True`` would keep batch x vocab floats per
step: gigabytes for a real vocabulary).

The scores seen are the processed ones (after repetition_penalty / no_repeat_ngram_size),
i.e. the distribution the token was actually chosen from.
"""

from __future__ import annotations

from typing import Sequence


class LogprobRecorder:
    """A transformers logits processor that changes nothing and records, per step, each
    row's log-probability of its most likely (greedy) token."""

    def __init__(self):
        self.steps: list = []

    def __call__(self, input_ids, scores):
        import torch

        s = scores.float()
        self.steps.append((s.max(dim=-1).values - torch.logsumexp(s, dim=-1)).cpu())
        return scores

    def row(self, index: int, length: int) -> list[float]:
        """The first ``length`` step log-probabilities of row ``index``."""
        return [float(step[index]) for step in self.steps[:length]]


def summarize(logprobs: Sequence[float]) -> tuple[float, float]:
    """(mean, min) of a sample's token log-probabilities; (0.0, 0.0) for no tokens."""
    if not logprobs:
        return 0.0, 0.0
    return sum(logprobs) / len(logprobs), min(logprobs)
