"""Concurrent requests into predictor batches: a background task collects up to
``max_batch_size`` jobs for ``wait_s`` and calls the predictor's ``read`` once, in a worker
thread so the event loop keeps accepting (and refusing) requests meanwhile."""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Any, Protocol

from ocrft.serving.protocol import RequestError

log = logging.getLogger(__name__)


class Reader(Protocol):
    """What task=serve serves: an ocrft.evaluation.predictor.Predictor, of which it needs
    ``read`` (one image and one prompt per sample in, one Generation per sample out). An
    optional ``count_tokens(text) -> int`` makes the reported usage exact.
    """

    def read(self, images: list[Any], prompts: list[str], max_new_tokens: int) -> list[Any]: ...


@dataclass
class _Job:
    image: Any
    prompt: str
    max_new_tokens: int
    future: asyncio.Future


def estimate_tokens(text: str) -> int:
    """~4 characters per token: used only when the predictor cannot count (image tokens excluded)."""
    return math.ceil(len(text) / 4)


class Batcher:
    """Collects concurrent requests into predictor batches; one read() at a time.

    A job whose future is already done when its batch is about to run (its request timed
    out, or its client hung up, which cancels the awaiting handler and so the future) is
    dropped without being generated.
    """

    def __init__(self, predictor: Reader, max_batch_size: int, wait_s: float):
        self.predictor = predictor
        self.max_batch_size = max_batch_size
        self.wait_s = wait_s
        self.queue: asyncio.Queue[_Job] = asyncio.Queue()

    async def submit(self, image: Any, prompt: str, max_new_tokens: int) -> tuple[str, int, int]:
        """(text, prompt tokens, completion tokens) for one request, once its batch ran."""
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Job(image, prompt, max_new_tokens, future))
        return await future

    async def run(self) -> None:
        """Serve the queue until cancelled."""
        while True:
            batch = await self._collect()
            # One generate() per max_new_tokens value: a shared limit would change answers.
            for limit in sorted({j.max_new_tokens for j in batch}):
                # filtered again per group: a job may be cancelled while an earlier group runs
                group = [j for j in batch if j.max_new_tokens == limit and not j.future.done()]
                if group:
                    await self._run_group(group, limit)

    async def _collect(self) -> list[_Job]:
        loop = asyncio.get_running_loop()
        batch = [await self.queue.get()]
        deadline = loop.time() + self.wait_s
        while len(batch) < self.max_batch_size:
            while len(batch) < self.max_batch_size and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            if len(batch) >= self.max_batch_size or loop.time() >= deadline:
                break
            await asyncio.sleep(min(0.002, deadline - loop.time()))
        return batch

    async def _run_group(self, group: list[_Job], limit: int) -> None:
        try:
            # A running batch is not interrupted: a thread cannot be cancelled, and the
            # model's other requests in the batch still want their answers.
            results: list[Any] = await asyncio.to_thread(self._generate, group, limit)
        except Exception as e:  # noqa: BLE001 - reported to every waiting client
            log.exception("generation failed for a batch of %d", len(group))
            message = f"generation failed: {type(e).__name__}"  # details stay in the server log
            results = [RequestError(500, message, "generation_failed") for _ in group]
        for job, result in zip(group, results):
            if job.future.done():  # timed out or hung up while its batch ran
                continue
            if isinstance(result, Exception):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)

    def _generate(self, jobs: list[_Job], max_new_tokens: int) -> list[Any]:
        outputs = self.predictor.read([j.image for j in jobs], [j.prompt for j in jobs], max_new_tokens)
        if len(outputs) != len(jobs):
            raise RuntimeError(f"predictor returned {len(outputs)} readings for {len(jobs)} prompts")
        log.debug("generated a batch of %d", len(jobs))
        count = getattr(self.predictor, "count_tokens", None) or estimate_tokens
        # A reading that failed (a proxied endpoint's request) is that request's error, not an empty answer.
        return [RequestError(502, f"upstream model failed: {o.error}", "upstream_error") if o.error
                else (o.text, count(j.prompt), count(o.text)) for j, o in zip(jobs, outputs)]  # fmt: skip
