"""Many fits at once: the one place that batches (``vmap``) and shards (``shard_map``).

A batch of N fits runs as a sequence of fixed-shape *chunks* of
``devices x blocks x block_size`` fits, split over a one-axis device mesh. The
modules, top down:

- ``pipeline``: the host side — a batch's calls of one compiled chunk, its data sets
  sent a window of a fixed number of rows at a time (one compilation serves every
  batch size), results handed on as each call ends while the next one runs.
- ``sharded``: the chunk's program, a ``jax.shard_map`` over the devices (no
  collectives: no device waits for another).
- ``blocks`` and ``streamed``, the layouts, peers: a device's share runs in blocks,
  each until its slowest fit stops; or it streams through lanes that take the next
  fit as soon as theirs stops (``Layout.refill``).
- ``vmapped`` and ``vector``, how a block's fits step, peers behind one small
  interface (``fits.Stepping``: start, step, finish, statistics): a ``vmap`` of the
  engine's single-fit step, or one problem on the vector lanes (``core.lanes``).
  The engine owns the loop body (``engine.start / loop_step / finish``).
- ``fits``: what each fit reads (drawn on the device from its global index,
  ``sweep.draw``) and what it gives (``Chunk``); ``layout``: ``Layout``.

Every fit stops on its own with the same arithmetic in every layout (results are
equal bit for bit), and fits past the end of the batch take no step.
"""

from jaxfit.run.batching.fits import Chunk, Inputs, Program, varying_of, x_shared
from jaxfit.run.batching.layout import Layout, default_layout
from jaxfit.run.batching.pipeline import Timing, run_chunks
from jaxfit.run.batching.sharded import chunk_buffers, compiled_chunk

__all__ = [
    "Chunk",
    "Inputs",
    "Layout",
    "Program",
    "Timing",
    "chunk_buffers",
    "compiled_chunk",
    "default_layout",
    "run_chunks",
    "varying_of",
    "x_shared",
]
