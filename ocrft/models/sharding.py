"""Weights sharded across ranks (FSDP2): generating with them, gathering and restoring them.

Under DDP every rank holds every weight, so rank 0 alone can generate (validation, eval) and
save. Under FSDP each rank holds a slice: every forward pass is a collective, so all ranks
must generate together (``synced_gpus``: a rank that finished keeps stepping until all
have), and saving gathers the full weights first. These helpers are no-ops on a model that
is not sharded, so callers need no branches.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, Optional


def sharded_launch() -> Optional[str]:
    """``"fsdp"`` or ``"zero3"`` when ``accelerate launch`` was given a sharding config, else None.

    Read from the variables accelerate sets from conf/accelerate/*.yaml, before any model exists.
    """
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return "fsdp"
    if os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3":
        return "zero3"
    return None


def check_supported_sharding(quantized: bool = False) -> None:
    """Refuse the sharded launches ocrft cannot serve, before any model is loaded (a
    ConfigError: ``ocrft: error: ...`` and exit status 2, no traceback)."""
    from ocrft.config import ConfigError

    kind = sharded_launch()
    if kind == "fsdp" and quantized:
        raise ConfigError(
            "FSDP with quant.load_in_4bit/load_in_8bit is not supported (bitsandbytes' packed weights are not "
            "sharded by ocrft's FSDP setup): use quant=none with FSDP, or DDP/ZeRO-2 for QLoRA (docs/scale.md)"
        )
    if kind == "zero3":
        raise ConfigError(
            "DeepSpeed ZeRO-3 is not supported (ocrft gathers sharded weights the FSDP2 way); "
            "use conf/accelerate/fsdp.yaml, which shards the same way, or deepspeed_zero2.yaml (docs/scale.md)"
        )
    if kind == "fsdp" and os.environ.get("FSDP_VERSION", "1") != "2":
        raise ConfigError(
            "FSDP version 1 is not supported: set fsdp_version: 2 in the accelerate config (conf/accelerate/fsdp.yaml)"
        )


def is_sharded(model) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(m, FSDPModule) for m in model.modules())


@contextlib.contextmanager
def whole_weights(model) -> Iterator[None]:
    """Gather the root's own weights for a ``generate`` call on every rank.

    FSDP2 gathers a wrapped block's weights in that block's forward hook, but ``generate``
    calls parts of the root (the vision tower, embeddings) outside the root's forward, where
    no hook gathers them. The decoder layers still gather and free theirs one at a time.
    """
    from torch.distributed.fsdp import FSDPModule

    if not isinstance(model, FSDPModule):
        yield
        return
    model.unshard()
    try:
        yield
    finally:
        reshard_all(model)


def reshard_all(model) -> None:
    """Put every FSDP block back to its shards.

    A block that ran outside a root forward (``generate`` before any training step) stays
    unsharded, with plain parameters registered in place of the sharded ones: weights loaded
    into those would be lost and the optimizer would no longer see its parameters.
    """
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def full_state_dict(model) -> dict:
    """The whole (unsharded) state dict on rank 0, on CPU; other ranks get ``{}``.

    A collective when the model is sharded: every rank must call it. Not sharded: the
    model's own state dict, on every rank.
    """
    if not is_sharded(model):
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_state_dict(model, state: dict) -> None:
    """Load whole tensors, read on rank 0 (other ranks pass ``{}``), into a sharded model.

    A collective: every rank calls it. Rank 0's tensors are broadcast and each rank keeps
    its own slice of every parameter; parameters missing from ``state`` keep their weights,
    so an adapter's tensors alone can be loaded.
    """
    import torch
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor, distribute_tensor

    reshard_all(model)
    box = [state if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    params = dict(model.named_parameters())
    unknown = sorted(set(box[0]) - set(params))
    if unknown:
        raise RuntimeError(f"tensors the model does not have: {unknown[:3]} ...")
    with torch.no_grad():
        for name, full in box[0].items():
            param = params[name]
            if isinstance(param, DTensor):
                mine = distribute_tensor(full.to(param.dtype), param.device_mesh, param.placements).to_local()
                param.to_local().copy_(mine)
            else:
                param.copy_(full)


def adapter_keys_to_model_keys(model, adapter_state: dict) -> dict:
    """An adapter file's tensors (PEFT's saved names) under the model's own parameter names.

    PEFT saves ``...lora_A.weight`` for the parameter ``...lora_A.default.weight``; the
    mapping is taken from PEFT's own save function (fed markers in place of weights), so it
    inverts exactly what was saved whatever the adapter type.
    """
    import torch
    from peft import get_peft_model_state_dict

    names = [n for n, p in model.named_parameters() if p.requires_grad]
    names = [n.replace("_checkpoint_wrapped_module.", "") for n in names]
    markers = {name: torch.tensor(i) for i, name in enumerate(names)}
    saved_as = get_peft_model_state_dict(model, state_dict=markers)
    to_model = {key: names[int(marker)] for key, marker in saved_as.items()}
    unknown = sorted(set(adapter_state) - set(to_model))
    if unknown:
        raise RuntimeError(f"adapter tensors the model does not have: {unknown[:3]} ...")
    return {to_model[key]: value for key, value in adapter_state.items()}
