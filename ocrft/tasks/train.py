"""task=train: LoRA/QLoRA/full SFT of a VLM on OCR records with TRL's SFTTrainer, or GRPO with
its GRPOTrainer (train=grpo, ocrft.training.grpo).

Reads top to bottom: model -> processor -> data -> peft/quant -> trainer -> train -> eval -> save.
"""

from __future__ import annotations

import logging
import resource
import time
from pathlib import Path
from typing import Optional

import torch
from transformers import set_seed

from ocrft.data.loading import load_data
from ocrft.data.splits import ALL, join_splits
from ocrft.distributed import world
from ocrft.evaluation.generation import build_generator
from ocrft.evaluation.local import LocalPredictor, evaluate_records
from ocrft.evaluation.metrics import metric_tags
from ocrft.evaluation.results import load_results, to_frame
from ocrft.models.collate import Collator
from ocrft.models.bundle import load_bundle
from ocrft.models.loading import image_params
from ocrft.models.sharding import check_supported_sharding, is_sharded
from ocrft.provenance import describe_model
from ocrft.runner import RunContext, TaskResult
from ocrft.training.adapters import apply_peft
from ocrft.training.builders import build_bnb_config, build_sft_config
from ocrft.training.callbacks import last_rewards, make_callbacks
from ocrft.training.checkpoints import last_checkpoint, load_weights, reached_max_steps, save_model
from ocrft.training.datasets import TrainCollator, to_train_dataset
from ocrft.training.grpo import build_grpo_trainer
from ocrft.training.sampling import OcrftSFTTrainer
from ocrft.training.token_lengths import check_splits
from ocrft.training.validation import check_validation_data

log = logging.getLogger(__name__)


def run_training(cfg, ctx: RunContext) -> TaskResult:
    set_seed(cfg.seed)  # adapter init and data order are reproducible
    run_dir, tracker = ctx.run_dir, ctx.tracker
    check_supported_sharding(quantized=cfg.quant.load_in_4bit or cfg.quant.load_in_8bit)
    # 1-2. checkpoint, family and processor (the weights are loaded at step 4, after the data checks)
    bundle = load_bundle(cfg.model, weights=False)
    resolved, family, processor = bundle.resolved, bundle.family, bundle.processor
    tracker.log_params(image_params(resolved.family, processor))  # the pixel budget / image size it resolved to
    # 3. data; every train/val sample's prompt + image + target tokens must fit train.max_length
    data = load_data(cfg.data, run_dir)
    counts, data.skipped["too_long"] = check_splits(
        data.splits, ("train", "val"), processor, family, prompt=cfg.prompt.text, system=cfg.prompt.system,
        max_length=cfg.train.max_length, on_error=cfg.data.on_error, sources=data.sources,
    )
    val_records = data.splits.get("val", [])
    eval_records = join_splits(data.splits) if cfg.eval.split == ALL else data.splits.get(cfg.eval.split) or []
    eval_records = eval_records[: cfg.eval.limit] if cfg.eval.limit else eval_records
    check_validation_data(cfg.eval.every_n_steps, val_records, cfg.data.format, data.sources.get("val", "-"))
    tracker.log_datasets(cfg.data, data.splits, data.sources, generated=data.generated)  # MLflow's Dataset column
    train_set = to_train_dataset(data.splits["train"], cfg.prompt.text, [c.total for c in counts["train"]])
    log.info("data: %s; skipped: %s", {k: len(v) for k, v in data.splits.items()}, data.skipped or "none")
    # 4. model, quantization, adapter
    bnb = build_bnb_config(cfg.quant, cfg.model.dtype)
    model = load_bundle(cfg.model, trainable=True, quantization_config=bnb, processor=processor).model
    model = apply_peft(model, cfg.peft, family, quantized=bnb is not None)
    # 5. trainer (SFT, or GRPO with train=grpo), with the generator that validates and evaluates
    generator = build_generator(cfg, model=model, processor=processor)
    save_best = lambda: save_model(model, processor, resolved, cfg, run_dir=run_dir, name="best")  # noqa: E731
    validator = LocalPredictor(cfg, generator=generator, desc="validate", progress=False)
    validation, callbacks = make_callbacks(tracker, validator, val_records, eval_cfg=cfg.eval, trial_cfg=cfg.trial,
                                           save_best=save_best, progress=ctx.progress,
                                           start_trained=resolved.adapter_path is not None,
                                           max_seconds=cfg.train.max_seconds)  # fmt: skip
    if cfg.train.method == "grpo":
        trainer = build_grpo_trainer(model, processor, family, train_set, cfg=cfg, callbacks=callbacks, tracker=tracker,
                                     end_ids=generator.eos_ids, output_dir=run_dir / "checkpoints")  # fmt: skip
    else:
        collator = TrainCollator(Collator(processor, family, system=cfg.prompt.system, max_length=cfg.train.max_length))
        args = build_sft_config(cfg.train, cfg.seed, run_dir / "checkpoints", cfg.train.max_length, world_size=world().size)
        trainer = OcrftSFTTrainer(model=model, args=args, data_collator=collator, train_dataset=train_set,
                                  processing_class=processor, callbacks=callbacks)  # fmt: skip
    args = trainer.args
    metrics = {"data/train_samples": len(train_set), "train/effective_batch_size": effective_batch_size(args),
               **{f"data/skipped_{k}": v for k, v in data.skipped.items()}}  # fmt: skip
    paths: dict[str, str] = {}
    resume = last_checkpoint(run_dir / "checkpoints") if cfg.train.resume else None
    # 6. score the eval split before training (not again on resume: the first run did)
    if cfg.eval.before_after and eval_records and resume is None and joins(trainer.model):
        base = describe_model(cfg.model, stage="before training")
        before = LocalPredictor(cfg, generator=generator, desc="eval before", model=base)
        paths = score_split(before, eval_records, out_dir=run_dir, tracker=tracker, stage="before", metrics=metrics)
    # 7. train (resuming from the last checkpoint of an interrupted run)
    metrics.update(train(trainer, resume, args.max_steps))
    tracker.log_metrics({k: v for k, v in metrics.items() if k.startswith(("train/", "system/"))})
    metrics.update(last_rewards(trainer.state.log_history))  # GRPO's, after: MLflow has them per step
    if validation is not None and validation.best is not None:
        metrics.update({f"val/{cfg.eval.metric}": validation.best, "val/best_step": validation.best_step})
    if validation is not None and validation.pruned:
        return TaskResult(metrics=metrics, paths=paths, status="pruned")
    # 8. keep the weights that validated best, then save adapter (or full model) + processor + config
    best = keep_best(trainer, validation, run_dir / "best")
    saved = save_model(trainer.model, processor, resolved, cfg, run_dir=run_dir) if joins(trainer.model) else None
    if saved is not None:
        paths["model"] = str(saved)
        tracker.log_artifact(paths["model"], "model") if cfg.tracking.log_model else None
    # 9. score the eval split after training, with the weights kept in step 8
    if eval_records and joins(trainer.model):
        trained = describe_model(cfg.model, run_dir=run_dir, step=trainer.state.global_step if best is None else best)
        after = LocalPredictor(cfg, generator=generator, desc="eval after", model=trained)
        paths.update(score_split(after, eval_records, out_dir=run_dir, tracker=tracker, stage="after", metrics=metrics))
        log_results(tracker, paths)
    return TaskResult(metrics=metrics, paths=paths)


