"""One rank of test_fsdp (run under torchrun, CPU, gloo): ocrft's generation, evaluation,
saving and restoring on a LoRA model sharded with FSDP2, the way accelerate shards it.

accelerate applies FSDP only on accelerators, so the Trainer cannot shard on this machine;
this worker shards the model itself (``fully_shard`` on every ``_no_split_modules`` block,
then the root: accelerate's TRANSFORMER_BASED_WRAP) and drives the functions train.py calls
with the sharded model. Writes what it saw to ``<out>/rank<N>.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def shard_like_accelerate(model) -> None:
    from torch.distributed.fsdp import fully_shard

    blocks = set(model.get_base_model()._no_split_modules)
    for module in model.modules():
        if type(module).__name__ in blocks:
            fully_shard(module)
    fully_shard(model)


def adapter_tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


def main(out: Path) -> None:
    import torch
    import torch.distributed as dist
    from PIL import Image

    from ocrft.models.collate import Collator, Sample
    from ocrft.data.record import Record
    from ocrft.evaluation.local import LocalPredictor, evaluate_records
    from ocrft.evaluation.generation import Generator
    from ocrft.models.loading import ensure_tiny, load_model, load_processor, resolve_model
    from ocrft.models.registry import get_family
    from ocrft.models.sharding import full_state_dict, is_sharded
    from ocrft.training.adapters import apply_peft
    from ocrft.training.checkpoints import load_weights, save_model
    from tests.helpers import compose

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    if rank == 0:
        ensure_tiny("qwen2_vl")  # built once, before the other rank reads it
    dist.barrier()
    cfg = compose(["model=tiny_qwen2_vl", "peft=lora", "eval.batch_size=2", "eval.max_new_tokens=6",
                   "eval.before_after=false"])  # fmt: skip
    resolved = resolve_model(cfg.model.family, cfg.model.path)
    family = get_family(resolved.family)
    processor = load_processor(resolved)
    torch.manual_seed(0)  # the same weights on both ranks, as from_pretrained gives
    model = apply_peft(load_model(resolved, "float32"), cfg.peft, family, quantized=False)
    with torch.no_grad():  # LoRA B starts at zero; give the adapter an effect to save and restore
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    generator = Generator(model, processor, family, max_new_tokens=6)

    images = [Image.new("RGB", (40 + 24 * i, 28), (255, 255 - 40 * i, 255)) for i in range(5)]
    prompts = [cfg.prompt.text] * 5  # the prompt LocalPredictor uses
    reference = generator.generate(images, prompts)
    reference_adapter = {k: v.clone() for k, v in full_state_dict(model).items() if "lora_" in k}

    shard_like_accelerate(model)
    # Training starts before any validation: its first forward initialises FSDP from the root.
    batch = Collator(processor, family)([Sample(images[rank], prompts[0], "ab")])
    model(**batch).loss.backward()
    model.zero_grad()
    # Each rank its own rows, of different counts: a rank that finishes first must keep stepping.
    mine = [0, 1, 2] if rank == 0 else [3]
    sharded = generator.generate([images[i] for i in mine], [prompts[i] for i in mine])

    records = [Record(id=f"r{i}", image=str(out / f"img{i}.png"), text=reference[i]) for i in range(5)]
    if rank == 0:
        for i, image in enumerate(images):
            image.save(out / f"img{i}.png")
    dist.barrier()
    scores, paths = evaluate_records(LocalPredictor(cfg, generator=generator, desc="eval"), records, out_dir=out, name="results")

    saved = save_model(model, processor, resolved, cfg, run_dir=out)  # every rank gathers; rank 0 writes
    with torch.no_grad():  # spoil the local shards of the adapter, then restore it from the files
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.to_local().zero_()
    spoiled = generator.generate(images, prompts)
    load_weights(model, out / "adapter")
    restored = generator.generate(images, prompts)
    restored_adapter = {k: v for k, v in full_state_dict(model).items() if "lora_" in k}

    # Training goes on after a validation: the optimizer (made after sharding, as accelerate
    # does) must still hold the parameters the forward uses, so its step changes the adapter.
    from torch.distributed.tensor import DTensor

    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    model.train()
    steps_changed = []
    for _ in range(2):
        before = {k: v.clone() for k, v in full_state_dict(model).items() if "lora_" in k}
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        after = {k: v for k, v in full_state_dict(model).items() if "lora_" in k}
        steps_changed.append(rank != 0 or any(not torch.equal(before[k], after[k]) for k in before))
        generator.generate(images[:2], prompts[:2])  # a validation between steps
    sharded_after_generate = all(isinstance(p, DTensor) for p in model.parameters())

    result = {
        "is_sharded": is_sharded(model),
        "reference": reference,
        "mine": mine,
        "sharded": sharded,
        "eval_cer": scores.get("cer"),
        "eval_paths": sorted(paths),
        "saved": str(saved) if saved else None,
        "spoiled": spoiled,
        "restored": restored,
        "steps_changed_adapter": steps_changed,
        "sharded_after_generate": sharded_after_generate,
    }
    if rank == 0:
        files = adapter_tensors(out / "adapter")
        expected = {k.replace(".default.", "."): v for k, v in reference_adapter.items()}  # PEFT's file names
        result["saved_matches_reference"] = sorted(files) == sorted(expected) and all(
            torch.equal(files[k], expected[k]) for k in expected
        )
        result["restored_matches_reference"] = sorted(restored_adapter) == sorted(reference_adapter) and all(
            torch.equal(restored_adapter[k], reference_adapter[k]) for k in reference_adapter
        )
    (out / f"rank{rank}.json").write_text(json.dumps(result, indent=2))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
