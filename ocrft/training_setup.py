"""The pieces train.py assembles: adapters, callbacks, checkpoints, saving, process rank."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence


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

    from ocrft.builders import on_cuda

    # 1800 s: TrainingArguments.ddp_timeout's default, which the Trainer would have set.
    PartialState(cpu=not on_cuda(), timeout=timedelta(seconds=1800))
    agreed = Path(broadcast_object_list([str(run_dir)])[0])
    if agreed != run_dir:
        log.info("rank %d: using rank 0's run folder %s instead of %s", world().rank, agreed, run_dir)
        if run_dir.is_dir() and all(p.name == ".hydra" or p.suffix == ".log" for p in run_dir.iterdir()):
            shutil.rmtree(run_dir, ignore_errors=True)
    return agreed


def freeze_vision(model, family) -> int:
    """Freeze the vision tower and projector; returns how many parameters were frozen."""
    frozen = 0
    for name, param in model.named_parameters():
        if any(part in name for part in family.vision_modules):
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen


def apply_peft(model, peft_cfg, family, quantized: bool):
    """Wrap ``model`` with LoRA/DoRA (or prepare it for full fine-tuning)."""
    from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training

    from ocrft.builders import build_peft_config, on_cuda

    if quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=on_cuda())
    if isinstance(model, PeftModel):
        log.info("continuing training of the loaded adapter")
    elif peft_cfg.method == "none":
        if peft_cfg.freeze_vision:
            log.info("froze %d vision parameters", freeze_vision(model, family))
    else:
        model = get_peft_model(model, build_peft_config(peft_cfg, family))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.info("trainable parameters: %d of %d (%.2f%%)", trainable, total, 100 * trainable / max(total, 1))
    return model


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


def check_validation_data(every_n_steps: int, val_records: Sequence, data_format: str, val_source: str) -> None:
    """Stop a run asked to validate (``eval.every_n_steps > 0``) whose val split is empty.

    Called before the model loads: a run without validation would train blind (no best
    checkpoint, no early stopping, nothing for a sweep to prune on) and say so only in a log line.

    Raises:
        ConfigError: naming the data source and the two ways out.
    """
    from ocrft.validate import ConfigError

    if every_n_steps and not val_records:
        raise ConfigError(
            f"eval.every_n_steps={every_n_steps} validates during training, but the val split is empty "
            f"(data.format={data_format}; val from {val_source}). Set data.val_from_train=0.1 to move a tenth "
            "of train (whole pages or images) into val, or eval.every_n_steps=0 to train without validation"
        )


def make_callbacks(cfg, ctx, generator, val_records, processor, family):
    """Tracker logging, generation-based validation (with pruning and best-model saving)."""
    from ocrft.validation import make_validate, trainer_callback_class

    callbacks = []
    tracker_cb = ctx.tracker.trainer_callback()
    if tracker_cb is not None:
        callbacks.append(tracker_cb)
    if not (cfg.eval.every_n_steps and val_records):
        if cfg.eval.every_n_steps:
            log.warning("eval.every_n_steps=%d but the val split is empty: no validation", cfg.eval.every_n_steps)
        return None, callbacks
    subset = list(val_records)[: cfg.eval.val_subset]
    reporter = None
    if cfg.trial.storage and world().is_main:  # rank 0 validates and reports; the others follow its decision
        from ocrft.search import TrialReporter

        reporter = TrialReporter.from_config(cfg.trial)
    validation = trainer_callback_class()(
        validate=make_validate(generator, subset, cfg.prompt.text, cfg.eval.batch_size, cfg.eval),
        every_n_steps=cfg.eval.every_n_steps,
        metric=cfg.eval.metric,
        greater_is_better=cfg.eval.greater_is_better,
        log_metrics=lambda m, step: ctx.tracker.log_metrics(m, step=step),
        save_best=lambda: save_model(generator.model, processor, None, cfg, ctx.run_dir, name="best"),
        patience=cfg.eval.early_stopping_patience,
        reporter=reporter,
    )
    callbacks.append(validation)
    return validation, callbacks


def save_model(model, processor, resolved, cfg, run_dir: Path, name: Optional[str] = None) -> Optional[Path]:
    """Save the adapter (or full model) with its processor, model card and config, atomically.

    A kill mid-save leaves the previous copy in place: the new one is written beside it and
    swapped in by rename. Sharded weights (FSDP) are gathered first, which every rank must
    join; rank 0 writes and returns the folder, the other ranks return None.
    """
    from peft import PeftModel

    from ocrft.models.loading import MODEL_CARD, resolve_model
    from ocrft.redact import redacted_yaml
    from ocrft.sharding import full_state_dict, is_sharded

    state = full_state_dict(model) if is_sharded(model) else None
    if not world().is_main:
        return None
    is_adapter = isinstance(model, PeftModel)
    target = run_dir / (name or ("adapter" if is_adapter else "model"))
    tmp = run_dir / f".{target.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True, **({"state_dict": state} if state is not None else {}))
    processor.save_pretrained(tmp)
    base = (resolved or resolve_model(cfg.model.family, cfg.model.path)).base_path
    card = {"family": cfg.model.family, "base_path": base, "adapter": is_adapter, "source_model_path": cfg.model.path}
    (tmp / MODEL_CARD).write_text(json.dumps(card, indent=2))
    (tmp / "ocrft_config.yaml").write_text(redacted_yaml(cfg))
    old = run_dir / f".{target.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target
