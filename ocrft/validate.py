"""Checks a composed config before anything heavy runs. Every error is a ConfigError whose
message starts with the key at fault (``ocrft: error: <key>...``, exit status 2)."""

from __future__ import annotations

from omegaconf import DictConfig

from ocrft.config import (BACKENDS, BLEU_TOKENIZERS, CER_UNITS, CONFIDENCES, LEVELS, PREDICT_LEVELS,
                          PREDICTION_MATCHES, VALIDATION_METRICS, ConfigError, Task)
from ocrft.data.splits import ALL, SPLITS, check_ratios


def validate_config(cfg: DictConfig) -> None:
    from ocrft.models.registry import FAMILIES

    tasks = [t.value for t in Task]
    if cfg.task not in tasks:
        raise ConfigError(f"task={cfg.task!r} is not a task; choose one of {tasks}")
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


def _check_data(cfg: DictConfig) -> None:
    data = cfg.data
    _choice("data.level", data.level, LEVELS)
    _choice("eval.split", cfg.eval.split, (*SPLITS, ALL))
    if data.max_pixels < 1:
        raise ConfigError(f"data.max_pixels={data.max_pixels} must be >= 1")
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
