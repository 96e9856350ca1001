"""The blocks layout: a device's share of a call's fits runs in blocks one after
another, each until its slowest fit stops."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxfit.core.status import Status
from jaxfit.run.batching.fits import Chunk, Fits, Inputs, Program, Stepping, stats_of_normal
from jaxfit.run.batching.layout import Layout


def fit_block(stepping: Stepping, program: Program, inputs: Inputs, index: jax.Array) -> Chunk:
    """Fits ``index`` (shape (B,)) stepped together until the last one stops; fits at
    ``index < 0`` take no step."""
    fits = stepping.start(program, inputs, index)
    step = stepping.stepper(program, inputs, fits)
    state = lax.while_loop(lambda s: jnp.any(s.status == Status.RUNNING), step, fits.state)
    return finished(stepping, program, inputs, fits._replace(state=state))


def unstepped(stepping: Stepping, program: Program, inputs: Inputs, index: jax.Array) -> Chunk:
    """``fit_block``'s results with no step taken: its shapes, for a fraction of its
    trace (``sharded.chunk_buffers``)."""
    return finished(stepping, program, inputs, stepping.start(program, inputs, index))


def finished(stepping: Stepping, program: Program, inputs: Inputs, fits: Fits) -> Chunk:
    """The results of ``fits`` as they stand, with their statistics where asked for."""
    chunk = stepping.finish(program, inputs, fits)
    normal = stepping.normal(program, fits)
    if normal is not None:  # what the fits carry: no pass over their data
        return chunk._replace(stats=stats_of_normal(program, normal, stepping.points(program, inputs, fits)))
    return chunk._replace(stats=stepping.stats(program, inputs, fits, chunk.params))


def run(
    stepping: Stepping,
    program: Program,
    inputs: Inputs,
    layout: Layout,
    first: jax.Array,
    count: jax.Array,
    out: Chunk,
) -> Chunk:
    """Fits ``first .. first + count`` (``count`` at most ``blocks * block_size``) in
    ``layout.blocks`` blocks, written over ``out`` from its start."""
    offsets = jnp.arange(layout.block_size, dtype=jnp.int32)

    def block(k: jax.Array, out: Chunk) -> Chunk:
        j = k * layout.block_size + offsets
        done = fit_block(stepping, program, inputs, jnp.where(j < count, first + j, -1))
        at = k * layout.block_size
        return jax.tree.map(lambda buf, v: lax.dynamic_update_slice_in_dim(buf, v, at, 0), out, done)

    return lax.fori_loop(0, layout.blocks, block, out)
