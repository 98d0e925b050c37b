"""Batched evaluation vs a one-sample-at-a-time generate loop, same model and data.

Prints samples/s of each and their ratio (target: batched >= 3x). Both paths use the same
Generator (same prompt layout, greedy decoding, max_new_tokens), so the only difference is
the batch size.

    python bench/bench_eval_batching.py [--family qwen2_vl] [--samples 64] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--family", default="qwen2_vl")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    args = parser.parse_args()
    os.environ.setdefault("OCRFT_CACHE", tempfile.mkdtemp(prefix="ocrft-bench-"))

    import torch

    from ocrft.data.synthetic import generate_lines
    from ocrft.evaluation.generation import image_loaders
    from ocrft.evaluation.generation import Generator, generate_all
    from ocrft.models.loading import load_model, load_processor, resolve_model
    from ocrft.models.registry import get_family

    resolved = resolve_model(args.family, f"tiny:{args.family}")
    processor, model = load_processor(resolved), load_model(resolved, "float32")
    generator = Generator(model, processor, get_family(args.family), max_new_tokens=args.max_new_tokens)
    records = generate_lines(tempfile.mkdtemp(), args.samples, seed=0)
    loaders, prompts = image_loaders(records), ["Read the line."] * len(records)
    generate_all(generator.generate_detailed, loaders[:2], prompts[:2], 2)  # warm-up

    timings = {}
    for name, batch_size in (("one-at-a-time", 1), (f"batched ({args.batch_size})", args.batch_size)):
        start = time.perf_counter()
        generate_all(generator.generate_detailed, loaders, prompts, batch_size)
        timings[name] = len(records) / (time.perf_counter() - start)
    baseline, batched = timings.values()
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"model tiny:{args.family}, {args.samples} samples, max_new_tokens={args.max_new_tokens}")  # fmt: skip
    for name, rate in timings.items():
        print(f"{name:<16} {rate:8.2f} samples/s")
    print(f"ratio batched/one-at-a-time: {batched / baseline:.2f}x (target >= 3x)")


if __name__ == "__main__":
    main()
