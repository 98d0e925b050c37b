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


class SampledLogprobRecorder(LogprobRecorder):
    """The same for sampled generation (loop-guard retries): the log-probability of the
    token each row *drew*, which is only known at the next step (or, for the last token, from
    the output: :meth:`finish`). One step's log-softmax is kept meanwhile, never more."""

    def __init__(self):
        super().__init__()
        self._pending = None  # the previous step's log-softmax, batch x vocab

    def __call__(self, input_ids, scores):
        import torch

        self._settle(input_ids[:, -1])
        self._pending = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def finish(self, last_tokens) -> None:
        """Record the last step's draws: ``last_tokens`` is the output's last column."""
        self._settle(last_tokens)

    def _settle(self, drawn) -> None:
        if self._pending is not None:
            index = drawn.to(self._pending.device)[:, None]
            self.steps.append(self._pending.gather(1, index)[:, 0].cpu())
            self._pending = None


def summarize(logprobs: Sequence[float]) -> tuple[float, float]:
    """(mean, min) of a sample's token log-probabilities; (0.0, 0.0) for no tokens."""
    if not logprobs:
        return 0.0, 0.0
    return sum(logprobs) / len(logprobs), min(logprobs)
