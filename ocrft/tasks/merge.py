"""task=merge: fold a LoRA adapter into its base and save a plain checkpoint.

The merged folder holds safetensors weights, the processor and the base checkpoint's
tokenizer/processor files, a layout transformers and vLLM load like any checkpoint. The
merge is then checked: merged and adapter models must generate the same text.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ocrft import atomic
from ocrft.config import ConfigError
from ocrft.runner import RunContext, TaskResult

log = logging.getLogger(__name__)

# Files that describe the processor; copied from the base so loaders see the stock classes.
PROCESSOR_FILES = (
    "preprocessor_config.json", "processor_config.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "chat_template.jinja", "chat_template.json", "tokenizer.model",
)  # fmt: skip


def run_merge(cfg, ctx: RunContext) -> TaskResult:
    from ocrft.evaluation.generation import build_generator
    from ocrft.evaluation.local import LocalPredictor
    from ocrft.models.bundle import load_bundle
    from ocrft.models.loading import load_model, resolve_model, write_model_card

    if not resolve_model(cfg.model.family, cfg.model.path).adapter_path:  # before any weights are read
        raise ConfigError(f"model.path={cfg.model.path!r} has no adapter to merge (expected an ocrft run folder or adapter)")
    bundle = load_bundle(cfg.model)
    resolved, processor, adapted = bundle.resolved, bundle.processor, bundle.model
    out = Path(cfg.merge.output_dir).expanduser() if cfg.merge.output_dir else ctx.run_dir / "merged"
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged = adapted.merge_and_unload()
    merged.save_pretrained(tmp, safe_serialization=True)
    processor.save_pretrained(tmp)
    copy_processor_files(Path(resolved.base_path), tmp)
    write_model_card(tmp, family=resolved.family, adapter=False)
    atomic.replace_dir(tmp, out, out.with_name(f".{out.name}.old"))
    log.info("merged model written to %s", out)

    # Check: the reloaded merged checkpoint generates what base + adapter generates.
    records = check_records(cfg, ctx.run_dir)
    metrics: dict[str, float] = {}
    if records:
        reloaded = resolve_model(resolved.family, str(out))
        texts = {}
        for kind, checkpoint in (("adapter", resolved), ("merged", reloaded)):
            generator = build_generator(cfg, model=load_model(checkpoint, cfg.model.dtype), processor=processor)
            texts[kind] = [g.text for g in LocalPredictor(cfg, generator=generator, desc=f"check {kind}").predict(records)]
        differ = [(r.id, a, m) for r, a, m in zip(records, texts["adapter"], texts["merged"]) if a != m]
        for rid, a, m in differ:
            log.warning("merge check: %s differs: adapter=%r merged=%r", rid, a, m)
        metrics = {"merge/checked": len(records), "merge/differing": len(differ)}
        log.info("merge check: %d of %d samples generate identical text", len(records) - len(differ), len(records))
    return TaskResult(metrics=metrics, paths={"merged": str(out)})


def copy_processor_files(base: Path, target: Path) -> None:
    """Prefer the base checkpoint's own processor files (stock class names) when local."""
    if not base.is_dir():
        return
    for name in PROCESSOR_FILES:
        if (base / name).exists():
            shutil.copy2(base / name, target / name)


def check_records(cfg, run_dir: Path):
    """The first ``merge.check_samples`` records of the eval split (none if no data given)."""
    if cfg.merge.check_samples <= 0:
        return []
    from ocrft.data.loading import load_data

    data = load_data(cfg.data, run_dir, splits=(cfg.eval.split,))
    return data.splits[cfg.eval.split][: cfg.merge.check_samples]
