"""Checks a composed config before anything heavy runs. Every error is a ConfigError whose
message starts with the key at fault (``ocrft: error: <key>...``, exit status 2)."""

from __future__ import annotations

from omegaconf import DictConfig

from ocrft.config import (BACKENDS, BLEU_TOKENIZERS, CER_UNITS, CONFIDENCES, GRPO_LOSS_TYPES, GRPO_SCALE_REWARDS,
                          LEVELS, PREDICT_LEVELS, PREDICTION_MATCHES, TRAIN_METHODS, VALIDATION_METRICS, ConfigError,
                          Task)
from ocrft.data.splits import ALL, SPLITS, check_ratios


def validate_config(cfg: DictConfig) -> None:
    from ocrft.models.registry import FAMILIES

    tasks = [t.value for t in Task]
    if cfg.task not in tasks:
        raise ConfigError(f"task={cfg.task!r} is not a task; choose one of {tasks}")
    _choice("train.method", cfg.train.method, TRAIN_METHODS)
    if cfg.task == "train" and cfg.train.method == "grpo":
        _check_grpo(cfg)
    backend, family = cfg.model.backend, cfg.model.family
    _choice("model.backend", backend, BACKENDS)
    if backend == "local" and family is None:
        raise ConfigError(f"model.family is not set: name the checkpoint's family, one of {sorted(FAMILIES)}")
    if family is not None and backend in ("local", "cascade") and family not in FAMILIES:
        key = "cascade.family" if backend == "cascade" else "model.family"  # model=cascade sets one from the other
        raise ConfigError(f"{key}={family!r} is unknown; known families: {sorted(FAMILIES)} (an endpoint, a "
                          f"cascade or another engine's output is model.backend: model=endpoint, model=cascade, "
                          f"model=predictions)")  # fmt: skip
    if cfg.quant.load_in_4bit and cfg.quant.load_in_8bit:
        raise ConfigError("quant.load_in_4bit and quant.load_in_8bit are both true; choose one (quant=4bit or quant=8bit)")
    if cfg.peft.method not in ("lora", "dora", "none"):
        raise ConfigError(f"peft.method={cfg.peft.method!r}; choose lora, dora or none")
    if (cfg.quant.load_in_4bit or cfg.quant.load_in_8bit) and cfg.peft.method == "none":
        raise ConfigError("peft.method=none: quantized weights cannot be fully fine-tuned; use peft=lora (QLoRA) "
                          "with quant=4bit/8bit, or quant=none")
    if cfg.train.max_seconds is not None and cfg.train.max_seconds <= 0:
        raise ConfigError(f"train.max_seconds={cfg.train.max_seconds} must be > 0 (or null: no time limit)")
    if cfg.train.max_steps == 0 or cfg.train.max_steps < -1:
        raise ConfigError(f"train.max_steps={cfg.train.max_steps} must be -1 (train for num_train_epochs) or > 0")
    if cfg.train.num_train_epochs <= 0:
        raise ConfigError(f"train.num_train_epochs={cfg.train.num_train_epochs} must be > 0")
    for key in ("batch_size", "workers"):
        if cfg.eval[key] < 1:
            raise ConfigError(f"eval.{key}={cfg.eval[key]} must be >= 1")
    _check_data(cfg)
    _choice("eval.cer_unit", cfg.eval.cer_unit, CER_UNITS)
    _choice("eval.bleu_tokenize", cfg.eval.bleu_tokenize, BLEU_TOKENIZERS)
    _choice("eval.metric", cfg.eval.metric, VALIDATION_METRICS)  # else a KeyError at the first validation
    if backend == "predictions":
        _choice("model.predictions_match", cfg.model.predictions_match, PREDICTION_MATCHES)
    _check_generation(cfg)
    _check_serve(cfg.serve)
    if backend == "cascade":
        _check_cascade(cfg.cascade, cfg.eval.num_beams)
    if cfg.task == "soup":
        _check_soup(cfg.soup)
    if cfg.task == "predict":
        _check_predict(cfg.predict, backend)


