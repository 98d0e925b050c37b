"""The loop guard on a model that loops: degenerate rate, CER and generation time.

Two models that loop: the demo's OCR base (``--model demo_base``), which read lines of at
most 8 characters and, asked for 16-40 character lines, often babbles in near-repeats until
max_new_tokens; and an untrained tiny Qwen2-VL (``--model tiny_qwen2_vl``), whose greedy
output falls into exact loops (its CER is meaningless; its time and token counts are not).
Each variant generates the same lines with the
same model: no guard, the guard at its defaults (eval.loop_guard: a unit of up to 32 tokens
repeated 12 times), a tighter guard (8 tokens x 4), and the two generate options that
prevent loops by reshaping every token's probability (repetition_penalty=1.2,
no_repeat_ngram_size=3). Prints one row per variant and the guard's time ratio to no guard.

    python bench/bench_loop_guard.py [--model demo_base|tiny_qwen2_vl] [--samples 64] [--max-new-tokens 128]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

VARIANTS = {
    "no guard": {"guard": None},
    "guard 32x12 (default)": {"guard": (32, 12)},
    "guard 8x4": {"guard": (8, 4)},
    "repetition_penalty=1.2": {"guard": None, "repetition_penalty": 1.2},
    "no_repeat_ngram_size=3": {"guard": None, "no_repeat_ngram_size": 3},
}


def _generator(model: str, max_new_tokens: int):
    from hydra import compose, initialize_config_dir

    from ocrft.conf_dir import CONF_DIR
    from ocrft.config import register_configs
    from ocrft.evaluation.generation import build_generator

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=demo", f"model={model}", f"eval.max_new_tokens={max_new_tokens}"])
    return build_generator(cfg), cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="demo_base", choices=["demo_base", "tiny_qwen2_vl"])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    os.environ.setdefault("OCRFT_CACHE", tempfile.mkdtemp(prefix="ocrft-bench-"))

    import torch

    from ocrft.data.synthetic import generate_lines
    from ocrft.evaluation.generation import generate_all, image_loaders
    from ocrft.evaluation.metrics import score_detailed

    generator, cfg = _generator(args.model, args.max_new_tokens)
    records = generate_lines(tempfile.mkdtemp(), args.samples, seed=3, min_chars=16, max_chars=40,
                             fonts=["DejaVuSerif"], font_size=[20, 26])  # fmt: skip
    loaders, prompts = image_loaders(records), [cfg.prompt.text] * len(records)
    references = [r.text for r in records]
    defaults = dict(generator.generate_kwargs)
    generate_all(generator.generate_detailed, loaders[:2], prompts[:2], 2)  # warm-up

    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"model {args.model}, {len(records)} lines of 16-40 chars, "
          f"max_new_tokens={args.max_new_tokens}, batch {args.batch_size}")  # fmt: skip
    print(f"{'variant':26s} {'CER':>7s} {'degenerate':>10s} {'looped':>7s} {'tokens/sample':>13s} {'seconds':>8s}")
    seconds = {}
    for name, variant in VARIANTS.items():
        generator.loop_guard = variant["guard"]
        generator.generate_kwargs = {**defaults, **{k: v for k, v in variant.items() if k != "guard"}}
        start = time.perf_counter()
        outputs = generate_all(generator.generate_detailed, loaders, prompts, args.batch_size)
        seconds[name] = time.perf_counter() - start
        metrics, samples = score_detailed([g.text for g in outputs], references, cfg.eval.normalization)
        degenerate = sum(s["degenerate"] or g.looped for s, g in zip(samples, outputs)) / len(outputs)
        looped = sum(g.looped for g in outputs) / len(outputs)
        tokens = sum(g.num_tokens for g in outputs) / len(outputs)
        print(f"{name:26s} {metrics['cer']:7.4f} {degenerate:10.3f} {looped:7.3f} {tokens:13.1f} {seconds[name]:8.1f}")
    base = seconds["no guard"]
    print(f"time ratio vs no guard: default guard {seconds['guard 32x12 (default)'] / base:.2f}, "
          f"guard 8x4 {seconds['guard 8x4'] / base:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
