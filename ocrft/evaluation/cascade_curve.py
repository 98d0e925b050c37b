"""cascade.calibrate=true: the CER-versus-cost curve of a cascade over every threshold.

Both models have read every sample once; the curve (ocrft.evaluation.cascade.cascade_curve)
is arithmetic on those two prediction sets. Written as ``cascade_curve.csv``, ``.json`` and a
``.png`` plot, with the cheapest threshold that meets ``cascade.target_cer`` marked.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any, Optional, Sequence

from ocrft.data.record import Record
from ocrft.evaluation import cascade as calc

log = logging.getLogger(__name__)

COLUMNS = ("threshold", "routed_fraction", "cer", "cost_total", "meets_target", "chosen")


def calibrate(
    cfg: Any,
    records: Sequence[Record],
    *,
    local: Sequence[Any],
    confidences: Sequence[float],
    fallback: dict[str, Any],
    info: dict,
    run_dir: Path,
) -> tuple[float, dict[str, float], dict[str, str]]:
    """Compute and write the curve; returns (threshold to route by, metrics, paths).

    ``local``: the local model's Generation per record; ``fallback``: the endpoint's by id.

    The threshold routed by is ``cascade.threshold`` when it is a number; with ``auto`` it is
    the cheapest one meeting ``cascade.target_cer`` or, without a target (or when none meets
    it), the one sending at most ``cascade.max_fallback_fraction`` of these samples.
    """
    labels = [r.text for r in records]
    settings = (cfg.eval.normalization, cfg.eval.cer_unit)
    local_counts = calc.char_counts([g.text for g in local], labels, *settings)
    # a failed fallback request keeps the local text: the curve is what routing could reach
    fb_texts = [fallback[r.id].text if not fallback[r.id].error else g.text for r, g in zip(records, local)]
    fallback_counts = calc.char_counts(fb_texts, labels, *settings)
    costs = [calc.sample_cost(fallback[r.id].stats.get("usage"), info["pricing"], info["model"]) for r in records]
    curve = calc.cascade_curve(confidences, local_counts, fallback_counts, costs)
    target = cfg.cascade.target_cer
    best = calc.cheapest_meeting(curve, target) if target is not None else None
    if cfg.cascade.threshold != "auto":
        threshold = float(cfg.cascade.threshold)
    elif best is not None:
        threshold = best["threshold"]
    else:
        threshold = calc.pick_threshold(list(confidences), cfg.cascade.max_fallback_fraction)
    for point in curve:
        point["meets_target"] = None if target is None else point["cer"] <= target
        point["chosen"] = point is best
    metrics = {"curve_points": float(len(curve))}
    if best is not None:
        metrics.update(calibrated_threshold=best["threshold"], calibrated_cer=best["cer"],
                       calibrated_routed_fraction=best["routed_fraction"])  # fmt: skip
        if best["cost_total"] is not None:
            metrics["calibrated_cost_total"] = best["cost_total"]
    elif target is not None:
        log.warning("cascade: no threshold reaches cascade.target_cer=%s (lowest CER %.4f)", target,
                    min(p["cer"] for p in curve))  # fmt: skip
    paths = write_curve(curve, Path(run_dir), target)
    return threshold, metrics, paths


def curve_csv(curve: Sequence[dict]) -> str:
    """The curve as CSV text, one row per threshold (empty cells for unknown values)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for point in curve:
        writer.writerow({k: "" if point.get(k) is None else point[k] for k in COLUMNS})
    return buf.getvalue()


def write_curve(curve: Sequence[dict], out_dir: Path, target_cer: Optional[float]) -> dict[str, str]:
    """Write ``cascade_curve.csv``, ``.json`` and ``.png``; returns their paths."""
    from ocrft import atomic

    return {
        "cascade_curve_csv": str(atomic.write_text(out_dir / "cascade_curve.csv", curve_csv(curve))),
        "cascade_curve": str(atomic.write_json(out_dir / "cascade_curve.json",
                                               {"target_cer": target_cer, "points": list(curve)})),  # fmt: skip
        "cascade_curve_png": str(atomic.write_bytes(out_dir / "cascade_curve.png", plot_curve(curve, target_cer))),
    }


def plot_curve(curve: Sequence[dict], target_cer: Optional[float]) -> bytes:
    """PNG bytes: CER against cost (or against the routed fraction where the fallback is
    unpriced), the target as a dashed line and the chosen threshold circled."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render to a buffer
    import matplotlib.pyplot as plt

    priced = all(p["cost_total"] is not None for p in curve)
    xs = [p["cost_total"] if priced else p["routed_fraction"] for p in curve]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    try:
        ax.plot(xs, [p["cer"] for p in curve], marker=".", label="cascade")
        if target_cer is not None:
            ax.axhline(target_cer, linestyle="--", color="gray", label=f"target CER {target_cer:g}")
        for x, p in zip(xs, curve):
            if p.get("chosen"):
                ax.scatter([x], [p["cer"]], s=120, facecolors="none", edgecolors="red",
                           label=f"cheapest meeting target (threshold {p['threshold']:.3f})")  # fmt: skip
        ax.set_xlabel("fallback cost (USD)" if priced else "fraction of samples sent to the fallback")
        ax.set_ylabel("CER")
        ax.set_title("cascade: CER versus cost over thresholds")
        ax.legend(loc="best", fontsize="small")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return buf.getvalue()
