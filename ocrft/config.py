"""Typed schemas for every config group; the only user of Hydra's ConfigStore.

Each YAML in conf/<group>/ extends the schema stored here as ``base_<group>`` so a
misspelt key or a wrongly typed value fails when Hydra composes the config, before any
model is loaded. Keys are named after the library keyword they feed (``peft.r``,
``train.learning_rate``): that one name is also the CLI override, the MLflow param and the
Optuna parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from omegaconf import MISSING

from ocrft.config_tasks import MergeConfig, PredictConfig, ReportConfig, ServeConfig, SoupConfig, StudioConfig
from ocrft.config_train import GRPO_LOSS_TYPES, GRPO_SCALE_REWARDS, TRAIN_METHODS, GrpoTrainConfig, TrainConfig


class ConfigError(ValueError):
    """A config value that composes but cannot work; the message names the key."""


# Choices of string-valued keys, checked by ocrft.validate when a run starts.
LEVELS = ("line", "region", "page")
PREDICT_LEVELS = ("line", "region")  # predict.level: what one read of an export is
CER_UNITS = ("codepoint", "grapheme")
BLEU_TOKENIZERS = ("13a", "zh", "char", "none")
PREDICTION_MATCHES = ("auto", "id", "position")
CONFIDENCES = ("mean_logprob", "min_logprob")
BACKENDS = ("local", "endpoint", "cascade", "predictions")  # model.backend
# eval.metric: what validation reports (val/<metric>), picks the best step and prunes trials by;
# every name is one ocrft.evaluation.metrics.score_detailed returns (a test holds them together)
VALIDATION_METRICS = ("cer", "mean_cer", "wer", "mean_wer", "char_precision", "char_recall", "char_f1",
                      "mean_char_f1", "bleu", "ter", "exact_match", "ned", "degenerate_rate", "looped_rate",
                      "json_valid_rate", "json_field_precision", "json_field_recall", "json_field_f1", "num_samples")  # fmt: skip


class Task(str, Enum):
    train = "train"
    eval = "eval"
    predict = "predict"
    prepare = "prepare"
    merge = "merge"
    soup = "soup"
    serve = "serve"
    analyze = "analyze"
    report = "report"
    studio = "studio"


class OnError(str, Enum):
    raise_ = "raise"
    skip = "skip"


@dataclass
class EndpointSettings:
    """How to reach an OpenAI-compatible server: model=endpoint, and a cascade's fallback."""

    provider: Optional[str] = None  # conf/provider/<name>.yaml; None = ocrft (task=serve)
    base_url: Optional[str] = None
    remote_model: Optional[str] = None
    api_key_env: Optional[str] = None
    temperature: float = 0.0
    max_tokens: int = 1024
    timeout: float = 60.0
    stream: bool = False
    # Retries per sample; the openai SDK paces them (0.5 s doubling to 8 s, with jitter) and
    # honours a server's Retry-After up to 2 minutes (docs/endpoints.md).
    max_retries: int = 5


@dataclass
class ModelConfig:
    """What reads the images: ``backend`` says how (local weights, an endpoint, a cascade of
    both, another engine's output; set by ``model=endpoint`` etc.), ``family`` names the
    checkpoint's architecture only."""

    backend: str = "local"  # one of BACKENDS
    # key of ocrft.models.registry.FAMILIES; an ocrft run folder's model card names its own
    family: Optional[str] = None
    path: str = MISSING  # hub id, local checkpoint folder, or an ocrft run folder
    name: Optional[str] = None  # display name in results and MLflow; defaults to path
    dtype: str = "auto"  # auto = bfloat16 on CUDA, float32 on CPU
    trust_remote_code: bool = False  # never on unless the user asks
    attn_implementation: Optional[str] = "sdpa"
    # Dynamic-resolution families (Qwen) bound the pixels per image; fixed-size families
    # (Gemma 3, PaliGemma) resize to their processor's size and ignore these.
    min_pixels: Optional[int] = None
    max_pixels: Optional[int] = None
    # Fixed-size families (Gemma 3, PaliGemma): the square side images are resized to;
    # None = the processor's own (recorded in MLflow as model.image_size either way).
    image_size: Optional[int] = None


@dataclass
class EndpointModelConfig(ModelConfig, EndpointSettings):
    """model=endpoint: the endpoint backend holds the EndpointSettings keys (conf/provider/*.yaml)."""


@dataclass
class PredictionsModelConfig(ModelConfig):
    """model=predictions: another engine's output. model.path is a line folder holding
    X<predictions_suffix> beside X.gt.txt, a folder of PAGE/ALTO files, or a JSONL of
    {"id", "text"}; PAGE/ALTO lines are matched to the ground truth by line id, else by
    position (predictions_match=auto|id|position)."""

    predictions_suffix: str = ".pred.txt"
    predictions_match: str = "auto"