def _check_grpo(cfg: DictConfig) -> None:
    """train=grpo: what TRL's GRPOConfig would refuse mid-setup, or ocrft cannot run, refused at start."""
    from omegaconf import OmegaConf

    from ocrft.distributed import world

    if OmegaConf.is_missing(cfg.model, "path"):
        raise ConfigError("model.path is not set: train=grpo continues an SFT run folder (or starts from a "
                          "checkpoint). Make one first, e.g. `python -m ocrft +experiment=demo run_dir=outputs/demo`, "
                          "then pass model.path=outputs/demo")  # fmt: skip
    train = cfg.train
    if cfg.model.backend != "local":
        raise ConfigError(f"model.backend={cfg.model.backend!r}: train=grpo trains local weights (model.backend=local)")
    if not any(train.rewards.values()):
        raise ConfigError("train.rewards: every weight is 0; give at least one reward a weight, e.g. train.rewards.cer=1")
    if train.num_generations < 2:
        raise ConfigError(f"train.num_generations={train.num_generations}: GRPO compares at least 2 reads of each line")
    batch = train.per_device_train_batch_size * train.gradient_accumulation_steps * world().size
    if batch % train.num_generations:
        raise ConfigError(f"train.num_generations={train.num_generations} does not divide the {batch} completions of a "
                          f"step (train.per_device_train_batch_size x train.gradient_accumulation_steps x processes); "
                          f"make train.per_device_train_batch_size a multiple of it")  # fmt: skip
    _choice("train.loss_type", train.loss_type, GRPO_LOSS_TYPES)
    _choice("train.scale_rewards", train.scale_rewards, GRPO_SCALE_REWARDS)
    if train.completions_table_steps < 0:
        raise ConfigError(f"train.completions_table_steps={train.completions_table_steps} must be >= 0 (0 = no table)")
    if train.max_completion_length < 1:
        raise ConfigError(f"train.max_completion_length={train.max_completion_length} must be >= 1")
    if train.temperature <= 0:
        raise ConfigError(f"train.temperature={train.temperature} must be > 0: GRPO learns from differing samples")
    if not 0 < train.top_p <= 1:
        raise ConfigError(f"train.top_p={train.top_p} must be in (0, 1]")
    for key, ok, rule in (("beta", train.beta >= 0, ">= 0"), ("epsilon", train.epsilon > 0, "> 0"),
                          ("num_iterations", train.num_iterations >= 1, ">= 1")):  # fmt: skip
        if not ok:
            raise ConfigError(f"train.{key}={train[key]} must be {rule}")


def _check_data(cfg: DictConfig) -> None:
    data = cfg.data
    _choice("data.level", data.level, LEVELS)
    _choice("eval.split", cfg.eval.split, (*SPLITS, ALL))
    if data.max_pixels < 1:
        raise ConfigError(f"data.max_pixels={data.max_pixels} must be >= 1")
    if not 1 <= data.pdf_dpi <= 1200:  # pdfium allocates dpi^2: 1200 dpi A4 is already 140 Mpx
        raise ConfigError(f"data.pdf_dpi={data.pdf_dpi} must be between 1 and 1200")
    if data.pdf_max_pages is not None and data.pdf_max_pages < 1:
        raise ConfigError(f"data.pdf_max_pages={data.pdf_max_pages} must be >= 1 (or null: every page)")
    check_ratios(data.train_ratio, data.val_ratio)
    if cfg.task == "train" and data.train_ratio == 0:
        # 0 is for scoring a source that has no split files (task=eval: everything is test)
        raise ConfigError("data.train_ratio=0 leaves nothing to train on: task=train needs data.train_ratio > 0")
    fraction = data.val_from_train
    if fraction is not None and not 0 < fraction < 1:
        raise ConfigError(f"data.val_from_train={fraction} must be a fraction between 0 and 1 (exclusive)")


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r}; choose one of {list(choices)}")


