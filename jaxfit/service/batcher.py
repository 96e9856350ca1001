"""Dynamic batching of single-fit requests (the way inference servers batch).

Requests that can share a compiled function (same trainable set, optimizer kind,
precision and number of observations) are gathered until ``max_batch`` are waiting
or the oldest has waited ``max_wait_ms``, then run as one compiled batch of traced
fits (``compiled_fit_many``: fit ``i`` equals a solo fit). Every batch is padded
to ``max_batch`` lanes, so one executable serves each key (no compile stalls while
serving) and a request's lane never changes what the program is; executables stay
warm in a bounded LRU cache, and ``warm_up`` compiles the seed's before the first
request. The queue is bounded: a full queue is refused at once (``QueueFull``)
rather than growing without limit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import jax
import orjson

from jaxfit.output.results import fit_result
from jaxfit.plan.plans import FitPlan
from jaxfit.run.single import TRACE_LIMIT, compiled_fit_many, fit_inputs_many


class QueueFull(Exception):
    """The batcher's queue is at its bound."""


@dataclass
class _Pending:
    plan: FitPlan
    key: tuple
    future: asyncio.Future
    trace: bool = True
    queued: float = field(default_factory=time.perf_counter)


def batch_key(plan: FitPlan) -> tuple:
    """What forces a compile (the ``Spec``, precision, number of observations, what
    the statistics compute, whether the data are weighted): requests with equal keys
    share one batch."""
    data = plan.problem.data
    return (plan.spec, plan.precision, len(data.y), plan.stats, data.sigma is not None)


class FitBatcher:
    """``await batcher.fit(plan)`` -> the fit's result as JSON (as ``python -m jaxfit --format json``)."""

    def __init__(
        self,
        max_batch: int = 64,
        max_wait_ms: float = 2.0,
        max_queue: int = 1024,
        cache_size: int = 32,
        timeout_s: float = 30.0,
    ):
        self.max_batch, self.max_wait_s, self.max_queue = max_batch, max_wait_ms / 1000.0, max_queue
        self.cache_size, self.timeout_s = cache_size, timeout_s
        # requests in arrival order, so also in deadline order: one timer serves them all
        self._by_deadline: collections.deque[_Pending] = collections.deque()
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._held: collections.deque[_Pending] = collections.deque()
        self._executables: collections.OrderedDict[tuple, Any] = collections.OrderedDict()
        self.batch_count = self.batch_fits = 0  # batches formed and fits in them (for /metrics)
        self._full = asyncio.Event()  # max_batch requests are waiting
        self._tasks: list[asyncio.Task] = []

    @property
    def depth(self) -> int:
        return self._queue.qsize() + len(self._held)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run()), loop.create_task(self._expire())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def fit(self, plan: FitPlan, trace: bool = True) -> bytes:
        """The fit's JSON; ``QueueFull`` at once when the queue is full, ``TimeoutError``
        when it is not done within ``timeout_s``."""
        if self.depth >= self.max_queue:
            raise QueueFull
        pending = _Pending(plan, batch_key(plan), asyncio.get_running_loop().create_future(), trace)
        self._queue.put_nowait(pending)
        self._by_deadline.append(pending)
        if self.depth >= self.max_batch:
            self._full.set()
        return await pending.future

    async def _expire(self, tick: float = 0.05) -> None:
        """Fail requests older than ``timeout_s`` (checked every ``tick`` seconds)."""
        while True:
            await asyncio.sleep(tick)
            oldest = time.perf_counter() - self.timeout_s
            while self._by_deadline and (
                self._by_deadline[0].future.done() or self._by_deadline[0].queued < oldest
            ):
                pending = self._by_deadline.popleft()
                if not pending.future.done():
                    pending.future.set_exception(TimeoutError())

    async def _gather(self, first: _Pending) -> None:
        """Wait until ``max_batch`` requests are waiting or ``first`` has waited
        ``max_wait_ms`` (under load it has, while the previous batch ran)."""
        deadline = first.queued + self.max_wait_s
        while self.depth + 1 < self.max_batch and (left := deadline - time.perf_counter()) > 0:
            self._full.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), left)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = self._held.popleft() if self._held else await self._queue.get()
            if first.future.done():  # timed out while waiting
                continue
            await self._gather(first)
            group, others = [first], []
            pending = list(self._held)
            self._held.clear()
            while len(group) < self.max_batch and (pending or not self._queue.empty()):
                item = pending.pop(0) if pending else self._queue.get_nowait()
                if not item.future.done():  # timed out while waiting: not worth a lane
                    (group if item.key == first.key else others).append(item)
            self._held.extend(others + pending)
            self.batch_count += 1
            self.batch_fits += len(group)
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

    def _executable(self, key: tuple, tree: Any, inputs: list) -> tuple[Any, float]:
        """The compiled program of ``key`` and the seconds compiling it took now (0.0:
        compiled for an earlier batch)."""
        if key in self._executables:
            self._executables.move_to_end(key)
            return self._executables[key], 0.0
        fn = compiled_fit_many(key[0], TRACE_LIMIT, tree, key[3])  # every batch has max_batch lanes
        t0 = time.perf_counter()
        compiled = fn.lower(*inputs).compile()
        self._executables[key] = compiled
        while len(self._executables) > self.cache_size:
            self._executables.popitem(last=False)
        return compiled, time.perf_counter() - t0

    def warm_up(self, plan: FitPlan) -> None:
        """Compile (and run once) the executable for ``plan``'s key."""
        self._compute([_Pending(plan, batch_key(plan), None)])  # type: ignore[arg-type]

    def _compute(self, group: list[_Pending]) -> list[bytes]:
        lanes = self.max_batch
        plans = [p.plan for p in group]
        plans += [plans[-1]] * (lanes - len(group))  # padding lanes: results dropped
        inputs, tree = fit_inputs_many(plans)
        with jax.enable_x64(plans[0].precision == "float64"):
            executable, compile_s = self._executable(group[0].key, tree, inputs)
            t0 = time.perf_counter()
            outputs = jax.device_get(executable(*inputs))
            run_s = time.perf_counter() - t0  # the batch's: every fit in it waited that long
        return [
            orjson.dumps(  # plain floats; a non-finite loss becomes null
                fit_result(p.plan.facts, {k: v[i] for k, v in outputs.items()}, compile_s, run_s).to_dict(
                    p.trace
                )
            )
            for i, p in enumerate(group)
        ]
