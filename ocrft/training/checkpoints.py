"""Trainer checkpoints and saved weights: find the one to resume from, save atomically, load back."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Iterator, Optional

from peft import PeftModel, set_peft_model_state_dict
from safetensors.torch import load_file

from ocrft import atomic
from ocrft.atomic import DiskFullError, disk_full_errno
from ocrft.distributed import world
from ocrft.models.loading import ResolvedModel, write_model_card
from ocrft.models.sharding import adapter_keys_to_model_keys, full_state_dict, is_sharded, load_full_state_dict
from ocrft.redact import redacted_yaml

log = logging.getLogger(__name__)


def last_checkpoint(folder: Path) -> Optional[str]:
    """The newest *complete* Trainer checkpoint in ``folder`` (None if there is none).

    The Trainer writes ``checkpoint-N`` in place, ``trainer_state.json`` last, so a run killed
    while saving leaves a folder without a readable one; resuming from it would crash, so it
    is passed over for the previous checkpoint.
    """
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and p.is_dir()]
    for _, path in sorted(found, reverse=True):
        try:
            json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            log.warning("%s is incomplete (killed while saving?): resuming from an earlier checkpoint", path)
            continue
        return str(path)
    return None


@contextlib.contextmanager
def removed_if_disk_full(folder: Path) -> Iterator[None]:
    """Guard a Trainer save into ``folder`` (``checkpoint-N``) against a full disk.

    transformers writes the folder in place; a full disk stops it part-way. The partial
    folder is removed (it frees the space it took, and no resume can take it) and the error
    becomes a :class:`DiskFullError` naming it and the checkpoint a re-run resumes from.
    torch.save and safetensors report the failure without an OSError: ``disk_full_errno``
    recognises them.
    """
    try:
        yield
    except Exception as err:
        code = disk_full_errno(err, folder)
        if code is None:
            raise
        if world().is_main:
            shutil.rmtree(folder, ignore_errors=True)
        previous = last_checkpoint(folder.parent)
        kept = f"the partial {folder.name} was removed; " + (
            f"{Path(previous).name} is complete and the run resumes from it" if previous
            else "there is no earlier checkpoint, so the run trains from the start"  # fmt: skip
        )
        raise DiskFullError(code, folder, kept) from err


def reached_max_steps(checkpoint: Path, max_steps: int) -> bool:
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return max_steps > 0 and state["global_step"] >= max_steps


def save_model(model, processor, resolved: ResolvedModel, cfg, *, run_dir: Path, name: Optional[str] = None) -> Optional[Path]:
    """Save the adapter (or full model) with its processor, model card and config, atomically.

    ``cfg`` is the run's whole config: it is saved beside the weights (redacted) as their record.
    A kill mid-save leaves the previous copy in place: the new one is written beside it and
    swapped in by rename. Sharded weights (FSDP) are gathered first, which every rank must
    join; rank 0 writes and returns the folder, the other ranks return None.
    """
    state = full_state_dict(model) if is_sharded(model) else None
    if not world().is_main:
        return None
    is_adapter = isinstance(model, PeftModel)
    target = run_dir / (name or ("adapter" if is_adapter else "model"))
    tmp = run_dir / f".{target.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    kept = f"the previous {target.name}/ is unchanged" if target.exists() else f"no partial {target.name}/ was left"
    try:
        # the trained adapter only: GRPO with train.beta > 0 keeps a frozen copy of the starting one ("ref")
        kwargs = {"selected_adapters": [model.active_adapter]} if is_adapter else {}
        kwargs.update({"state_dict": state} if state is not None else {})
        model.save_pretrained(tmp, safe_serialization=True, **kwargs)
        processor.save_pretrained(tmp)
        write_model_card(tmp, family=resolved.family, adapter=is_adapter, base_path=resolved.base_path,
                         source_model_path=cfg.model.path)  # fmt: skip
        (tmp / "ocrft_config.yaml").write_text(redacted_yaml(cfg))
    except Exception as err:
        code = disk_full_errno(err, tmp)  # before the space comes back: torch's failure is told by it
        shutil.rmtree(tmp, ignore_errors=True)  # the previous copy was never touched
        if code is None:
            raise
        raise DiskFullError(code, target, kept) from err
    old = run_dir / f".{target.name}.old"
    shutil.rmtree(old, ignore_errors=True)  # a killed save's leftover
    return atomic.replace_dir(tmp, target, old)


def load_weights(model, best_dir: Path) -> None:
    """Load saved weights (the best-validated ones, or a checkpoint's) into ``model``.

    Sharded weights (FSDP): every rank calls this; rank 0 reads the files and the tensors
    are scattered to the other ranks' shards.
    """

    def read() -> dict:
        state: dict = {}
        for shard in sorted(best_dir.glob("*.safetensors")):
            state.update(load_file(shard))
        return state

    if is_sharded(model):
        state = read() if world().is_main else {}
        if state and isinstance(model, PeftModel):
            state = adapter_keys_to_model_keys(model, state)
        load_full_state_dict(model, state)
    elif isinstance(model, PeftModel):
        set_peft_model_state_dict(model, load_file(best_dir / "adapter_model.safetensors"))
    else:
        # save_pretrained writes transformers' on-disk key names (Qwen2-VL: "visual.*" for the
        # in-memory "model.visual.*"); from_pretrained maps them back. It holds a second copy
        # of the weights for a moment, which only full fine-tuning (peft=none) pays.
        saved = type(model).from_pretrained(best_dir, dtype=model.dtype).state_dict()
        result = model.load_state_dict(saved, strict=False)
        if result.unexpected_keys or result.missing_keys:
            wrong = (result.unexpected_keys or result.missing_keys)[:3]
            raise RuntimeError(f"{best_dir} does not fit the model: {wrong} ...")
