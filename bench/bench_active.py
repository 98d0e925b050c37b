"""Does it pay to correct the lines the model is least sure of first? (issue 26, "Does it pay?")

On the demo (the shipped demo base meeting serif faces and noise, conf/experiment/demo.yaml),
a pool of unlabeled lines is read by the base once, greedily, and ``--samples`` more times
with sampling, exactly as ``task=predict predict.rank=true predict.samples=N`` ranks an
export (ocrft.evaluation.ranking: certainty = exp(mean token log-prob) x (1 - disagreement)).
Then ``--fraction`` of the pool is "corrected" (its labels used) and LoRA-trained on, from
the same base with the same steps, two ways:

- least sure: the fraction with the lowest certainty;
- random: a random fraction (drawn with each seed).

Each is trained with every seed in ``--seeds``. The table gives test CER (the demo's 64 test
lines) per seed and the mean, and how well the ranking predicts a line's CER under the
base: Spearman rho between (1 - certainty) and the line's CER, and the same for each
signal alone.

    OMP_NUM_THREADS=1 python bench/bench_active.py [--pool 1000] [--fraction 0.2] [--steps 150]
        [--seeds 1 2 3] [--samples 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import fmean, pstdev

REPO = Path(__file__).resolve().parents[1]
DEMO = ["+experiment=demo", "eval.max_new_tokens=16", "eval.batch_size=32", "tracking=none"]


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from ocrft.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def read_pool(args, out: Path):
    """The demo's splits, and the base's ranking of the pool (train split) with each line's CER."""
    from rapidfuzz.distance import Levenshtein

    from ocrft.data.loading import load_data
    from ocrft.evaluation.predictor import build_predictor
    from ocrft.evaluation.ranking import RankedLine, confidence, disagreement, rank_line

    cfg = compose([*DEMO, "task=predict", f"data.num_train={args.pool}", f"run_dir={out / 'pool'}",
                   f"data.cache_dir={out / 'images'}"])  # fmt: skip
    splits = load_data(cfg.data, out / "pool").splits
    pool = splits["train"]
    predictor = build_predictor(cfg, task="predict", run_dir=out / "pool")
    started = time.monotonic()
    greedy = predictor.predict(pool)
    sampled = [predictor.sample(pool, seed=k, temperature=0.8) for k in range(1, args.samples + 1)]
    print(f"read the pool ({len(pool)} lines) once greedily and {args.samples}x sampled in "
          f"{time.monotonic() - started:.0f} s", flush=True)  # fmt: skip
    lines, cers = [], []
    for i, (record, g) in enumerate(zip(pool, greedy)):
        readings = [g.text, *[s[i].text for s in sampled]]
        lines.append(rank_line(RankedLine(page="pool", line=record.id, region="", text=g.text, image=record.image,
                                          confidence=confidence(g), mean_logprob=g.mean_logprob,
                                          min_logprob=g.min_logprob,
                                          disagreement=disagreement(readings) if args.samples else None,
                                          num_tokens=g.num_tokens, looped=g.looped)))  # fmt: skip
        cers.append(Levenshtein.distance(g.text, record.text) / max(len(record.text), 1))
    return splits, lines, cers


def spearman(signal: list[float], cers: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(signal, cers).statistic)


def write_json_ocr(records, path: Path) -> Path:
    path.write_text(json.dumps([{"img_path": str(Path(r.image).resolve()), "ocr_results": r.text} for r in records],
                               ensure_ascii=False))  # fmt: skip
    return path


def train(train_file: Path, *, files: dict[str, Path], seed: int, steps: int, run_dir: Path) -> dict:
    """LoRA on ``train_file`` from the demo base; returns run.json's metrics."""
    args = [*DEMO, "data=json_ocr", f"data.train_file={train_file}", f"data.val_file={files['val']}",
            f"data.test_file={files['test']}", f"train.max_steps={steps}", f"seed={seed}", f"run_dir={run_dir}",
            "train.save_steps=100000", "eval.every_n_steps=50"]  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir.parent / f"{run_dir.name}.log").open("w") as log:
        subprocess.run([sys.executable, "-m", "ocrft", *args], cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=True)
    return json.loads((run_dir / "run.json").read_text())["metrics"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=1000)
    parser.add_argument("--fraction", type=float, default=0.2)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = (args.out or Path(tempfile.mkdtemp(prefix="bench_active_"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    splits, lines, cers = read_pool(args, out)
    unsure = [1 - ln.certainty for ln in lines]
    print(f"pool CER under the base: {fmean(cers):.4f}; Spearman rho against the line's CER:")
    print(f"  1 - certainty (ranking)   {spearman(unsure, cers):+.3f}")
    print(f"  -mean_logprob             {spearman([-ln.mean_logprob for ln in lines], cers):+.3f}")
    print(f"  -min_logprob              {spearman([-ln.min_logprob for ln in lines], cers):+.3f}")
    if args.samples:
        print(f"  disagreement ({args.samples} samples)    {spearman([ln.disagreement for ln in lines], cers):+.3f}")
    k = math.ceil(args.fraction * len(lines))
    pool = splits["train"]
    order = sorted(range(len(lines)), key=lambda i: (lines[i].certainty, lines[i].min_logprob))
    files = {name: write_json_ocr(splits[name], out / f"{name}.json") for name in ("val", "test")}
    least = write_json_ocr([pool[i] for i in order[:k]], out / "train_least_sure.json")
    print(f"training on {k} lines ({args.fraction:.0%} of the pool): least sure (pool CER "
          f"{fmean(cers[i] for i in order[:k]):.4f}) vs random, {args.steps} steps each", flush=True)  # fmt: skip
    results: dict[str, list[float]] = {"least sure": [], "random": []}
    before = None
    for seed in args.seeds:
        picked = random.Random(seed).sample(range(len(pool)), k)
        chosen = {"least sure": least, "random": write_json_ocr([pool[i] for i in picked], out / f"train_random_{seed}.json")}
        for name, train_file in chosen.items():
            started = time.monotonic()
            metrics = train(train_file, files=files, seed=seed, steps=args.steps, run_dir=out / f"{name.replace(' ', '_')}_{seed}")
            before = metrics.get("eval_before/cer", before)
            results[name].append(metrics["eval/cer"])
            print(f"  seed {seed} {name:<10} test CER {metrics['eval/cer']:.4f}  ({time.monotonic() - started:.0f} s)",
                  flush=True)  # fmt: skip
    print(f"\ntest CER, demo base before training: {before:.4f}" if before is not None else "")
    print(f"{'selection':<12}" + "".join(f"  seed {s:<3}" for s in args.seeds) + "    mean     std")
    for name, values in results.items():
        print(f"{name:<12}" + "".join(f"  {v:.4f}  " for v in values) + f"  {fmean(values):.4f}  {pstdev(values):.4f}")
    print(f"\nruns and logs: {out}")


if __name__ == "__main__":
    main()