def _check_generation(cfg: DictConfig) -> None:
    guard = cfg.eval.loop_guard
    if guard.ngram < 1:
        raise ConfigError(f"eval.loop_guard.ngram={guard.ngram} must be >= 1 (or eval.loop_guard.enabled=false)")
    if guard.max_repeats < 2:
        raise ConfigError(f"eval.loop_guard.max_repeats={guard.max_repeats} must be >= 2 (or eval.loop_guard.enabled=false)")
    if guard.retries < 0:
        raise ConfigError(f"eval.loop_guard.retries={guard.retries} must be >= 0 (0 = off)")
    if guard.retries and guard.retry_temperature <= 0:
        raise ConfigError(f"eval.loop_guard.retry_temperature={guard.retry_temperature} must be > 0: a retry "
                          f"samples (greedy decoding would read the same text again)")  # fmt: skip
    if guard.retries and cfg.eval.num_beams != 1:
        # the better read is chosen by its tokens' log-probability, recorded under greedy decoding
        raise ConfigError(f"eval.loop_guard.retries={guard.retries} needs eval.num_beams=1 "
                          f"(it is {cfg.eval.num_beams}); or set eval.loop_guard.retries=0")  # fmt: skip
    if cfg.eval.no_repeat_ngram_size < 0:
        raise ConfigError(f"eval.no_repeat_ngram_size={cfg.eval.no_repeat_ngram_size} must be >= 0 (0 = off)")
    if cfg.eval.repetition_penalty <= 0:
        raise ConfigError(f"eval.repetition_penalty={cfg.eval.repetition_penalty} must be > 0 (1.0 = off)")


def _check_soup(soup: DictConfig) -> None:
    if bool(soup.runs) == bool(soup.sweep):
        raise ConfigError("soup.runs or soup.sweep: name the runs to average (soup.runs=[<run>,<run>,...]) or a "
                          "multirun folder whose best trials to average (soup.sweep=<folder> soup.top_k=3), one of them")  # fmt: skip
    if soup.runs and len(soup.runs) < 2:
        raise ConfigError(f"soup.runs={list(soup.runs)} names {len(soup.runs)} run; a soup averages 2 or more")
    if soup.sweep and soup.top_k < 2:
        raise ConfigError(f"soup.top_k={soup.top_k} must be >= 2: a soup averages 2 or more trials")


def _check_serve(serve: DictConfig) -> None:
    for key in ("max_concurrent_requests", "max_batch_size", "retry_after_s"):
        if serve[key] < 1:
            raise ConfigError(f"serve.{key}={serve[key]} must be >= 1")
    for key in ("request_timeout_s", "shutdown_grace_s"):
        if serve[key] <= 0:
            raise ConfigError(f"serve.{key}={serve[key]} must be > 0 seconds")


def _check_cascade(cascade: DictConfig, num_beams: int) -> None:
    _choice("cascade.confidence", cascade.confidence, CONFIDENCES)
    _choice("cascade.calibration_split", cascade.calibration_split, SPLITS)
    threshold = cascade.threshold
    if threshold != "auto" and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))):
        raise ConfigError(f"cascade.threshold={threshold!r} must be a number (a log-probability, <= 0) or 'auto'")
    if not 0 <= cascade.max_fallback_fraction <= 1:
        raise ConfigError(f"cascade.max_fallback_fraction={cascade.max_fallback_fraction} must be between 0 and 1")
    if cascade.target_cer is not None and cascade.target_cer < 0:
        raise ConfigError(f"cascade.target_cer={cascade.target_cer} must be >= 0")
    if num_beams != 1:
        # confidence is the greedy token's log-probability, recorded as it is chosen
        raise ConfigError(f"eval.num_beams={num_beams}: a cascade's confidence needs greedy decoding (num_beams=1)")


def _check_predict(predict: DictConfig, backend: str) -> None:
    _choice("predict.level", predict.level, PREDICT_LEVELS)
    if predict.samples < 0:
        raise ConfigError(f"predict.samples={predict.samples} must be >= 0 (0 = no sampled readings)")
    if predict.samples and not predict.rank:
        raise ConfigError(f"predict.samples={predict.samples} only feeds the ranking: add predict.rank=true")
    if predict.rank and backend != "local":
        # the ranking orders by token log-probabilities and samples with the model's own
        # sampler: an endpoint records neither, a cascade mixes two models' readings
        raise ConfigError(f"predict.rank=true needs a local model (model.backend=local), not model.backend={backend}")
    if predict.temperature <= 0:
        raise ConfigError(f"predict.temperature={predict.temperature} must be > 0")