def joins(model) -> bool:
    """Whether this rank generates and saves: rank 0 alone, unless the weights are sharded
    (FSDP): then every rank joins each generation and the gathering of the weights, and rank 0 writes."""
    return world().is_main or is_sharded(model)


def effective_batch_size(args) -> int:
    size = args.per_device_train_batch_size * args.gradient_accumulation_steps * world().size
    log.info("effective batch size %d = %d per device x %d accumulation steps x %d processes", size,
             args.per_device_train_batch_size, args.gradient_accumulation_steps, world().size)  # fmt: skip
    return size


def score_split(predictor: LocalPredictor, records, *, out_dir: Path, tracker, stage: str, metrics: dict) -> dict:
    """Score the eval split ``before`` or ``after`` training into ``metrics``; returns the files written."""
    name, prefix = ("results_before", "eval_before/") if stage == "before" else ("results", "eval/")
    scores, paths = evaluate_records(predictor, records, out_dir=out_dir, name=name)
    scores = {f"{prefix}{k}": v for k, v in scores.items() if isinstance(v, (int, float))}
    metrics.update(scores)
    tracker.log_metrics(scores, step=0)
    tracker.set_tags(metric_tags(predictor.cfg.eval))  # how CER was counted, BLEU/TER signatures
    return paths


def keep_best(trainer, validation, best_dir: Path) -> Optional[int]:
    """Load the best-validated weights (saved in ``best_dir``) unless the last step was the
    best; returns the step they come from (None without validation)."""
    best = validation.best_step if validation is not None else None
    if best not in (None, trainer.state.global_step):
        load_weights(trainer.model, best_dir)
        log.info("restored the best weights: step %d, val/%s = %.4f", best, validation.metric, validation.best)
    return best


def log_results(tracker, paths: dict[str, str]) -> None:
    """The results files and reports before and after training, and their per-sample scores as MLflow tables."""
    for key in ("results", "results_report", "results_before", "results_before_report"):
        if key in paths:
            tracker.log_artifact(paths[key])
    for key in ("results_before", "results"):
        if key in paths:
            tracker.log_table(to_frame(load_results(paths[key])), f"{key}_table.json")


def train(trainer, resume: Optional[str], max_steps: int) -> dict[str, float]:
    """Train, or resume from the checkpoint ``resume``; returns loss, throughput and memory."""
    if resume:
        log.info("resuming from %s", resume)
    t0 = time.time()
    if resume and reached_max_steps(Path(resume), max_steps):
        # transformers would run one step past max_steps; the training is already complete
        log.info("%s already reached train.max_steps=%d: loading it, not training again", resume, max_steps)
        load_weights(trainer.model, Path(resume))
        trainer.state = trainer.state.load_from_json(str(Path(resume) / "trainer_state.json"))
        mean_loss = None
    else:
        mean_loss = trainer.train(resume_from_checkpoint=resume).training_loss
    return train_metrics(mean_loss, trainer, time.time() - t0)


def train_metrics(mean_loss, trainer, seconds: float) -> dict[str, float]:
    """Loss, throughput and peak memory of the finished training."""
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
