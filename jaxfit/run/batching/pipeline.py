"""The host pipeline: a batch's fits as a sequence of calls of one compiled chunk
(``sharded``), its data sets sent a window at a time, results handed on as each call
ends while the next one runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import PartitionSpec as P

from jaxfit.run.aot import executable, signature
from jaxfit.run.batching.fits import Chunk, Inputs, Program, bounds_per_set, x_shared
from jaxfit.run.batching.layout import Layout
from jaxfit.run.batching.sharded import block_share, chunk_buffers, compiled_chunk, mesh_of

WINDOW_BYTES = 1 << 24
"""Host bytes of per-data-set inputs one call takes (at least ``MIN_ROWS`` data sets,
at most a chunk's): a batch's data sets reach the devices a window at a time, so their
number never enters a program's shapes (one compilation serves every batch size)."""
MIN_ROWS = 1024


def _per_set(inputs: Inputs, model: object) -> Inputs:
    """``inputs`` with True at each leaf that holds a row per data set, else False."""
    flags = jax.tree.map(lambda _: False, inputs)
    if inputs.per_group is None:
        return flags
    data = jax.tree.map(lambda _: True, inputs.data)
    if x_shared(inputs.data, model):
        data = data._replace(x=False)
    bounds = jax.tree.map(lambda _: True, inputs.bounds) if bounds_per_set(inputs) else flags.bounds
    return flags._replace(data=data, starts=jax.tree.map(lambda _: True, inputs.starts), bounds=bounds)


def window_rows(program: Program, inputs: Inputs, layout: Layout) -> int | None:
    """Data sets per call (None: every fit shares one data set): enough for a chunk's
    fits, fewer where their rows would pass ``WINDOW_BYTES`` (the call then runs
    fewer fits)."""
    if inputs.per_group is None:
        return None
    rows = [
        a for a, f in zip(jax.tree.leaves(inputs), jax.tree.leaves(_per_set(inputs, program.spec.model))) if f
    ]
    row_bytes = sum(a.nbytes // max(len(a), 1) for a in map(np.asarray, rows))
    need = -(-layout.chunk // int(inputs.per_group)) + 1  # a chunk may start mid-data set
    return min(need, max(MIN_ROWS, WINDOW_BYTES // max(row_bytes, 1)))


def _rows(a: np.ndarray, first: int, rows: int) -> np.ndarray:
    """Rows ``first .. first + rows`` of ``a``, the last one repeated past its end."""
    part = np.asarray(a)[first : first + rows]
    if len(part) == rows:
        return part
    out = np.empty((rows, *part.shape[1:]), part.dtype)
    out[: len(part)], out[len(part) :] = part, part[-1]
    return out


def calls(
    ranges: Sequence[tuple[int, int]], chunk: int, rows: int | None, per_group: int
) -> Iterator[tuple[int, int]]:
    """``[start, end)`` of each call for fits ``ranges``: at most ``chunk`` fits, and
    (``rows``) only fits of the ``rows`` data sets from the one fit ``start`` reads."""
    for lo, hi in ranges:
        s = lo
        while s < hi:
            e = min(s + chunk, hi)
            if rows is not None:
                e = min(e, (s // per_group + rows) * per_group)
            yield s, e
            s = e


class _Windows:
    """A batch's inputs as the calls take them: what every call shares, on the
    devices once; the per-data-set rows a window of ``rows`` data sets at a time."""

    def __init__(self, program: Program, inputs: Inputs, rows: int | None) -> None:
        self.rows = rows
        self.leaves, self.tree = jax.tree.flatten(inputs)
        self.per_set = jax.tree.leaves(_per_set(inputs, program.spec.model))
        self.fixed = [a for a, f in zip(self.leaves, self.per_set) if not f]
        self.host = inputs if rows is None else self.window(0)
        self.placed: Inputs | None = None

    def window(self, first: int, put: Callable[[list], list] = lambda a: a) -> Inputs:
        """The inputs of a call whose fits read data sets ``first ..`` (``put``: how
        the host rows of that window are placed)."""
        moving = iter(put([_rows(a, first, self.rows) for a, f in zip(self.leaves, self.per_set) if f]))
        kept = iter(self.fixed)
        leaves = [next(moving) if f else next(kept) for f in self.per_set]
        return jax.tree.unflatten(self.tree, leaves)._replace(first=np.int32(first))

    def to(self, devices: Sequence[jax.Device]) -> None:
        """Place what every call shares on ``devices`` (replicated)."""
        self.replicated = jax.sharding.NamedSharding(mesh_of(devices), P())
        self.fixed = jax.device_put(self.fixed, self.replicated)
        if self.rows is None:
            self.placed = jax.tree.unflatten(self.tree, self.fixed)

    def of(self, first_set: int) -> Inputs:
        """The inputs of a call whose first fit reads data set ``first_set``."""
        if self.rows is None:
            return self.placed
        return self.window(first_set, lambda host_rows: jax.device_put(host_rows, self.replicated))


def _shards(a: jax.Array) -> list[np.ndarray]:
    """Each device's part of a chunk output, in device order, as host views (no copy)."""
    parts = sorted(a.addressable_shards, key=lambda sh: sh.index[0].start or 0)
    return [np.asarray(sh.data) for sh in parts]


def _hand_on(out: Chunk, s: int, e: int, layout: Layout, on_chunk: Callable[[int, Chunk], None]) -> None:
    """Hand the results of the call of fits ``[s, e)`` on, as host views."""
    if not layout.refill:  # device d holds fits s + d * share ...: hand them on as they are
        by_device = jax.tree.map(_shards, out, is_leaf=lambda x: isinstance(x, jax.Array))
        share = block_share(e - s, layout)
        for d in range(layout.devices):
            first = s + d * share
            if first < e:
                n = min(share, e - first)
                part = jax.tree.map(
                    lambda parts, d=d, n=n: parts[d][:n], by_device, is_leaf=lambda x: isinstance(x, list)
                )
                on_chunk(first, part)
        return

    def in_order(a: jax.Array) -> np.ndarray:  # streamed: fits dealt round-robin to devices
        parts = _shards(a)
        if len(parts) == 1:
            return parts[0][: e - s]
        whole = np.empty((e - s,) + parts[0].shape[1:], parts[0].dtype)
        for d, part in enumerate(parts):
            whole[d :: layout.devices] = part[: len(whole[d :: layout.devices])]
        return whole

    on_chunk(s, jax.tree.map(in_order, out))


_SPARE: dict[tuple, list[Chunk]] = {}
"""The output buffers the last finished batch left (only the last: device memory is
not held for programs gone by), by program, layout, devices and the inputs' shapes
and dtypes (which fix the outputs'): the next batch of the same program writes into
them (its first calls then touch no new memory)."""


class Timing(NamedTuple):
    compile_s: float
    run_s: float


def run_chunks(
    program: Program,
    inputs: Inputs,
    *,
    layout: Layout,
    devices: Sequence[jax.Device],
    ranges: Sequence[tuple[int, int]],
    on_chunk: Callable[[int, Chunk], None],
    timing: list[Timing] | None = None,
) -> None:
    """Run fits ``[lo, hi)`` for each range, in chunks; ``on_chunk(first_index, host_chunk)``
    receives each chunk (trimmed to its range) as soon as it is on the host.

    Up to two chunks are in flight, so copying one to the host overlaps running the next.
    ``on_chunk``'s arrays are views of the output buffers, which later calls write
    over once no view of them is left (while one is held, JAX gives that call new
    buffers instead).
    """
    i32 = np.int32
    key = (program, layout, tuple(devices))
    rows = window_rows(program, inputs, layout)
    per_group = 1 if rows is None else int(inputs.per_group)
    windows = _Windows(program, inputs, rows)
    spare_key = (key, signature((windows.host,)))
    free = _SPARE.pop(spare_key, [])  # buffers no call is writing into

    def buffers() -> Chunk:
        return free.pop() if free else chunk_buffers(program, layout, devices, windows.host)

    free.append(buffers())  # at least one set, to compile against
    compiled, compile_s = executable(compiled_chunk(*key), key, (i32(0), i32(0), windows.host, free[-1]))
    windows.to(devices)
    t1 = time.perf_counter()
    pending: list[tuple[int, int, Chunk]] = []

    def flush() -> None:
        """Hand the oldest call's results on; its buffers are then free to be written over."""
        s, e, out = pending.pop(0)
        jax.block_until_ready(out)
        _hand_on(out, s, e, layout, on_chunk)
        free.append(out)

    for s, e in calls(ranges, layout.chunk, rows, per_group):
        pending.append((s, e, compiled(i32(s), i32(e), windows.of(s // per_group), buffers())))
        if len(pending) > 1:
            flush()
    while pending:
        flush()
    _SPARE.clear()
    _SPARE[spare_key] = free[-2:]
    if timing is not None:
        timing.append(Timing(compile_s, time.perf_counter() - t1))
