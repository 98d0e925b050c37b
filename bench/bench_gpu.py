"""The GPU check: ocrft at real size on an accelerator, in one run (bench/gpu_check.sh runs it).

    python bench/bench_gpu.py                 # on CUDA: Qwen2-VL-2B at real size, random bf16 weights
    python bench/bench_gpu.py --smoke         # tiny sizes on CPU: the script itself works, in a minute or two

What it measures, each against a baseline measured in the same run on the same device:
1. the device's practical peak: the best of a few large matrix products (bf16 on CUDA, fp32 on CPU);
2. SFT samples/s of ocrft's real training path against plain TRL (bench_train_throughput.py's
   two runs, same model, LoRA, data, batch and steps), and ocrft's model FLOPs utilization
   (6 x parameters x real tokens/s over the peak of 1.);
3. peak memory of one QLoRA (4-bit NF4) training step against one LoRA step, each a fresh
   ``python -m ocrft task=train`` process (GPU: torch.cuda.max_memory_allocated; CPU: peak RSS);
4. the time of one GRPO step (train=grpo: num_generations sampled reads of each line, scored by
   ocrft's rewards, one optimizer step) against one SFT step of the same batch of lines.

The real-size model is built as bench_memory.py builds it: Qwen/Qwen2-VL-2B-Instruct's
architecture sizes with random weights and the tiny twin's processor (nothing downloaded).
Results go to <out>/<device>.json and a table in <out>/README.md (default experiments/gpu).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

# per size: SFT throughput (batch, steps), the memory runs' batch, GRPO's lines x reads
SIZES = {
    "real": {"batch": 8, "steps": 12, "memory_batch": 4, "grpo_lines": 2, "generations": 4, "new_tokens": 32},
    "smoke": {"batch": 2, "steps": 3, "memory_batch": 2, "grpo_lines": 1, "generations": 2, "new_tokens": 4},
}


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def matmul_peak(smoke: bool) -> float:
    """FLOP/s of the best of five square matrix products (bf16 8192 on CUDA; fp32 1024 on CPU)."""
    import torch

    cuda = torch.cuda.is_available()
    n, dtype = (8192, torch.bfloat16) if cuda and not smoke else (1024, torch.float32)
    device = "cuda" if cuda else "cpu"
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    best = float("inf")
    for i in range(6):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        torch.matmul(a, b)
        if cuda:
            torch.cuda.synchronize()
        if i:  # the first is the warm-up
            best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def build_model(work: Path, smoke: bool) -> tuple[str, str]:
    """(model.path, family): the tiny twin for --smoke, else a real-size random Qwen2-VL-2B."""
    if smoke:
        return "tiny:qwen2_vl", "qwen2_vl"
    ckpt = work / "qwen2_vl_2b"
    if not (ckpt / "config.json").exists():
        subprocess.run([sys.executable, str(REPO / "bench" / "bench_memory.py"), "--build", "qwen2_vl_2b", str(ckpt)],
                       check=True, cwd=REPO)  # fmt: skip
    return str(ckpt), "qwen2_vl"


def data_overrides(lines: int) -> list[str]:
    return ["data=synthetic", f"data.num_train={lines}", "data.num_val=0", "data.num_test=0", "data.min_chars=20",
            "data.max_chars=30", "eval.before_after=false", "eval.every_n_steps=0", "tracking=none"]  # fmt: skip


def run_probe(overrides: list[str], out: Path) -> dict:
    """``python -m ocrft overrides`` in a fresh process; its run.json metrics and peak memory."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--probe", str(out / "probe.json"), "--", *overrides]
    with (out.parent / f"{out.name}.log").open("w") as log:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(overrides)} failed; see {out.parent / f'{out.name}.log'}")
    return json.loads((out / "probe.json").read_text())


def probe(result: Path, overrides: list[str]) -> None:
    """Run ocrft in this process; write its metrics and the peak memory it reached."""
    import torch

    from ocrft.runner import run_task
    from ocrft.tasks.train import run_training
    from bench_train_throughput import compose

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    result.parent.mkdir(parents=True, exist_ok=True)
    metrics = run_task(compose(overrides), run_training)
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result.write_text(json.dumps({"metrics": metrics, "peak_bytes": peak,
                                  "peak_of": "cuda max_memory_allocated" if torch.cuda.is_available() else "process peak RSS"}))  # fmt: skip


def sft_throughput(model: str, family: str, work: Path, size: dict, peak: float) -> dict:
    """ocrft against plain TRL: samples/s, tokens, ocrft's MFU (bench_train_throughput.py's runs)."""
    import torch

    from bench_train_throughput import count_parameters, run_ocrft, run_trl_baseline
    from ocrft.data.loading import load_data
    from bench_train_throughput import compose, ocrft_overrides

    args = SimpleNamespace(model=model, family=family, batch=size["batch"], steps=size["steps"],
                           samples=size["batch"] * size["steps"], min_chars=5, max_chars=60, extra=[])  # fmt: skip
    records = load_data(compose(ocrft_overrides(args, work / "data")).data, work / "data").splits["train"]
    run_ocrft(args, work / "warmup")  # first-run costs (kernels, caches) count for neither side
    trl = run_trl_baseline(args, records, work / "trl")
    ours = run_ocrft(args, work / "ocrft")
    params = count_parameters(model, family)
    real_rate = ours.tokens.real / ours.seconds
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return {"trl_samples_per_s": trl.samples_per_second, "ocrft_samples_per_s": ours.samples_per_second,
            "ratio_ocrft_over_trl": ours.samples_per_second / trl.samples_per_second,
            "ocrft_real_tokens_per_s": real_rate, "parameters": params,
            "ocrft_mfu": 6 * params * real_rate / peak, "padding": ours.padding}  # fmt: skip


