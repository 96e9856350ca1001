"""A chunk's program over the devices: one ``jax.shard_map`` over a one-axis mesh,
each device running its share of the chunk's fits in the layout's way (``blocks`` or
``streamed``, its fits ``vmapped`` or on the ``vector`` lanes) with no collectives."""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec as P

from jaxfit.run.aot import jit, signature
from jaxfit.run.batching import blocks, streamed, vector, vmapped
from jaxfit.run.batching.fits import Chunk, Inputs, Program, Stepping
from jaxfit.run.batching.layout import Layout

AXIS = "fits"


def stepping_of(layout: Layout) -> Stepping:
    """How the layout's fits step: on the vector lanes or a ``vmap`` of one fit's step."""
    return vector if layout.on_lanes else vmapped


def block_share(count: int | jax.Array, layout: Layout) -> int | jax.Array:
    """Fits per device in a call of ``count`` fits (blocks layout): an even split, so
    a short last call keeps every device busy (host ``int`` or traced ``int32``)."""
    count = min(max(count, 0), layout.chunk) if isinstance(count, int) else jnp.clip(count, 0, layout.chunk)
    return (count + layout.devices - 1) // layout.devices


def mesh_of(devices: Sequence[jax.Device]) -> jax.sharding.Mesh:
    return jax.sharding.Mesh(np.asarray(devices), (AXIS,))


@functools.lru_cache(maxsize=64)  # jaxfit.clear_caches() empties it
def compiled_chunk(program: Program, layout: Layout, devices: tuple[jax.Device, ...]) -> Callable[..., Chunk]:
    """``chunk(start, end, inputs, out) -> Chunk`` for fits ``start .. start+chunk``
    (fits at or past ``end`` take no step), jitted over a mesh of ``devices``. ``out``
    (``chunk_buffers``, or an earlier call's result) is donated: the results are
    written over it, so a batch reuses two sets of output buffers, call after call,
    instead of allocating (and zeroing) new memory for every call."""
    stepping = stepping_of(layout)

    def on_device(start: jax.Array, end: jax.Array, inputs: Inputs, out: Chunk) -> Chunk:
        device = lax.axis_index(AXIS)
        if layout.refill:  # fits dealt round-robin: device d runs start + d + j * devices
            per_device = layout.chunk // layout.devices
            count = jnp.clip((end - start - device + layout.devices - 1) // layout.devices, 0, per_device)
            return streamed.fit_stream(
                stepping,
                program,
                inputs,
                first=start + device,
                stride=layout.devices,
                count=count,
                final=out,
                width=layout.block_size,
                group=min(layout.refill, layout.block_size),
            )
        # the call's fits split evenly: device d runs fits start + d * share + j, j < mine
        share = block_share(end - start, layout)
        mine = jnp.clip(end - start - device * share, 0, share)
        return blocks.run(stepping, program, inputs, layout, start + device * share, mine, out)

    sharded = jax.shard_map(
        on_device,
        mesh=mesh_of(devices),
        in_specs=(P(), P(), P(), P(AXIS)),
        out_specs=P(AXIS),
        check_vma=False,
    )
    return jit(sharded, donate_argnums=3)


_SHAPES: collections.OrderedDict[tuple, Chunk] = collections.OrderedDict()
"""``result_shapes`` by program and inputs' signature (the 64 most recently used)."""


def result_shapes(program: Program, inputs: Inputs) -> Chunk:
    """The shapes and dtypes of one fit's results, traced once per program and inputs'
    signature: a trace costs ~0.2 s, which a batch would pay at every call that finds no
    spare output buffers (any call after another program's)."""
    key = (program, signature((inputs,)))
    if key not in _SHAPES:
        index = jax.ShapeDtypeStruct((1,), jnp.int32)
        _SHAPES[key] = jax.eval_shape(
            lambda inputs, index: blocks.unstepped(vmapped, program, inputs, index), inputs, index
        )
        if len(_SHAPES) > 64:
            _SHAPES.popitem(last=False)
    _SHAPES.move_to_end(key)
    return _SHAPES[key]


def chunk_buffers(program: Program, layout: Layout, devices: Sequence[jax.Device], inputs: Inputs) -> Chunk:
    """Output buffers for one call of ``compiled_chunk`` (zeros, on the devices)."""
    one = result_shapes(program, inputs)
    sharding = jax.sharding.NamedSharding(mesh_of(devices), P(AXIS))
    zeros = jax.tree.map(lambda a: np.zeros((layout.chunk, *a.shape[1:]), a.dtype), one)
    return jax.device_put(zeros, sharding)  # copied, not compiled
