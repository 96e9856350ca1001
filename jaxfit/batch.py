"""Many fits at once: the one place that batches (``vmap``) and shards (``shard_map``).

A batch of N fits runs as a sequence of fixed-shape *chunks*. A chunk is
``devices x blocks x block_size`` fits, split over a one-axis device mesh with
``jax.shard_map``; each device runs its ``blocks`` one after another (``lax.map``),
each block a ``vmap`` of the single-fit ``while_loop``. So:

- every fit stops on its own, and a block waits only for its own slowest fit;
- no device waits for another: each device's loop is local (no collectives);
- the chunk's shape is fixed, so one compilation serves every batch size; fits are
  generated on the device from their global index (``sweep.draw``), and fits past
  the end of the batch take zero steps.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec as P

from jaxfit import engine
from jaxfit.compiled import executable
from jaxfit.engine import Problem, Spec
from jaxfit.model import Data, Params
from jaxfit.optim import Hyper
from jaxfit.sweep import Plan, Tables, draw

AXIS = "fits"


class Layout(NamedTuple):
    """How a chunk is laid out (static)."""

    devices: int
    blocks: int
    block_size: int

    @property
    def chunk(self) -> int:
        """Fits per compiled call."""
        return self.devices * self.blocks * self.block_size


class Chunk(NamedTuple):
    """Per-fit outputs of one chunk (host or device arrays, leading axis = fits)."""

    params: Params
    """Final values of the trainable parameters."""
    init: dict[str, np.ndarray]
    """Starting values of the varying quantities (see ``Plan.varying``)."""
    loss: np.ndarray
    steps: np.ndarray
    status: np.ndarray


def default_layout(platform: str, devices: int, block_size: int | None = None, trainable: int = 1) -> Layout:
    """Block size and blocks per call that suit ``platform`` and the fits.

    A block runs until its slowest fit stops. Fits of one parameter (a convex
    problem) take similar step counts, so wide blocks amortise the loop best; fits of
    several parameters vary widely, so narrow blocks waste less. Measured on a 2-core
    CPU: one parameter ran fastest at 8192 fits per block, seven at 128. A GPU wants
    far wider blocks to fill its cores.
    """
    if platform == "cpu":
        return Layout(devices, 16, block_size or (8192 if trainable == 1 else 128))
    # on a GPU each loop iteration is a few kernel launches: one wide block per call
    # keeps the launches few (unmeasured here: no GPU was at hand)
    return Layout(devices, 1, block_size or (1 << 22 if trainable == 1 else 1 << 20))


def _fit_block(spec: Spec, plan: Plan, tables: Tables, common: Hyper, data: Data, index: jax.Array) -> Chunk:
    """Fits ``index`` (shape (B,)), fits at ``index < 0`` take no step."""
    drawn = draw(plan, tables, index)
    hyper = common._replace(
        learning_rate=drawn.learning_rate,
        tolerance=drawn.tolerance,
        max_steps=jnp.where(index >= 0, drawn.max_steps, 0),
    )

    def fit_one(params: Params, hyper: Hyper) -> engine.FitState:
        trainable = {n: params[n] for n in spec.trainable}
        frozen = {n: v for n, v in params.items() if n not in spec.trainable}
        problem = Problem(data, frozen, hyper)
        return engine.run(spec, engine.init_state(spec, trainable, problem), problem)

    common_axes = Hyper(
        *(0 if f in ("learning_rate", "tolerance", "max_steps") else None for f in Hyper._fields)
    )
    final = jax.vmap(fit_one, in_axes=(0, common_axes))(drawn.params, hyper)
    varying = {**drawn.params, **drawn._asdict()}
    return Chunk(
        params=final.params,
        init={q: varying[q] for q in plan.varying()},
        loss=final.loss,
        steps=final.step,
        status=final.status.astype(jnp.int8),
    )


@functools.cache
def compiled_chunk(
    spec: Spec, plan: Plan, layout: Layout, devices: tuple[jax.Device, ...]
) -> Callable[..., Chunk]:
    """``chunk(start, end, tables, common, data) -> Chunk`` for fits ``start .. start+chunk``
    (fits at or past ``end`` take no step), jitted over a mesh of ``devices``."""
    per_device = layout.blocks * layout.block_size
    mesh = jax.sharding.Mesh(np.asarray(devices), (AXIS,))

    def on_device(start, end, tables, common, data):
        base = start + lax.axis_index(AXIS) * per_device
        offsets = jnp.arange(layout.block_size, dtype=jnp.int32)

        def block(k: jax.Array) -> Chunk:
            index = base + k * layout.block_size + offsets
            return _fit_block(spec, plan, tables, common, data, jnp.where(index < end, index, -1))

        out = lax.map(block, jnp.arange(layout.blocks, dtype=jnp.int32))
        return jax.tree.map(lambda a: a.reshape((per_device,) + a.shape[2:]), out)

    sharded = jax.shard_map(
        on_device, mesh=mesh, in_specs=(P(), P(), P(), P(), P()), out_specs=P(AXIS), check_vma=False
    )
    return jax.jit(sharded)


class Timing(NamedTuple):
    compile_s: float
    run_s: float


def run_chunks(
    spec: Spec,
    plan: Plan,
    tables: Tables,
    common: Hyper,
    data: Data,
    layout: Layout,
    devices: Sequence[jax.Device],
    ranges: Sequence[tuple[int, int]],
    on_chunk: Callable[[int, Chunk], None],
    timing: list[Timing] | None = None,
) -> None:
    """Run fits ``[lo, hi)`` for each range, in chunks; ``on_chunk(first_index, host_chunk)``
    receives each chunk (trimmed to its range) as soon as it is on the host.

    Up to two chunks are in flight, so copying one to the host overlaps running the next.
    """
    args = (tables, common, data)
    i32 = np.int32
    fn = compiled_chunk(spec, plan, layout, tuple(devices))
    compiled, compile_s = executable(fn, (spec, plan, layout, tuple(devices)), (i32(0), i32(0), *args))
    t1 = time.perf_counter()

    def starts() -> Iterator[tuple[int, int]]:
        for lo, hi in ranges:
            for s in range(lo, hi, layout.chunk):
                yield s, min(s + layout.chunk, hi)

    pending: list[tuple[int, int, Chunk]] = []

    def flush() -> None:
        s, e, out = pending.pop(0)
        host = jax.tree.map(lambda a: np.asarray(a)[: e - s], jax.device_get(out))
        on_chunk(s, host)

    for s, e in starts():
        pending.append((s, e, compiled(i32(s), i32(e), *args)))
        if len(pending) > 1:
            flush()
    while pending:
        flush()
    if timing is not None:
        timing.append(Timing(compile_s, time.perf_counter() - t1))
