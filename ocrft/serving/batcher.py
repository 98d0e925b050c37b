"""Concurrent requests into generator batches: a background task collects up to
``max_batch_size`` jobs for ``wait_s`` and calls the generator once, in a worker thread so
the event loop keeps accepting (and refusing) requests meanwhile."""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Any, Protocol

from ocrft.serving.protocol import RequestError

log = logging.getLogger(__name__)


class Generator(Protocol):
    """What task=serve serves (ocrft.evaluation.generation.build_generator returns one).

    ``generate`` gets one image and one prompt per sample and returns one string per
    sample. An optional ``count_tokens(text) -> int`` makes the reported usage exact.
    """

    def generate(self, images: list[Any], prompts: list[str], max_new_tokens: int) -> list[str]: ...


@dataclass
class _Job:
    image: Any
    prompt: str
    max_new_tokens: int
    future: asyncio.Future


def estimate_tokens(text: str) -> int:
    """~4 characters per token: used only when the generator cannot count (image tokens excluded)."""
    return math.ceil(len(text) / 4)


class Batcher:
    """Collects concurrent requests into generator batches; one generate() at a time.

    A job whose future is already done when its batch is about to run (its request timed
    out, or its client hung up, which cancels the awaiting handler and so the future) is
    dropped without being generated.
    """

    def __init__(self, generator: Generator, max_batch_size: int, wait_s: float):
        self.generator = generator
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

    def _generate(self, jobs: list[_Job], max_new_tokens: int) -> list[tuple[str, int, int]]:
        texts = self.generator.generate([j.image for j in jobs], [j.prompt for j in jobs], max_new_tokens)
        if len(texts) != len(jobs):
            raise RuntimeError(f"generator returned {len(texts)} texts for {len(jobs)} prompts")
        log.debug("generated a batch of %d", len(jobs))
        count = getattr(self.generator, "count_tokens", None) or estimate_tokens
        return [(t, count(j.prompt), count(t)) for j, t in zip(jobs, texts)]
