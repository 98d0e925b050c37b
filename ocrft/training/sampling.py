"""Length-grouped training batches in random order.

transformers' ``group_by_length`` sorts each mega-batch of 50 batches by length, longest
first, and trains on them in that order: every 50 steps the model goes from the longest
lines to the shortest. Validation on a step that ends a mega-batch (every 50, 100, ...
steps) then finds it fresh from the shortest lines, and its CER swings with the step it
is measured at (experiments/sweep_pruning: 0.24 at step 125, 0.41 at step 150, same run).
That misleads best-checkpoint selection and pruning alike. Here the batches are the same,
so padding is as low, but their order is shuffled (the longest batch still comes first, so
that running out of memory happens at step 1, not hours in).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch
from torch.utils.data import Sampler
from transformers.trainer_pt_utils import get_length_grouped_indices
from trl import SFTTrainer

from ocrft.training.checkpoints import removed_if_disk_full


def shuffled_length_grouped_indices(lengths: Sequence[int], batch_size: int, generator=None) -> list[int]:
    """transformers' length-grouped indices, with every full batch but the first in random order."""
    indices = get_length_grouped_indices(list(lengths), batch_size, generator=generator)
    batches = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    # A partial batch stays last: anywhere else it would shift every later batch boundary.
    tail = [batches.pop()] if batches and len(batches[-1]) < batch_size else []
    if len(batches) <= 2:
        return [i for batch in batches + tail for i in batch]
    first, rest = batches[0], batches[1:]
    order = torch.randperm(len(rest), generator=generator).tolist()
    return [i for batch in [first, *(rest[j] for j in order), *tail] for i in batch]


class ShuffledLengthGroupedSampler(Sampler):
    """Yields :func:`shuffled_length_grouped_indices`, reshuffled on every pass."""

    def __init__(self, lengths: Sequence[int], batch_size: int, generator: Optional[torch.Generator] = None):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.generator = generator

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        # The global torch RNG when no generator is given, as transformers' sampler: the
        # Trainer seeds it, so a resumed run replays the same order and skips the seen batches.
        return iter(shuffled_length_grouped_indices(self.lengths, self.batch_size, self.generator))


class OcrftSFTTrainer(SFTTrainer):
    """TRL's SFTTrainer, drawing ``group_by_length`` batches in random order; a checkpoint
    save cut short by a full disk leaves no partial ``checkpoint-N`` (training.checkpoints)."""

    def _save_checkpoint(self, model, trial) -> None:
        folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
        with removed_if_disk_full(folder):
            super()._save_checkpoint(model, trial)

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        column = self.args.length_column_name
        if self.args.train_sampling_strategy != "group_by_length" or column not in getattr(dataset, "column_names", ()):
            return super()._get_train_sampler(train_dataset)
        batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
        return ShuffledLengthGroupedSampler(dataset[column], batch)
