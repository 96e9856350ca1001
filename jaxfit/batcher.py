"""Dynamic batching of single-fit requests (the way inference servers batch).

Requests that can share a compiled function (same trainable set, optimizer kind,
precision and number of observations) are gathered for up to ``max_wait_ms`` or
``max_batch`` requests, then run as one ``vmap`` of the traced single fit. Every batch is padded
to ``max_batch`` lanes, so one executable serves each key (no compile stalls while
serving) and a request's lane never changes what the program is; executables stay
warm in a bounded LRU cache, and ``warm_up`` compiles the seed's before the first
request. The queue is bounded: a full queue is refused at once (``QueueFull``)
rather than growing without limit.
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
from jaxfit.problem import precision, spec_of
from jaxfit.results import fit_result


class QueueFull(Exception):
    """The batcher's queue is at its bound."""


@dataclass
class _Pending:
    config: Config
    key: tuple
    future: asyncio.Future
    trace: bool = True
    queued: float = field(default_factory=time.perf_counter)


def batch_key(config: Config) -> tuple:
    """What forces a compile: requests with equal keys share one batch."""
    return (spec_of(config), config.precision, len(config.data.x))


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

    async def fit(self, config: Config, trace: bool = True) -> dict[str, Any]:
        if self.depth >= self.max_queue:
            raise QueueFull
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(config, batch_key(config), future, trace))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = self._held.popleft() if self._held else await self._queue.get()
            if self.max_wait_s > 0 and self.max_batch > 1:
                await asyncio.sleep(self.max_wait_s)  # let concurrent requests arrive
            group, others = [first], []
            pending = list(self._held)
            self._held.clear()
            while len(group) < self.max_batch and (pending or not self._queue.empty()):
                item = pending.pop(0) if pending else self._queue.get_nowait()
                (group if item.key == first.key else others).append(item)
            self._held.extend(others + pending)
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

    def warm_up(self, config: Config) -> None:
        """Compile (and run once) the executable for ``config``'s key."""
        self._compute([_Pending(config, batch_key(config), None)])  # type: ignore[arg-type]

    def _compute(self, group: list[_Pending]) -> list[dict[str, Any]]:
        config = group[0].config
        first, tree = fit_inputs(config)  # the group shares one key, so one tree
        inputs = [first] + [fit_inputs(p.config)[0] for p in group[1:]]
        with precision(config):
            lanes = self.max_batch
            inputs += [inputs[-1]] * (lanes - len(group))  # padding lanes: results dropped
            stacked = [np.stack(column) for column in zip(*inputs)]
            outputs = jax.device_get(self._executable(group[0].key, lanes, tree)(*stacked))
        return [
            fit_result(p.config.model_dump(mode="json"), {k: v[i] for k, v in outputs.items()}).to_dict(
                p.trace
            )
            for i, p in enumerate(group)
        ]
