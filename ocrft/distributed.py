"""This process's place in a torchrun/accelerate launch, and the run folder all ranks share.

Imported by ocrft.runner before any task runs, so nothing heavy is imported at module level.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    size: int
    rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """This process's place in a torchrun/accelerate launch (1 process otherwise)."""
    return World(size=int(os.environ.get("WORLD_SIZE", 1)), rank=int(os.environ.get("RANK", 0)))


def on_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def agree_run_dir(run_dir: Path) -> Path:
    """Rank 0's run folder, on every rank of a torchrun/accelerate launch.

    Each rank composes its own config, so the default ``run_dir`` (a timestamp) differs when
    ranks start a second apart, and checkpoints, RNG states and the adapter would scatter.
    The ranks agree over the process group the Trainer would start anyway (started here the
    same way; it reuses it). A rank's own Hydra folder, if it lost, is removed when it holds
    nothing but Hydra's files.
    """
    if world().size == 1:
        return run_dir
    from datetime import timedelta

    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    # 1800 s: TrainingArguments.ddp_timeout's default, which the Trainer would have set.
    PartialState(cpu=not on_cuda(), timeout=timedelta(seconds=1800))
    agreed = Path(broadcast_object_list([str(run_dir)])[0])
    if agreed != run_dir:
        log.info("rank %d: using rank 0's run folder %s instead of %s", world().rank, agreed, run_dir)
        if run_dir.is_dir() and all(p.name == ".hydra" or p.suffix == ".log" for p in run_dir.iterdir()):
            shutil.rmtree(run_dir, ignore_errors=True)
    return agreed
