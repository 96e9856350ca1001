"""Dynamic batching of single-fit requests (the way inference servers batch).

Requests that can share a compiled function (same trainable set, optimizer kind,
precision and number of observations) are gathered for up to ``max_wait_ms`` or
``max_batch`` requests, then run as one ``vmap`` of the traced single fit. Batches
are padded to a power of two, so at most ``log2(max_batch) + 1`` executables exist
per key; executables stay warm in a bounded LRU cache. The queue is bounded: a full
queue is refused at once (``QueueFull``) rather than growing without limit.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from jaxfit.config import Config
from jaxfit.fitting import TRACE_LIMIT, compiled_fit, fit_inputs
from jaxfit.problem import initial_params, make_problem, precision, spec_of
from jaxfit.results import fit_result


class QueueFull(Exception):
    """The batcher's queue is at its bound."""


@dataclass
class _Pending:
    config: Config
    key: tuple
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)


def batch_key(config: Config) -> tuple:
    """What forces a compile: requests with equal keys share one batch."""
    return (spec_of(config), config.precision, len(config.data.x))


def _lanes(n: int) -> int:
    return 1 << (n - 1).bit_length()


class FitBatcher:
    """``await batcher.fit(config)`` -> the fit's JSON dict (as ``python -m jaxfit --format json``)."""

    def __init__(
        self, max_batch: int = 64, max_wait_ms: float = 2.0, max_queue: int = 1024, cache_size: int = 32
    ):
        self.max_batch, self.max_wait_s, self.max_queue = max_batch, max_wait_ms / 1000.0, max_queue
        self.cache_size = cache_size
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._held: collections.deque[_Pending] = collections.deque()
        self._executables: collections.OrderedDict[tuple, Any] = collections.OrderedDict()
        self.batches: list[int] = []  # sizes formed (for /metrics)
        self._task: asyncio.Task | None = None

    @property
    def depth(self) -> int:
        return self._queue.qsize() + len(self._held)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()

    async def fit(self, config: Config) -> dict[str, Any]:
        if self.depth >= self.max_queue:
            raise QueueFull
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(config, batch_key(config), future))
        return await future

    async def _next(self, timeout: float | None) -> _Pending | None:
        if self._held:
            return self._held.popleft()
        try:
            return await (
                asyncio.wait_for(self._queue.get(), timeout) if timeout is not None else self._queue.get()
            )
        except TimeoutError:
            return None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._next(None)
            group, others = [first], []
            deadline = time.perf_counter() + self.max_wait_s
            while len(group) < self.max_batch:
                left = deadline - time.perf_counter()
                item = (
                    await self._next(max(left, 0.0))
                    if left > 0
                    else (self._queue.get_nowait() if not self._queue.empty() else None)
                )
                if item is None:
                    break
                (group if item.key == first.key else others).append(item)
            self._held.extend(others)
            self.batches.append(len(group))
            try:
                results = await loop.run_in_executor(None, self._compute, group)
            except Exception as err:  # a bug, not a user error: every caller hears of it
                for p in group:
                    if not p.future.done():
                        p.future.set_exception(err)
                continue
            for p, r in zip(group, results):
                if not p.future.done():
                    p.future.set_result(r)

    def _executable(self, key: tuple, lanes: int, tree: Any) -> Any:
        ek = (key, lanes)
        if ek in self._executables:
            self._executables.move_to_end(ek)
            return self._executables[ek]
        fn = jax.jit(jax.vmap(compiled_fit(key[0], TRACE_LIMIT, tree)))
        self._executables[ek] = fn
        while len(self._executables) > self.cache_size:
            self._executables.popitem(last=False)
        return fn

    def _compute(self, group: list[_Pending]) -> list[dict[str, Any]]:
        config = group[0].config
        with precision(config):
            tree = jax.tree.structure((initial_params(config), make_problem(config)))
            inputs = [fit_inputs(p.config) for p in group]
            lanes = _lanes(len(group))
            inputs += [inputs[-1]] * (lanes - len(group))  # padding lanes: results dropped
            stacked = [np.stack(column) for column in zip(*inputs)]
            outputs = jax.device_get(self._executable(group[0].key, lanes, tree)(*stacked))
        return [
            fit_result(p.config.model_dump(mode="json"), {k: v[i] for k, v in outputs.items()}).to_dict()
            for i, p in enumerate(group)
        ]