def memory(model: str, family: str, work: Path, size: dict) -> dict:
    """Peak memory of one LoRA and one QLoRA training step, each in a fresh process."""
    out = {}
    for name, quant in (("lora", "quant=none"), ("qlora", "quant=4bit")):
        folder = work / f"mem-{name}"
        overrides = [f"model.path={model}", f"model.family={family}", "task=train", "peft=lora", quant,
                     *data_overrides(size["memory_batch"] * 2), f"train.per_device_train_batch_size={size['memory_batch']}",
                     "train.max_steps=1", "train.logging_steps=1", f"run_dir={folder / 'run'}"]  # fmt: skip
        out[f"{name}_peak_gib"] = run_probe(overrides, folder)["peak_bytes"] / 2**30
    out["qlora_over_lora"] = out["qlora_peak_gib"] / out["lora_peak_gib"]
    return out


def step_times(model: str, family: str, work: Path, size: dict) -> dict:
    """Seconds of one GRPO step (lines x num_generations sampled reads, rewards, update) and of
    one SFT step on the same lines, each the mean over two steps of a fresh run."""
    lines, reads = size["grpo_lines"], size["generations"]
    common = [f"model.path={model}", f"model.family={family}", "task=train", "peft=lora", *data_overrides(lines * 4),
              "train.max_steps=2", "train.logging_steps=1", f"eval.max_new_tokens={size['new_tokens']}"]  # fmt: skip
    grpo = run_probe([*common, "train=grpo", f"train.num_generations={reads}",
                      f"train.per_device_train_batch_size={lines * reads}", f"run_dir={work / 'grpo' / 'run'}"],
                     work / "grpo")  # fmt: skip
    sft = run_probe([*common, f"train.per_device_train_batch_size={lines}", f"run_dir={work / 'sft' / 'run'}"], work / "sft")
    grpo_s = grpo["metrics"]["system/train_seconds"] / 2
    sft_s = sft["metrics"]["system/train_seconds"] / 2
    return {"grpo_step_s": grpo_s, "sft_step_s": sft_s, "grpo_over_sft": grpo_s / sft_s,
            "grpo_lines_x_reads": f"{lines}x{reads}", "grpo_max_completion_tokens": size["new_tokens"]}  # fmt: skip


def write(out_dir: Path, result: dict) -> Path:
    """<out_dir>/<device>.json, and the README table rebuilt from every JSON there."""
    out_dir.mkdir(parents=True, exist_ok=True)
    slug = "".join(c if c.isalnum() else "-" for c in result["device"]).strip("-").lower()
    path = out_dir / f"{slug}{'-smoke' if result['smoke'] else ''}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    rows = [json.loads(p.read_text()) for p in sorted(out_dir.glob("*.json"))]
    head = ("| device | sizes | peak TFLOP/s | SFT ocrft/TRL | ocrft MFU | QLoRA/LoRA peak memory | GRPO step / SFT step |\n"
            "| --- | --- | --- | --- | --- | --- | --- |")  # fmt: skip
    lines = [f"| {r['device']} | {'smoke (tiny)' if r['smoke'] else 'Qwen2-VL-2B real size'} | {r['peak_flops'] / 1e12:.1f} "
             f"| {r['sft']['ocrft_samples_per_s']:.2f} / {r['sft']['trl_samples_per_s']:.2f} samples/s "
             f"= {r['sft']['ratio_ocrft_over_trl']:.2f} | {100 * r['sft']['ocrft_mfu']:.1f}% "
             f"| {r['memory']['qlora_peak_gib']:.2f} / {r['memory']['lora_peak_gib']:.2f} GiB = {r['memory']['qlora_over_lora']:.2f} "
             f"| {r['steps']['grpo_step_s']:.2f} / {r['steps']['sft_step_s']:.2f} s = {r['steps']['grpo_over_sft']:.1f} |"
             for r in rows]  # fmt: skip
    readme = out_dir / "README.md"
    intro = readme.read_text().split("<!-- table -->")[0] if readme.exists() else "# GPU check\n\n"
    readme.write_text(f"{intro}<!-- table -->\n{head}\n" + "\n".join(lines) + "\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, on CPU if there is no GPU")
    parser.add_argument("--out", type=Path, default=REPO / "experiments" / "gpu")
    parser.add_argument("--work", type=Path, default=None, help="where checkpoints and runs go (default: a temp folder)")
    parser.add_argument("--probe", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if args.probe:
        probe(args.probe, args.overrides)
        return 0
    import torch

    if not args.smoke and not torch.cuda.is_available():
        print("bench_gpu.py: no CUDA device; run with --smoke for the tiny CPU check", file=sys.stderr)
        return 2
    size = SIZES["smoke" if args.smoke else "real"]
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        work = args.work or Path(tmp)
        peak = matmul_peak(args.smoke)
        print(f"device {device_name()}: matmul peak {peak / 1e12:.2f} TFLOP/s", flush=True)
        model, family = build_model(work, args.smoke)
        result = {"device": device_name(), "smoke": args.smoke, "torch": torch.__version__, "peak_flops": peak}
        for key, measure in (("sft", lambda: sft_throughput(model, family, work / "sft", size, peak)),
                             ("memory", lambda: memory(model, family, work, size)),
                             ("steps", lambda: step_times(model, family, work, size))):  # fmt: skip
            t0 = time.time()
            result[key] = measure()
            print(f"{key} ({time.time() - t0:.0f} s): {json.dumps(result[key])}", flush=True)
        result["peak_flops"] = max(peak, matmul_peak(args.smoke))  # the best seen, as the MFU's peak
        result["sft"]["ocrft_mfu"] *= peak / result["peak_flops"]
        result["seconds"] = round(time.time() - started)
    print(f"written to {write(args.out, result)} ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
