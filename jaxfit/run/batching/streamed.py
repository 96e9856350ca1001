"""The streamed layout: a device's fits flow through a fixed number of lanes that
step together; whenever enough lanes have stopped, they write their fits out and take
the next ones, so no lane waits for a slow fit (for fits whose step counts vary
widely)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from jaxfit.core.engine import Carry
from jaxfit.core.model import Params
from jaxfit.core.stats import Stats
from jaxfit.core.status import Status
from jaxfit.run.batching.fits import Chunk, Fits, Inputs, Program, Stepping, stats_of_normal


def fit_stream(
    stepping: Stepping,
    program: Program,
    inputs: Inputs,
    *,
    first: jax.Array,
    stride: int,
    count: jax.Array,
    final: Chunk,
    width: int,
    group: int,
) -> Chunk:
    """Fits ``first + j * stride`` for ``j < count`` streamed through ``width`` lanes,
    written to slot ``j`` of ``final`` (``count`` at most its length), which is
    returned. All lanes step together until ``group`` of them have stopped; those
    write their fits out and start the next ``group`` fits; and so on. A fit's
    arithmetic is the same as in a block (``blocks.fit_block``), so is its result, bit
    for bit. The statistics of every fit follow at the end: from the normal equations
    that finished fits leave (``Stepping.normal``), else in one pass over ``final``."""

    def index(j: jax.Array) -> jax.Array:
        return first + j * stride

    # lanes start idle (no fit), fill `group` at a time: one place starts fits (a small program)
    shapes = jax.eval_shape(lambda index: stepping.start(program, inputs, index), jnp.zeros(width, jnp.int32))
    current = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    current = current._replace(state=current.state._replace(status=jnp.full(width, Status.PADDING)))
    fit = jnp.full(width, -1, jnp.int32)  # which of this device's fits each lane holds
    slots = final.loss.shape[0]
    # each finished fit's normal equations and real points, where its state carries them
    normal = stepping.normal(program, current)
    kept = (
        None
        if normal is None
        else (jnp.zeros((len(normal), slots), normal.dtype), jnp.zeros(slots, jnp.int32))
    )

    def run_until_idle(current: Fits, enough: jax.Array) -> Fits:
        """Step until ``enough`` lanes are idle, or none is running."""

        def more(state: Carry) -> jax.Array:
            running = state.status == Status.RUNNING
            return jnp.any(running) & (jnp.sum(~running, dtype=jnp.int32) < enough)

        step = stepping.stepper(program, inputs, current)
        return current._replace(state=lax.while_loop(more, step, current.state))

    def round_(carry: tuple) -> tuple:
        current, fit, taken, final, kept = carry
        # while fits wait, refill every `group` idle lanes; then run the last ones out
        current = run_until_idle(current, jnp.where(taken < count, group, width + 1))
        idle = current.state.status != Status.RUNNING
        done = idle & (fit >= 0)
        slot = jnp.where(done, fit, slots)  # out of range: dropped
        finished = stepping.finish(program, inputs, current)
        final = jax.tree.map(lambda buf, v: buf.at[slot].set(v, mode="drop"), final, finished)
        if kept is not None:
            left = (stepping.normal(program, current), stepping.points(program, inputs, current))
            kept = jax.tree.map(lambda buf, v: buf.at[..., slot].set(v, mode="drop"), kept, left)
        fit = jnp.where(done, -1, fit)
        # the next fits go to the first `group` idle lanes
        target = jnp.nonzero(idle, size=group, fill_value=width)[0].astype(jnp.int32)
        following = taken + jnp.arange(group, dtype=jnp.int32)
        starts = (target < width) & (following < count)
        target = jnp.where(starts, target, width)  # out of range: dropped
        started = stepping.start(program, inputs, jnp.where(starts, index(following), -1))
        current = stepping.place(current, target, started)
        fit = fit.at[target].set(following, mode="drop")
        return current, fit, taken + jnp.sum(starts, dtype=jnp.int32), final, kept

    _, _, _, fits, kept = lax.while_loop(
        lambda carry: jnp.any(carry[1] >= 0) | (carry[2] < count),
        round_,
        (current, fit, jnp.zeros((), jnp.int32), final._replace(stats=None), kept),
    )
    if program.stats is None:
        return fits
    if kept is not None:
        return fits._replace(stats=stats_of_normal(program, *kept))
    return fits._replace(stats=_stats(stepping, program, inputs, index, width, count, fits.params))


def _stats(
    stepping: Stepping,
    program: Program,
    inputs: Inputs,
    index: Callable[[jax.Array], jax.Array],
    width: int,
    count: jax.Array,
    params: Params,
) -> Stats:
    """The statistics of the filled slots of ``params``, ``width`` at a time (no pass
    over empty slots)."""
    slots = jax.tree.leaves(params)[0].shape[0]

    def stats_of(j: jax.Array, params: Params) -> Stats:
        drawn = stepping.drawn(program, inputs, jnp.where(j < count, index(j), -1))
        return stepping.stats(program, inputs, drawn, params)

    offsets = jnp.arange(width, dtype=jnp.int32)
    shapes = jax.eval_shape(stats_of, jnp.zeros(slots, jnp.int32), params)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def block(b: jax.Array, stats: Stats) -> Stats:
        at = jnp.minimum(b * width, slots - width)  # the last block may overlap the one before
        part = stats_of(at + offsets, jax.tree.map(lambda a: lax.dynamic_slice_in_dim(a, at, width), params))
        return jax.tree.map(lambda buf, v: lax.dynamic_update_slice_in_dim(buf, v, at, 0), stats, part)

    blocks = (jnp.minimum(count, slots) + width - 1) // width
    return lax.fori_loop(0, blocks, block, zeros)
