"""Peak memory (CPU RSS) of one training step at real model sizes, and of evaluation vs its size.

    python bench/bench_memory.py                      # everything below, one run at a time
    python bench/bench_memory.py --only qwen2_vl_2b   # one real-size model (LoRA and QLoRA)
    python bench/bench_memory.py --only eval          # evaluation on 64 and 1,024 samples

Real sizes, nothing downloaded: each model is built with the architecture sizes of its hub
config.json (REAL below) and random bf16 weights, saved once to a temp folder with the
processor of ocrft's tiny twin (a char-level tokenizer, so ~20 target characters are ~20
tokens; the embedding keeps the real vocabulary size) and the real image settings. Each
measurement is then a fresh `python -m ocrft task=train` subprocess on that folder (the
project's own code path: resolve, load, peft, TRL trainer, one optimizer step, adapter
saved), and its peak RSS comes from the kernel (os.wait4's ru_maxrss), so nothing of one
measurement carries into the next. Short inputs: one synthetic line image, 20 characters,
batch 1. Loading can peak above training (the 4-bit load holds the bf16 file while it
quantizes), so the run also reports its phases: the subprocess runs the CLI in-process
(--probe), and right after ocrft.tasks.train has loaded the model and applied the adapter
it records the resident and peak RSS so far and resets the kernel's peak (/proc/self/clear_refs),
so the peak at the end is that of the training step (and the saving after it) alone.

- LoRA: base weights in bf16 (model.dtype=bfloat16, half of fp32's RAM), adapters in fp32.
- QLoRA: quant=4bit (bitsandbytes NF4 with double quantization, bf16 compute) on its CPU
  backend, same adapters.

Evaluation: task=eval of model=demo_base on 64 and 1,024 synthetic lines (eval.batch_size=8);
the ratio of the two peaks shows whether memory grows with the number of samples.

The machine is shared: runs go one at a time, and a real-size run waits until enough memory
is free (--need-gb) rather than pushing others' tests into the OOM killer.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Architecture sizes from the hub configs of the checkpoints conf/model names (transformers
# config keys). Qwen/Qwen2-VL-2B-Instruct config.json: 28 layers of 1536 (12 heads, 2 KV heads,
# MLP 8960, vocab 151936, tied embeddings, mrope [16, 24, 24]); its vision tower 32 blocks of
# 1280 (16 heads, mlp_ratio 4, patch 14, 2x2 merge). google/paligemma-3b-pt-448 config.json:
# Gemma 2B (18 layers of 2048, 8 heads, 1 KV head, head_dim 256, MLP 16384, vocab 257216) and
# SigLIP So400m at 448 px (27 layers of 1152, 16 heads, MLP 4304, patch 14: 1,024 image tokens).
REAL = {
    "qwen2_vl_2b": {
        "family": "qwen2_vl",
        "hub_id": "Qwen/Qwen2-VL-2B-Instruct",
        "text_config": dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                            num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768,
                            tie_word_embeddings=True),
        "rope": dict(rope_theta=1_000_000.0, mrope_section=[16, 24, 24]),
        "vision_config": dict(depth=32, embed_dim=1280, hidden_size=1536, mlp_ratio=4, num_heads=16,
                              patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
        "top": dict(tie_word_embeddings=True),
        # conf/model/qwen2_vl_2b.yaml's pixel budget
        "image_processor": dict(patch_size=14, merge_size=2, temporal_patch_size=2),
        "pixels": dict(shortest_edge=3136, longest_edge=1003520),
    },
    "paligemma_3b_448": {
        "family": "paligemma",
        "hub_id": "google/paligemma-3b-pt-448",
        "text_config": dict(vocab_size=257216, hidden_size=2048, intermediate_size=16384, num_hidden_layers=18,
                            num_attention_heads=8, num_key_value_heads=1, head_dim=256),
        "rope": {},
        "vision_config": dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                              patch_size=14, image_size=448, projection_dim=2048, vision_use_head=False),
        "top": dict(vocab_size=257216, hidden_size=2048, projection_dim=2048),
        "image_processor": dict(size={"height": 448, "width": 448}, image_seq_length=1024),
        "pixels": {},
    },
}  # fmt: skip

# One line image of 20 characters, batch 1, one optimizer step; no generation to speak of.
TRAIN_ARGS = [
    "task=train", "data=synthetic", "data.num_train=4", "data.num_val=0", "data.num_test=1",
    "data.min_chars=20", "data.max_chars=20", "data.image_height=64", "eval.before_after=false",
    "eval.max_new_tokens=2", "train.max_steps=1", "train.per_device_train_batch_size=1",
    "train.gradient_accumulation_steps=1", "train.logging_steps=1", "model.dtype=bfloat16", "peft=lora",
]  # fmt: skip
METHODS = {"LoRA (bf16 base)": ["quant=none"], "QLoRA (4-bit NF4)": ["quant=4bit"]}
EVAL_SIZES = (64, 1024)


def build_checkpoint(name: str, out: Path) -> int:
    """Write a random-weight bf16 checkpoint of REAL[name]'s sizes to ``out``; returns its parameter count."""
    import torch
    import transformers

    from ocrft.models.loading import ensure_tiny
    from ocrft.models.registry import get_family

    spec = REAL[name]
    family = get_family(spec["family"])
    tiny_dir = ensure_tiny(spec["family"], root=out.parent / "tiny")
    tiny_config = transformers.AutoConfig.from_pretrained(tiny_dir)  # token ids of the tiny tokenizer
    d = tiny_config.to_dict()
    d["text_config"].update(spec["text_config"])
    d["text_config"].pop("layer_types", None)  # derived from num_hidden_layers when absent
    if spec["rope"]:
        d["text_config"]["rope_parameters"] = {**d["text_config"]["rope_parameters"], **spec["rope"]}
    d["vision_config"].update(spec["vision_config"])
    d.update(spec["top"], dtype="bfloat16")
    config = type(tiny_config).from_dict(d)
    processor = family.load_processor(str(tiny_dir))
    for key, value in spec["image_processor"].items():
        setattr(processor.image_processor, key, value)
    if spec["pixels"]:
        processor.image_processor.size = spec["pixels"]
    if "image_seq_length" in spec["image_processor"]:
        processor.image_seq_length = spec["image_processor"]["image_seq_length"]
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)  # build in bf16: an fp32 3B model would need 12 GB here
    model = getattr(transformers, family.model_class)(config)
    torch.set_default_dtype(torch.float32)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def peak_rss(cmd: list[str], log_file: Path, env: dict[str, str]) -> tuple[float, int, float]:
    """Run ``cmd``; returns (its peak RSS in GiB, exit code, seconds), from the kernel's own accounting."""
    t0 = time.time()
    with log_file.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's rusage alone (ru_maxrss in KiB on Linux)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 2**20, proc.returncode, time.time() - t0


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def probe(out: Path, overrides: list[str]) -> None:
    """Run ``python -m ocrft overrides`` in this process and write its memory phases to ``out``.

    ocrft.tasks.train calls apply_peft once the base model is loaded; wrapping it (not
    replacing it) marks the end of loading without touching the task's code.
    """
    import runpy

    import ocrft.tasks.train as train_task

    phases: dict[str, float] = {}
    apply_peft = train_task.apply_peft

    def apply_peft_and_mark(*args, **kwargs):
        model = apply_peft(*args, **kwargs)
        phases["load_peak_gib"] = _status_kib("VmHWM") / 2**20
        phases["loaded_rss_gib"] = _status_kib("VmRSS") / 2**20
        Path("/proc/self/clear_refs").write_text("5")  # peak := current, from here on
        return model

    train_task.apply_peft = apply_peft_and_mark
    sys.argv = ["ocrft", *overrides]
    try:
        runpy.run_module("ocrft", run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        if stop.code not in (0, None):
            raise
    finally:
        if phases:
            phases["step_peak_gib"] = _status_kib("VmHWM") / 2**20
        out.write_text(json.dumps(phases))


def wait_for_memory(need_gb: float, patience_s: float = 900) -> bool:
    """Wait (up to ``patience_s``) until ``need_gb`` of RAM is available; False if it never was."""
    import psutil

    deadline = time.time() + patience_s
    while psutil.virtual_memory().available / 2**30 < need_gb:
        if time.time() > deadline:
            return False
        print(f"  waiting: {psutil.virtual_memory().available / 2**30:.1f} GiB free, need {need_gb} GiB", flush=True)
        time.sleep(30)
    return True


def ocrft(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "ocrft", *args, "tracking=none"]


def bench_model(name: str, work: Path, env: dict[str, str], need_gb: float) -> dict:
    spec = REAL[name]
    ckpt = work / name
    if not wait_for_memory(need_gb):
        return {"model": name, "skipped": f"never {need_gb} GiB free"}
    if not (ckpt / "bench_params.json").exists():  # built once per work dir
        build = [sys.executable, __file__, "--build", name, str(ckpt)]
        _, code, seconds = peak_rss(build, work / f"{name}-build.log", env)
        if code != 0:
            raise SystemExit(f"building {name} failed: see {work / f'{name}-build.log'}")
        print(f"{name}: built in {seconds:.0f} s", flush=True)
    params = json.loads((ckpt / "bench_params.json").read_text())["params"]
    print(f"{name}: {params / 1e9:.3f} B parameters ({spec['hub_id']} sizes)", flush=True)
    row = {"model": name, "hub_id": spec["hub_id"], "params": params, "peak_rss_gib": {}, "phases": {},
           "seconds": {}}
    for method, extra in METHODS.items():
        if not wait_for_memory(need_gb):
            row["peak_rss_gib"][method] = None
            continue
        run_dir = work / f"{name}-{extra[0].replace('=', '_')}"
        args = [*TRAIN_ARGS, f"model.family={spec['family']}", f"model.path={ckpt}", f"run_dir={run_dir}", *extra]
        phases_file = work / f"{run_dir.name}-phases.json"
        cmd = [sys.executable, __file__, "--probe", str(phases_file), *ocrft(args)[3:]]
        rss, code, seconds = peak_rss(cmd, work / f"{run_dir.name}.log", env)
        run_json = run_dir / "run.json"
        status = json.loads(run_json.read_text()).get("status") if run_json.exists() else None
        if code != 0 or status != "finished":
            tail = (work / f"{run_dir.name}.log").read_text()[-2000:]
            print(f"  {method}: FAILED (exit {code}, status {status})\n{tail}", flush=True)
            row["peak_rss_gib"][method] = None
            continue
        phases = {k: round(v, 2) for k, v in json.loads(phases_file.read_text()).items()}
        # The probe reset the kernel's peak after loading, so the process peak is the larger phase.
        rss = max(phases["load_peak_gib"], phases["step_peak_gib"])
        row["peak_rss_gib"][method], row["phases"][method], row["seconds"][method] = rss, phases, round(seconds)
        per_b = params / 1e9
        print(f"  {method:<18} peak RSS {rss:6.2f} GiB ({rss / per_b:.2f} GiB/B params) in {seconds:.0f} s; "
              f"loading peak {phases['load_peak_gib']:.2f}, resident after loading {phases['loaded_rss_gib']:.2f} "
              f"({phases['loaded_rss_gib'] / per_b:.2f} GiB/B), training step peak {phases['step_peak_gib']:.2f} GiB "
              f"({phases['step_peak_gib'] / per_b:.2f} GiB/B)", flush=True)  # fmt: skip
    lora, qlora = (row["peak_rss_gib"].get(m) for m in METHODS)  # METHODS: LoRA first, then QLoRA
    if lora and qlora:
        steps = [row["phases"][m]["step_peak_gib"] for m in METHODS]
        row["ratio_qlora_lora"] = round(qlora / lora, 3)
        row["ratio_qlora_lora_step"] = round(steps[1] / steps[0], 3)
        print(f"  ratio QLoRA/LoRA: {qlora / lora:.2f} (process peak), {steps[1] / steps[0]:.2f} (training step)",
              flush=True)  # fmt: skip
    return row


def bench_eval(work: Path, env: dict[str, str]) -> dict:
    row = {"model": "demo_base (eval)", "peak_rss_gib": {}, "seconds": {}}
    for n in EVAL_SIZES:
        data = ["data=synthetic", f"data.num_test={n}", "data.num_train=0", "data.num_val=0"]
        # Render the lines first (cached), so the measured run holds evaluation alone.
        peak_rss(ocrft(["task=analyze", "model=demo_base", *data, f"run_dir={work / f'render-{n}'}"]),
                 work / f"render-{n}.log", env)  # fmt: skip
        run_dir = work / f"eval-{n}"
        args = ["task=eval", "model=demo_base", *data, "eval.batch_size=8", f"run_dir={run_dir}"]
        rss, code, seconds = peak_rss(ocrft(args), work / f"eval-{n}.log", env)
        if code != 0:
            raise SystemExit(f"eval on {n} samples failed: see {work / f'eval-{n}.log'}")
        row["peak_rss_gib"][n], row["seconds"][n] = round(rss, 3), round(seconds)
        print(f"eval {n:>5} samples: peak RSS {rss:6.3f} GiB ({seconds:.0f} s)", flush=True)
    small, large = (row["peak_rss_gib"][n] for n in EVAL_SIZES)
    row["ratio"] = round(large / small, 3)
    print(f"ratio {EVAL_SIZES[1]}/{EVAL_SIZES[0]} samples: {large / small:.3f}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="qwen2_vl_2b,paligemma_3b_448,eval", help="comma list: names of REAL, eval")
    parser.add_argument("--work", default=None, help="folder for checkpoints, runs and logs (default: a temp dir)")
    parser.add_argument("--need-gb", type=float, default=12.0, help="free RAM to wait for before a real-size run")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    parser.add_argument("--build", nargs=2, metavar=("NAME", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--probe", metavar="OUT", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.probe:
        probe(Path(args.probe), rest)
        return
    if args.build:
        name, out = args.build
        params = build_checkpoint(name, Path(out))
        (Path(out) / "bench_params.json").write_text(json.dumps({"params": params}))
        return

    import platform

    import psutil
    import torch

    work = Path(args.work or tempfile.mkdtemp(prefix="ocrft-bench-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OCRFT_CACHE": str(work / "cache"), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, torch {torch.__version__}; work dir {work}",
          flush=True)  # fmt: skip
    rows = []
    for name in args.only.split(","):
        rows.append(bench_eval(work, env) if name == "eval" else bench_model(name, work, env, args.need_gb))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
