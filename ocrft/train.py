"""task=train: LoRA/QLoRA/full SFT of a VLM on OCR records with TRL's SFTTrainer.

Reads top to bottom: model -> processor -> data -> peft/quant -> trainer -> train -> eval -> save.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from ocrft.runner import RunContext, TaskResult

log = logging.getLogger(__name__)


def run_training(cfg, ctx: RunContext) -> TaskResult:
    from ocrft import builders
    from ocrft.collate import Collator
    from ocrft.data.loading import load_data
    from ocrft.datasets_hf import TrainCollator, to_train_dataset
    from ocrft.evaluate import evaluate_records
    from ocrft.generation import Generator
    from ocrft.metrics import metric_tags
    from ocrft.models.loading import check_family, load_model, load_processor, resolve_model
    from ocrft.models.registry import get_family
    from ocrft.provenance import describe_model
    from ocrft.results import load_results, to_frame
    from ocrft.sharding import check_supported_sharding, is_sharded
    from ocrft.training_setup import (apply_peft, check_validation_data, last_checkpoint, make_callbacks, save_model,
                                      world)

    from transformers import set_seed

    set_seed(cfg.seed)  # adapter init and data order are reproducible
    run_dir = ctx.run_dir
    check_supported_sharding(quantized=cfg.quant.load_in_4bit or cfg.quant.load_in_8bit)
    # 1. model family and checkpoint
    resolved = resolve_model(cfg.model.family, cfg.model.path)
    check_family(resolved, cfg.model.family)
    family = get_family(resolved.family)
    # 2. processor
    processor = load_processor(resolved, cfg.model.min_pixels, cfg.model.max_pixels)
    # 3. data
    data = load_data(cfg.data, run_dir)
    check_validation_data(cfg.eval.every_n_steps, data.splits.get("val", []), cfg.data.format, data.sources.get("val", "-"))
    ctx.tracker.log_datasets(cfg.data, data.splits, data.sources)  # MLflow's Dataset column
    train_set = to_train_dataset(data.splits["train"], cfg.prompt.text)
    log.info("data: %s; skipped: %s", {k: len(v) for k, v in data.splits.items()}, data.skipped or "none")
    # 4. model, quantization, adapter
    bnb = builders.build_bnb_config(cfg.quant, cfg.model.dtype)
    model = load_model(resolved, cfg.model.dtype, bnb, cfg.model.attn_implementation, cfg.model.trust_remote_code,
                       adapter_trainable=True)  # fmt: skip
    model = apply_peft(model, cfg.peft, family, quantized=bnb is not None)
    # 5. trainer
    collator = Collator(processor, family, system=cfg.prompt.system, max_length=cfg.train.max_length)
    generator = Generator(model, processor, family, cfg.prompt.system, cfg.eval.max_new_tokens,
                          cfg.eval.repetition_penalty, cfg.eval.num_beams)  # fmt: skip
    args = builders.build_sft_config(cfg.train, cfg.seed, run_dir / "checkpoints", cfg.train.max_length, world().size)
    effective_batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * world().size
    log.info("effective batch size %d = %d per device x %d accumulation steps x %d processes", effective_batch,
             args.per_device_train_batch_size, args.gradient_accumulation_steps, world().size)  # fmt: skip
    validation, callbacks = make_callbacks(cfg, ctx, generator, data.splits.get("val", []), processor, family)
    from ocrft.sampling import trainer_class

    trainer = trainer_class()(model=model, args=args, data_collator=TrainCollator(collator), train_dataset=train_set,
                         processing_class=processor, callbacks=callbacks)  # fmt: skip
    eval_records = data.splits.get(cfg.eval.split) or []
    eval_records = eval_records[: cfg.eval.limit] if cfg.eval.limit else eval_records
    metrics: dict[str, float] = {"data/train_samples": len(train_set), "train/effective_batch_size": effective_batch,
                                 **{f"data/skipped_{k}": v for k, v in data.skipped.items()}}  # fmt: skip
    paths: dict[str, str] = {}
    resume = last_checkpoint(run_dir / "checkpoints") if cfg.train.resume else None
    # Rank 0 alone generates and saves, unless the weights are sharded (FSDP): then every
    # rank joins each generation and the gathering of the weights, and rank 0 writes.
    def joins() -> bool:
        return world().is_main or is_sharded(trainer.model)

    # 6. score the eval split before training (not again on resume: the first run did)
    if cfg.eval.before_after and eval_records and resume is None and joins():
        base = describe_model(cfg.model, stage="before training")
        before, p = evaluate_records(generator, eval_records, cfg, run_dir, "results_before", "eval before", base)
        metrics.update({f"eval_before/{k}": v for k, v in before.items() if isinstance(v, (int, float))})
        paths.update(p)
        ctx.tracker.log_metrics({k: v for k, v in metrics.items() if k.startswith("eval_before/")}, step=0)
        ctx.tracker.set_tags(metric_tags(cfg.eval))  # how CER was counted, BLEU/TER signatures
    # 7. train (resuming from the last checkpoint of an interrupted run)
    if resume:
        log.info("resuming from %s", resume)
    t0 = time.time()
    if resume and reached_max_steps(Path(resume), args.max_steps):
        # transformers would run one step past max_steps; the training is already complete
        log.info("%s already reached train.max_steps=%d: loading it, not training again", resume, args.max_steps)
        load_weights(trainer.model, Path(resume))
        trainer.state = trainer.state.load_from_json(str(Path(resume) / "trainer_state.json"))
        mean_loss = None
    else:
        mean_loss = trainer.train(resume_from_checkpoint=resume).training_loss
    seconds = time.time() - t0
    metrics.update(train_metrics(mean_loss, trainer, seconds))
    ctx.tracker.log_metrics({k: v for k, v in metrics.items() if k.startswith(("train/", "system/"))})
    if validation is not None and validation.best is not None:
        metrics[f"val/{cfg.eval.metric}"] = validation.best
        metrics["val/best_step"] = validation.best_step
    if validation is not None and validation.pruned:
        return TaskResult(metrics=metrics, paths=paths, status="pruned")
    # 8. keep the weights that validated best, then save adapter (or full model) + processor + config
    if validation is not None and validation.best_step not in (None, trainer.state.global_step):
        load_weights(trainer.model, run_dir / "best")
        log.info("restored the best weights: step %d, val/%s = %.4f", validation.best_step, cfg.eval.metric, validation.best)
    if joins() and (saved := save_model(trainer.model, processor, resolved, cfg, run_dir)) is not None:
        paths["model"] = str(saved)
        ctx.tracker.log_artifact(paths["model"], "model") if cfg.tracking.log_model else None
    # 9. score the eval split after training
    if eval_records and joins():
        best = validation.best_step if validation is not None else None  # the weights restored in step 8
        trained = describe_model(cfg.model, run_dir=run_dir, step=trainer.state.global_step if best is None else best)
        after, p = evaluate_records(generator, eval_records, cfg, run_dir, "results", "eval after", trained)
        metrics.update({f"eval/{k}": v for k, v in after.items() if isinstance(v, (int, float))})
        paths.update(p)
        ctx.tracker.log_metrics({k: v for k, v in metrics.items() if k.startswith("eval/")})
        ctx.tracker.set_tags(metric_tags(cfg.eval))
        for key in ("results", "results_report", "results_before", "results_before_report"):
            if key in paths:
                ctx.tracker.log_artifact(paths[key])
        for key in ("results_before", "results"):  # the per-sample scores, as MLflow tables
            if key in paths:
                ctx.tracker.log_table(to_frame(load_results(paths[key])), f"{key}_table.json")
    return TaskResult(metrics=metrics, paths=paths)


def reached_max_steps(checkpoint: Path, max_steps: int) -> bool:
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return max_steps > 0 and state["global_step"] >= max_steps


def load_weights(model, best_dir: Path) -> None:
    """Load saved weights (the best-validated ones, or a checkpoint's) into ``model``.

    Sharded weights (FSDP): every rank calls this; rank 0 reads the files and the tensors
    are scattered to the other ranks' shards.
    """
    from peft import PeftModel, set_peft_model_state_dict
    from safetensors.torch import load_file

    from ocrft.sharding import adapter_keys_to_model_keys, is_sharded, load_full_state_dict
    from ocrft.training_setup import world

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
        result = model.load_state_dict(read(), strict=False)  # tied weights are saved once
        if result.unexpected_keys:
            raise RuntimeError(f"{best_dir} does not fit the model: {result.unexpected_keys[:3]} ...")


def train_metrics(mean_loss, trainer, seconds: float) -> dict[str, float]:
    """Loss, throughput and peak memory of the finished training."""
    import resource

    import torch

    state = trainer.state
    samples = state.global_step * trainer.args.per_device_train_batch_size * trainer.args.gradient_accumulation_steps
    samples *= trainer.args.world_size
    metrics = {
        # not train/loss: that is the per-step curve
        "train/mean_loss": float(mean_loss if mean_loss is not None else _mean_logged_loss(state)),
        "train/global_step": float(state.global_step),
        "system/train_seconds": round(seconds, 2),
        "system/samples_per_second": round(samples / max(seconds, 1e-9), 3),
        "system/peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if torch.cuda.is_available():
        metrics["system/peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    losses = [h["loss"] for h in state.log_history if "loss" in h]
    if losses:
        metrics["train/first_loss"], metrics["train/last_loss"] = float(losses[0]), float(losses[-1])
    return metrics


def _mean_logged_loss(state) -> float:
    losses = [h["loss"] for h in state.log_history if "loss" in h]
    return sum(losses) / len(losses) if losses else float("nan")