@dataclass
class DataConfig:
    """Where records come from. Every reader yields the same record (ocrft.data.record)."""

    format: str = MISSING  # reader name: synthetic, json_ocr, jsonl_vision, messages, page_xml, alto, line_folder, hf_dataset
    # A single file (split on the fly with the ratios below) or a folder holding
    # train/val/test files of `format` (what task=prepare writes).
    path: Optional[str] = None
    train_file: Optional[str] = None
    val_file: Optional[str] = None
    test_file: Optional[str] = None
    on_error: OnError = OnError.raise_
    train_ratio: float = 0.8
    val_ratio: float = 0.1
    split_seed: int = 42
    # Groups (a page, an image) never straddle two splits. A one-page export would then be
    # all train: split_by_line=true splits its lines instead (lines of one page in train and
    # test share a hand and a scan: a leakage warning is logged).
    split_by_line: bool = False
    # When the val split is empty, carve this fraction of train out as val, by page/group.
    val_from_train: Optional[float] = None
    # task=prepare: import source and target
    input_dir: Optional[str] = None
    output_dir: Optional[str] = None
    # page_xml / alto imports: what one sample is (line, region or page)
    level: str = "line"
    # page_xml / alto imports: leave out lines whose text task=predict wrote and nobody has
    # corrected since (its ocrft marker still matches the text): a model never trains on
    # its own unchecked reading (docs/archive.md)
    skip_machine_text: bool = True
    # region and page images keep their aspect ratio within this many pixels (Qwen2.5-VL's
    # recommended max_pixels, 1280*28*28); lines are scaled to target_height instead
    max_pixels: int = 1_003_520
    pdf_dpi: int = 200  # PDF pages (predict.input=x.pdf, data=olmocr_bench) render at this DPI, then fit max_pixels
    pdf_max_pages: Optional[int] = None  # task=predict: at most the first N pages of each PDF
    # line cropping for page_xml / alto imports
    target_height: int = 128
    preserve_aspect_ratio: bool = True
    padding: int = 4
    mask: bool = False
    # synthetic lines
    num_train: int = 256
    num_val: int = 32
    num_test: int = 32
    fonts: list[str] = field(default_factory=list)  # font files or names; [] = machine's DejaVu fonts
    font_size: list[int] = field(default_factory=lambda: [22, 26])
    charset: str = "latin"  # latin, cyrillic, digits, or a literal alphabet
    min_chars: int = 4
    max_chars: int = 12
    noise: float = 0.0  # std of gaussian pixel noise, 0..1
    blur: float = 0.0  # gaussian blur radius in pixels
    skew: float = 0.0  # max rotation in degrees
    invert: bool = False  # light text on dark background
    image_height: int = 32
    cache_dir: Optional[str] = None  # where rendered synthetic images go; default under the run
    # hf_dataset: the columns holding the image and the target text
    image_column: str = "image"
    text_column: str = "text"


@dataclass
class PromptConfig:
    text: str = MISSING
    system: Optional[str] = None


@dataclass
class PeftConfig:
    method: str = "lora"  # lora, dora, none (full fine-tuning)
    r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: Optional[list[str]] = None  # None = the family's default targets
    freeze_vision: bool = True


@dataclass
class QuantConfig:
    load_in_4bit: bool = False
    load_in_8bit: bool = False
    bnb_4bit_quant_type: str = "nf4"
    bnb_4bit_use_double_quant: bool = True
    bnb_4bit_compute_dtype: str = "auto"


@dataclass
class NormalizationConfig:
    """Applied to prediction and reference before scoring; stored with every result.

    The default folds only what no transcription convention distinguishes (canonical
    Unicode composition and runs of whitespace). NFKC would also fold ſ->s and ﬁ->fi,
    which historical ground truth (OCR-D, diplomatic transcriptions) keeps apart: opt-in.
    """

    nfc: bool = True
    nfkc: bool = False
    collapse_whitespace: bool = True
    lowercase: bool = False
    remove_punctuation: bool = False
    fullwidth_to_halfwidth: bool = False
    markdown: bool = False  # strip markdown, unify dashes and quotes as olmOCR-Bench does (normalize.py)


@dataclass
class LoopGuardConfig:
    """Stops a sample whose generated tail is ``max_repeats`` back-to-back copies of one
    unit of 1..``ngram`` tokens; its text is cut where the repetition starts (the first
    copy is kept) and the sample counts as degenerate. The defaults leave a wide table's
    separator row (``|---|---|...``, one copy per column) alone up to max_repeats - 1
    columns; raise max_repeats for wider tables.

    ``retries``: a sample the guard stopped, or that ``eval.max_new_tokens`` cut before an
    end token, is generated again (that sample only) up to this many times, sampling at
    ``retry_temperature``, and the better-ended read is kept (olmOCR's pipeline re-reads a
    page that did not end at a higher temperature; issue 24)."""

    enabled: bool = True
    ngram: int = 32
    max_repeats: int = 12
    retries: int = 0
    retry_temperature: float = 0.8


