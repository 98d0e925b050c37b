"""An endpoint as a Predictor: a data set read through an endpoint client
(ocrft.evaluation.endpoint), resumably.

Reliability contract of :func:`evaluate_endpoint`: every finished sample is appended to a
JSONL checkpoint (``ocrft.evaluation.checkpoint``) and fsync'd before the next one is counted, so a
killed run loses at most the requests in flight; re-running with the same checkpoint never
re-sends a finished sample and retries the failed ones.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Sequence

from ocrft.data.record import DataError, Record
from ocrft.evaluation.checkpoint import Checkpoint
from ocrft.evaluation.endpoint import Completion, EndpointClient, build_client, load_provider, no_usage
from ocrft.evaluation.generation import Generation
from ocrft.evaluation.predictor import Report

log = logging.getLogger(__name__)

def _transcribe_record(client: EndpointClient, record: Record, *, prompt: str, system: Optional[str]) -> dict:
    try:
        c = client.transcribe(record.image, record.prompt or prompt, system)
    except (DataError, OSError) as e:  # an unreadable image fails its sample, not the run
        c = Completion("", no_usage(), latency_s=0.0, retries=0, error=f"{type(e).__name__}: {e}")
    return {
        "id": record.id,
        "image_path": str(record.image),
        "label": record.text,
        "prediction": c.text,
        "error": c.error,
        "usage": c.usage,
        "latency_s": round(c.latency_s, 3),
        "retries": c.retries,
    }


def _sample_cer() -> Optional[Any]:
    """``f(prediction, label) -> CER`` of one sample (raw text) from ocrft.evaluation.metrics, or None
    where that module is missing; only the progress bar uses it."""
    try:
        from ocrft.evaluation.metrics import score_sample
    except ImportError:
        return None
    return lambda prediction, label: score_sample(prediction, label)["cer"]


def evaluate_endpoint(
    records: Sequence[Record],
    client: EndpointClient,
    *,
    prompt: str,
    system: Optional[str] = None,
    workers: int,
    checkpoint_path: Path,
    save_interval: int = 0,
    limit: Optional[int] = None,
    progress: bool = True,
) -> list[dict]:
    """Transcribe ``records`` through ``client`` with ``workers`` concurrent requests.

    Each finished sample is appended to ``checkpoint_path`` at once; every
    ``save_interval`` samples (and at the end) the file is compacted atomically. Calling
    again with the same checkpoint resumes: finished samples (by record id) are not sent
    again, failed ones (``error`` set) are.

    Returns:
        One row per record, in the records' order: ``id, image_path, label, prediction,
        error, usage{prompt_tokens, completion_tokens}, latency_s, retries``.
    """
    from concurrent.futures import ThreadPoolExecutor, as_completed

    from tqdm import tqdm

    records = list(records)[:limit] if limit is not None else list(records)
    if len({r.id for r in records}) != len(records):
        raise DataError("record ids must be unique: the checkpoint is keyed by id")
    ckpt = Checkpoint(checkpoint_path)
    todo = [r for r in records if r.id not in ckpt.rows or ckpt.rows[r.id].get("error")]
    log.info("endpoint %s: %d samples, %d already done (%s), %d to send with %d workers",
             client.model, len(records), len(records) - len(todo), checkpoint_path, len(todo), workers)
    cer = _sample_cer()
    # Running mean CER for the bar, updated per sample (a corpus re-score per sample is quadratic).
    scored = [ckpt.rows[r.id] for r in records if r.id in ckpt.rows and not ckpt.rows[r.id].get("error")] if cer else []
    cer_sum, cer_n = sum(cer(r["prediction"], r["label"]) for r in scored) if cer else 0.0, len(scored)
    failed = sent = 0
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="endpoint")
    bar = tqdm(total=len(records), initial=len(records) - len(todo), disable=not progress, desc="endpoint")
    try:
        futures = [pool.submit(_transcribe_record, client, r, prompt=prompt, system=system) for r in todo]
        for future in as_completed(futures):
            row = future.result()
            ckpt.append(row)
            sent += 1
            failed += bool(row["error"])
            if save_interval and sent % save_interval == 0:
                ckpt.compact()
            postfix: dict[str, Any] = {"failed": failed}
            if cer is not None and not row["error"]:
                cer_sum, cer_n = cer_sum + cer(row["prediction"], row["label"]), cer_n + 1
            if cer_n:
                postfix["mean_cer"] = f"{cer_sum / cer_n:.4f}"
            bar.set_postfix(postfix, refresh=False)
            bar.update(1)
    except BaseException:
        client.close()  # in-flight samples give up at their next retry instead of going on
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        ckpt.close()  # compacts: one line per sample
    log.info("endpoint %s: %d sent, %d failed", client.model, sent, failed)
    return [ckpt.rows[r.id] for r in records]


def sum_usage(rows: Sequence[dict]) -> dict[str, int]:
    """Total tokens over ``rows``, and how many rows lack usage (their tokens are unknown)."""
    totals = {"prompt_tokens": 0, "completion_tokens": 0, "rows_without_usage": 0}
    for row in rows:
        usage = row.get("usage") or {}
        if usage.get("prompt_tokens") is None or usage.get("completion_tokens") is None:
            totals["rows_without_usage"] += 1
        totals["prompt_tokens"] += usage.get("prompt_tokens") or 0
        totals["completion_tokens"] += usage.get("completion_tokens") or 0
    return totals


def estimate_cost(usage_totals: dict, pricing: dict, model: str) -> Optional[float]:
    """USD for ``usage_totals`` at ``pricing[model]`` (USD per 1M input/output tokens);
    None when the model has no price (self-hosted, or not in the provider's table)."""
    price = pricing.get(model)
    if not price:
        return None
    return (usage_totals["prompt_tokens"] * price["input"] + usage_totals["completion_tokens"] * price["output"]) / 1e6


def endpoint_metrics(rows: Sequence[dict], pricing: dict, model: str) -> dict[str, float]:
    """Flat numeric metrics of an endpoint evaluation (task=eval prefixes them ``eval/``)."""
    totals = sum_usage(rows)
    latencies = [r["latency_s"] for r in rows if not r.get("error")]
    # Failed samples are counted by scoring (num_errors); these say what the requests cost.
    metrics = {
        "request_retries": float(sum(r.get("retries", 0) for r in rows)),
        "prompt_tokens": float(totals["prompt_tokens"]),
        "completion_tokens": float(totals["completion_tokens"]),
        "samples_without_usage": float(totals["rows_without_usage"]),
        "latency_s_mean": sum(latencies) / len(latencies) if latencies else 0.0,
    }
    cost = estimate_cost(totals, pricing, model)
    if cost is not None:
        metrics["cost_usd"] = cost
    return metrics


def served_model_id(client: EndpointClient) -> Optional[str]:
    """The one model a server lists at ``GET <base>/models`` (what task=serve answers as), or None."""
    ids = client.model_ids()
    return ids[0] if len(ids) == 1 and isinstance(ids[0], str) else None


def as_generation(row: dict) -> Generation:
    """An endpoint checkpoint row as the Generation every predictor returns."""
    stats = {k: row.get(k) for k in ("usage", "latency_s", "retries")}
    return Generation(row["prediction"], error=row.get("error"), stats=stats)


class EndpointPredictor:
    """An OpenAI-compatible endpoint (``model=endpoint``, or a cascade's fallback).

    ``predict`` sends ``workers`` concurrent requests and checkpoints every answer into
    ``checkpoint`` (:func:`evaluate_endpoint`: a re-run re-sends only the failed and the
    unsent); ``read`` answers one batch of in-memory images (task=serve, a cascade's batch).

    Args:
        endpoint: the endpoint's config section (``cfg.model`` or ``cfg.cascade.fallback``):
            provider, base_url, remote_model, api_key_env, ...
        model_cfg: what results name the model after (default: ``endpoint``).
        client: an already built client (default: built from ``endpoint``).
    """

    reads_images = True

    def __init__(self, endpoint: Any, *, prompt: str, system: Optional[str], workers: int, checkpoint: Path,
                 save_interval: int = 0, model_cfg: Any = None, client: Optional[EndpointClient] = None):  # fmt: skip
        self.provider = load_provider(endpoint.provider or "ocrft")
        self.client = client or build_client(endpoint)  # a missing key fails here, before any request
        if client is None and self.provider.name == "ocrft" and not endpoint.remote_model:
            # task=serve answers under any name: send, and record, the one it serves
            self.client.model = served_model_id(self.client) or self.client.model
        self.prompt, self.system, self.workers = prompt, system, max(1, workers)
        self.checkpoint, self.save_interval = Path(checkpoint), save_interval
        self.model_cfg = model_cfg if model_cfg is not None else endpoint

    @classmethod
    def from_config(cls, cfg: Any, *, task: str, run_dir: Optional[Path] = None, tracker: Any = None) -> "EndpointPredictor":
        folder = Path(run_dir) if run_dir is not None else Path(".")
        name = "endpoint_checkpoint.jsonl" if task == "eval" else f"endpoint_{task}_checkpoint.jsonl"
        return cls(cfg.model, prompt=cfg.prompt.text, system=cfg.prompt.system, workers=cfg.eval.workers,
                   checkpoint=folder / name, save_interval=cfg.eval.save_interval)  # fmt: skip

    @property
    def info(self) -> dict:
        """Who answers and at what price (a cascade's summary and costs)."""
        return {"provider": self.provider.name, "url": self.client.url, "model": self.client.model,
                "pricing": self.provider.pricing, "pricing_as_of": self.provider.pricing_as_of}  # fmt: skip

    def predict(self, records: Sequence[Record], on_batch: Optional[Any] = None) -> list[Generation]:
        if not records:
            return []
        rows = evaluate_endpoint(records, self.client, prompt=self.prompt, system=self.system, workers=self.workers,
                                 checkpoint_path=self.checkpoint, save_interval=self.save_interval)  # fmt: skip
        outputs = [as_generation(row) for row in rows]
        if on_batch is not None:
            on_batch(list(range(len(outputs))), outputs)
        return outputs

    def read(self, images: Sequence[Any], prompts: Sequence[str], max_new_tokens: Optional[int] = None) -> list[Generation]:
        from concurrent.futures import ThreadPoolExecutor

        def one(i: int) -> Generation:
            c = self.client.transcribe(images[i], prompts[i], self.system)
            return Generation(c.text, error=c.error, stats={"usage": c.usage, "latency_s": c.latency_s, "retries": c.retries})

        with ThreadPoolExecutor(max_workers=min(self.workers, max(1, len(images))), thread_name_prefix="endpoint") as pool:
            return list(pool.map(one, range(len(images))))

    def describe(self) -> dict:
        from ocrft.provenance import describe_model

        return describe_model(self.model_cfg, provider=self.provider.name, endpoint=self.client.url,
                              remote_model=self.client.model)  # fmt: skip

    def report(self, outputs: Sequence[Generation]) -> Report:
        rows = [{**g.stats, "error": g.error} for g in outputs]
        usage = endpoint_metrics(rows, self.provider.pricing, self.client.model)
        if "cost_usd" in usage:
            log.info("estimated cost: %.4f USD (list prices as of %s; images billed as input tokens)",
                     usage["cost_usd"], self.provider.pricing_as_of)
        extra = {"endpoint": {"provider": self.provider.name, "url": self.client.url, "model": self.client.model,
                              "stream": self.client.stream, "pricing_as_of": self.provider.pricing_as_of, **usage}}
        return Report(metrics=usage, extra=extra, paths={"endpoint_checkpoint": str(self.checkpoint)})

    def close(self) -> None:
        self.client.close()