@dataclass
class EvalConfig:
    split: str = "test"  # train, val, test, or all: every record of the source, whichever split
    limit: Optional[int] = None  # first N samples
    batch_size: int = 8
    workers: int = 4  # concurrent requests for model=endpoint
    save_interval: int = 0  # checkpoint every N samples (0 = only at the end)
    max_new_tokens: int = 128
    repetition_penalty: float = 1.0  # transformers' generate option; 1.0 = off
    no_repeat_ngram_size: int = 0  # transformers' generate option; 0 = off
    num_beams: int = 1
    loop_guard: LoopGuardConfig = field(default_factory=LoopGuardConfig)
    # during training
    before_after: bool = True  # score the eval split before and after training
    every_n_steps: int = 0  # generation-based validation every N steps (0 = off)
    val_subset: int = 16  # fixed first-N of the val split used for that validation
    metric: str = "cer"  # validation metric for best checkpoint, early stopping, sweeps
    greater_is_better: bool = False
    early_stopping_patience: Optional[int] = None
    # CER's unit: Unicode code points, or extended grapheme clusters (dinglehopper's
    # convention: "aͤ" is one character)
    cer_unit: str = "codepoint"
    # BLEU and TER take sacrebleu's defaults, so scores equal `sacrebleu`'s and HF
    # evaluate's; the rest of their settings are opt-in and recorded in each signature.
    bleu_tokenize: str = "13a"  # sacrebleu tokenizer: 13a, zh, char, none, ...
    bleu_lowercase: bool = False
    ter_case_sensitive: bool = False
    ter_normalized: bool = False
    ter_no_punct: bool = False
    ter_asian_support: bool = False
    json_target: Optional[bool] = None  # None = detect from the references
    normalization: NormalizationConfig = field(default_factory=NormalizationConfig)


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str = "sqlite:///mlflow.db"
    experiment: Optional[str] = None  # default: the experiment or task name
    log_model: bool = True  # adapter / merged weights as artifacts


@dataclass
class SearchParam:
    path: str = MISSING  # dotted config key, e.g. train.learning_rate
    type: str = MISSING  # float, int, categorical
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    step: Optional[float] = None
    choices: Optional[list[Any]] = None


@dataclass
class SearchSpaceConfig:
    params: list[SearchParam] = field(default_factory=list)


@dataclass
class TrialConfig:
    """Identity of an Optuna trial, set by the sweeper so the job can report to it."""

    storage: Optional[str] = None
    study_name: Optional[str] = None
    trial_number: Optional[int] = None


@dataclass
class FallbackConfig(EndpointSettings):
    """The endpoint a cascade sends its hard samples to: the same keys as model=endpoint."""


@dataclass
class CascadeConfig:
    """model=cascade: a local model reads every sample; those whose confidence is below
    ``threshold`` go to ``fallback`` (docs/cascade.md)."""

    family: Optional[str] = None  # the local model's family; None = from the ocrft run folder
    confidence: str = "mean_logprob"  # mean_logprob | min_logprob of the generated tokens
    # a log-probability, or "auto": chosen on calibration_split so that at most
    # max_fallback_fraction of its samples fall back
    threshold: Any = "auto"
    max_fallback_fraction: float = 0.3
    calibration_split: str = "val"
    # calibrate=true: both models read every sample of eval.split; writes the CER-vs-cost
    # curve over thresholds and marks the cheapest one meeting target_cer
    calibrate: bool = False
    target_cer: Optional[float] = None
    fallback: FallbackConfig = field(default_factory=FallbackConfig)


@dataclass
class RunConfig:
    task: str = "train"  # one of Task; chosen by the task group (conf/task)
    seed: int = 42
    run_name: Optional[str] = None
    run_dir: str = MISSING
    experiment_name: Optional[str] = None  # set by +experiment=...; names the MLflow experiment
    model: ModelConfig = MISSING
    data: DataConfig = MISSING
    prompt: PromptConfig = MISSING
    peft: PeftConfig = MISSING
    quant: QuantConfig = MISSING
    train: TrainConfig = MISSING
    eval: EvalConfig = MISSING
    tracking: TrackingConfig = MISSING
    search_space: SearchSpaceConfig = field(default_factory=SearchSpaceConfig)
    trial: TrialConfig = field(default_factory=TrialConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    merge: MergeConfig = field(default_factory=MergeConfig)
    soup: SoupConfig = field(default_factory=SoupConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    cascade: CascadeConfig = field(default_factory=CascadeConfig)
    studio: StudioConfig = field(default_factory=StudioConfig)


_GROUPS = {
    "model": ModelConfig,
    "data": DataConfig,
    "prompt": PromptConfig,
    "peft": PeftConfig,
    "quant": QuantConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "tracking": TrackingConfig,
    "search_space": SearchSpaceConfig,
}


def register_configs() -> None:
    """Store the root schema and one ``base_<group>`` schema per group."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="base_config", node=RunConfig)
    for group, schema in _GROUPS.items():
        cs.store(group=group, name=f"base_{group}", node=schema)
    # the backends that carry keys of their own (conf/model/endpoint.yaml, predictions.yaml)
    cs.store(group="model", name="base_endpoint_model", node=EndpointModelConfig)
    cs.store(group="model", name="base_predictions_model", node=PredictionsModelConfig)
    cs.store(group="train", name="base_grpo_train", node=GrpoTrainConfig)  # conf/train/grpo.yaml
