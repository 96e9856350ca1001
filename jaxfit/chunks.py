"""Many fits at once: the one place that batches (``vmap``) and shards (``shard_map``).

A batch of N fits runs as a sequence of fixed-shape *chunks* of
``devices x blocks x block_size`` fits, split over a one-axis device mesh with
``jax.shard_map``. On each device, either

- *blocks*: its share of the call's fits (an even split) runs in ``blocks`` one
  after another (``lax.fori_loop``), each a ``vmap`` of the single-fit
  ``while_loop``, waiting for its own slowest fit; or
- *streamed* (``Layout.refill``): its fits flow through ``block_size`` lanes that
  step together; a lane whose fit stops takes the next one, so no lane waits for a
  slow fit (for fits whose step counts vary widely).

Levenberg–Marquardt runs either way *on the vector lanes* (``Layout.on_lanes``,
``core.lanes``): a block's fits as a struct of arrays, stepped by the engine's own
step over the whole block, not by a ``vmap`` of it.

Either way every fit stops on its own with the same arithmetic (results are equal
bit for bit); no device waits for another (each device's loop is local: no
collectives); the chunk's shape is fixed, and a batch's data sets reach a call as a
window of a fixed number of rows (``window_rows``), so one compilation serves every
batch size; fits are generated on the device from their global index
(``sweep.draw``), and fits past the end of the batch take no step. Each call writes its results over
donated output buffers, which a batch leaves to the next batch of its program.
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

from jaxfit.aot import executable, jit, signature
from jaxfit.core import engine, lanes
from jaxfit.core.engine import Problem, Spec
from jaxfit.core.model import Data, Params
from jaxfit.core.optim import Hyper
from jaxfit.core.solvers import solver_of
from jaxfit.core.stats import Stats, StatsSpec, fits_first, statistics
from jaxfit.core.status import Status
from jaxfit.sweep import FIXED, Plan, Tables, draw

AXIS = "fits"


class Layout(NamedTuple):
    """How a chunk is laid out (static)."""

    devices: int
    blocks: int
    block_size: int
    refill: int = 0
    """0: each block of ``block_size`` fits runs until its slowest fit stops. ``k > 0``:
    a device's fits stream through ``block_size`` lanes, and whenever ``k`` lanes
    have stopped they take the next ``k`` fits (lanes do not wait for a slow fit)."""
    on_lanes: bool = False
    """Blocks as a struct of arrays, the fits on the vector lanes (``core.lanes``),
    not a ``vmap`` of the single-fit loop (with ``refill`` 0)."""

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
    stats: Stats | None = None
    """Each fit's statistics at its final parameters (``core.stats``)."""


def default_layout(
    platform: str, devices: int, block_size: int | None = None, trainable: int = 1, optimizer: str = "sgd"
) -> Layout:
    """Block size and blocks per call that suit ``platform`` and the fits.

    On CPU, fits of one parameter (a convex problem) take similar step counts: blocks
    of 16384, each running until its slowest fit stops, amortise the loop best. Fits of
    several parameters vary widely in step count, so they stream through 128 lanes,
    refilled 8 at a time, 8192 fits per device per call; Levenberg–Marquardt's stream
    on the vector lanes (``core.lanes``), 256 lanes refilled 32 at a time (W5 through
    128/256/512/1024 lanes here: 464k/498k/493k/423k fits/s; in blocks of 1024 that
    wait for their slowest fit, 244k). A GPU wants far wider blocks to fill its cores.
    """
    if platform == "cpu":
        if trainable == 1:
            return Layout(devices, 8, block_size or 16384)
        if lanes.suits(optimizer, trainable):
            return Layout(devices, 32, lanes.width(block_size or 256), refill=32, on_lanes=True)
        return Layout(devices, 64, block_size or 128, refill=8)
    # on a GPU each loop iteration is a few kernel launches: one wide block per call
    # keeps the launches few
    if lanes.suits(optimizer, trainable):
        return Layout(devices, 1, lanes.width(block_size or 1 << 20), on_lanes=True)
    return Layout(devices, 1, block_size or (1 << 22 if trainable == 1 else 1 << 20))


class Program(NamedTuple):
    """What a chunk's program is built from (static, hashable): the fit's ``Spec``, the
    batch's ``Plan`` and what its statistics compute."""

    spec: Spec
    plan: Plan
    stats: StatsSpec | None = StatsSpec(covariance=False)
    """None: no statistics pass (``Chunk.stats`` stays None)."""


class Inputs(NamedTuple):
    """The traced inputs every fit of a batch shares."""

    tables: Tables
    """The numbers behind the plan (``sweep.Tables``)."""
    common: Hyper
    """Hyperparameters that are the same for every fit (per-fit ones come from the tables)."""
    data: Data
    """One data set for every fit, or (with ``per_group``) one per group: ``(groups, n)``."""
    per_group: jax.Array | None = None
    """int32: fits per data set when ``data`` has a group axis; fit ``i`` fits data set
    ``i // per_group`` from the starting values of the batch's fit ``i % per_group``."""
    starts: Params | None = None
    """Each data set's own starting values of (some of) the trainable parameters, by
    name, ``(groups,)`` each: they replace the plan's values for that data set's fits."""
    bounds: tuple[Params, Params] | None = None
    """``(lower, upper)`` of ``Spec.bounded``, by name: scalars shared by every fit, or
    ``(groups,)`` each (one pair per data set)."""
    first: jax.Array | None = None
    """int32: the data set the per-data-set rows start at (``run_chunks`` hands a call
    a window of the batch's data sets, ``window_rows`` of them; None: all, from 0)."""


def _group(inputs: Inputs, index: jax.Array) -> jax.Array:
    """The row of the per-data-set inputs that fits ``index`` read (fits at ``index < 0``
    take no step; they read a row in range all the same)."""
    group = jnp.maximum(index, 0) // inputs.per_group
    if inputs.first is None:
        return group
    return jnp.clip(group - inputs.first, 0, jnp.shape(inputs.data.y)[0] - 1)


def _draw_index(inputs: Inputs, index: jax.Array) -> jax.Array:
    """Which of the batch's starting values fits ``index`` take (the same for every group)."""
    if inputs.per_group is None:
        return index
    return jnp.where(index >= 0, index % inputs.per_group, -1)


def x_shared(data: Data, model: object) -> bool:
    """Whether data sets stacked along a leading axis share one ``x`` (``(n,)``, or
    ``(n, d)`` for a model of ``d`` coordinates), which then is not copied per fit."""
    point = 1 if getattr(model, "dims", 0) else 0
    return jnp.ndim(data.x) == 1 + point and jnp.ndim(data.y) == 2


def _data_of(program: Program, inputs: Inputs, index: jax.Array) -> Data | None:
    """Each fit's own data set (None: every fit shares ``inputs.data``); its ``x`` is
    None where every data set shares it (``x_shared``)."""
    if inputs.per_group is None:
        return None
    group = _group(inputs, index)
    own = jax.tree.map(lambda a: a[group], inputs.data._replace(x=None))
    return own if x_shared(inputs.data, program.spec.model) else own._replace(x=inputs.data.x[group])


_PER_FIT = ("learning_rate", "tolerance", "max_steps")
"""Hyperparameters a batch may vary across fits (the others are ``Inputs.common``)."""


Carry = engine.FitState | engine.LeanState
"""What a batch loop carries of each fit: a ``LeanState`` for ``engine.lean`` specs,
else a ``FitState`` without its step size (``_carried``)."""


class _Lanes(NamedTuple):
    """Fits in progress, one per lane: state and per-fit inputs (leading axis = lanes)."""

    state: Carry
    frozen: Params
    """Frozen values that vary across fits (one per lane); the ones every fit shares
    come from ``_shared_frozen`` and stay unbatched."""
    learning_rate: jax.Array | None
    tolerance: jax.Array | None
    max_steps: jax.Array | None
    """Per-lane hyperparameters, where the batch varies them (None: the one value in
    ``Inputs.common`` serves every lane, unbatched)."""
    data: Data | None
    """Each lane's data set (None: all share ``Inputs.data``)."""
    init: dict[str, jax.Array]
    """Each lane's starting values of the quantities the batch varies (its outputs)."""
    bounds: tuple[Params, Params] | None = None
    """Each lane's bounds (None: all share ``Inputs.bounds``)."""

    def problem_args(self, program: Program, inputs: Inputs) -> tuple[tuple, tuple]:
        """``(frozen, shared frozen, hyper, data, bounds)`` of the lanes' problems and
        their ``vmap`` axes."""
        per_lane = {f: getattr(self, f) for f in _PER_FIT if getattr(self, f) is not None}
        hyper = inputs.common._replace(**per_lane)
        hyper_axes = Hyper(*(0 if f in per_lane else None for f in Hyper._fields))
        shared = self.data is None
        data = inputs.data if shared else self.data
        data_axes = None if shared else Data(None if self.data.x is None else 0, 0, 0, 0)
        if not shared and self.data.x is None:
            data = data._replace(x=inputs.data.x)
        common = _shared_frozen(program, inputs.tables)
        bounds = inputs.bounds if self.bounds is None else self.bounds
        args = (self.frozen, common, hyper, data, bounds)
        return args, (0, None, hyper_axes, data_axes, None if self.bounds is None else 0)


def _shared_frozen(program: Program, tables: Tables) -> Params:
    """Frozen parameters whose value is the same for every fit, as scalars."""
    plan = program.plan
    return {
        n: tables.coef[q, 0]
        for q, (n, kind) in enumerate(zip(plan.names, plan.kinds))
        if kind == FIXED and n not in program.spec.trainable
    }


def _problem(frozen: Params, common: Params, hyper: Hyper, data: Data, bounds: tuple | None) -> Problem:
    return Problem(data, {**common, **frozen}, hyper, bounds)


def varying_of(program: Program, inputs: Inputs) -> tuple[str, ...]:
    """The quantities that differ between fits (each fit's starting value of them is an
    output): the plan's varying ones and the parameters with a start per data set."""
    varying = program.plan.varying()
    return varying + tuple(n for n in inputs.starts or {} if n not in varying)


def _lanes_of(program: Program, inputs: Inputs, index: jax.Array) -> tuple[_Lanes, Params]:
    """The per-fit inputs of fits ``index`` (shape (B,); no state yet) and their
    starting trainable values."""
    spec = program.spec
    drawn = draw(program.plan, inputs.tables, _draw_index(inputs, index))
    if inputs.starts is not None:
        group = _group(inputs, index)
        drawn = drawn._replace(params={**drawn.params, **{n: v[group] for n, v in inputs.starts.items()}})
    common = _shared_frozen(program, inputs.tables)
    frozen = {n: v for n, v in drawn.params.items() if n not in spec.trainable and n not in common}
    varies = set(program.plan.varying())
    per_fit = {f: getattr(drawn, f) if f in varies else None for f in _PER_FIT}
    everything = {**drawn.params, **drawn._asdict()}
    init = {q: everything[q] for q in varying_of(program, inputs)}
    bounds = None
    if _bounds_per_set(inputs):
        bounds = jax.tree.map(lambda a: a[_group(inputs, index)], inputs.bounds)
    lanes = _Lanes(None, frozen, **per_fit, data=_data_of(program, inputs, index), init=init, bounds=bounds)
    return lanes, {n: drawn.params[n] for n in spec.trainable}


def _bounds_per_set(inputs: Inputs) -> bool:
    return inputs.bounds is not None and jnp.ndim(jax.tree.leaves(inputs.bounds)[0]) > 0


def _with_stats(program: Program, inputs: Inputs, lanes: _Lanes, chunk: Chunk) -> Chunk:
    """``chunk`` with the statistics of each fit at its final parameters (``lanes``: the
    fits' per-fit inputs); unchanged when the program computes none."""
    if program.stats is None:
        return chunk
    (frozen, common, hyper, data, _), (frozen_axis, _, _, data_axis, _) = lanes.problem_args(program, inputs)

    def one(params: Params, frozen: Params, data: Data) -> Stats:
        spec, f_scale = program.spec, hyper.f_scale
        frozen = {**common, **frozen}
        return statistics(spec.model, spec.trainable, params, frozen, data, program.stats, spec.loss, f_scale)

    stats = jax.vmap(one, in_axes=(0, frozen_axis, data_axis))(chunk.params, frozen, data)
    return chunk._replace(stats=_stored(stats))


def _start(program: Program, inputs: Inputs, index: jax.Array) -> _Lanes:
    """Initial states of fits ``index`` (shape (B,)); fits at ``index < 0`` take no step."""
    spec = program.spec
    fits, trainable = _lanes_of(program, inputs, index)
    begin = engine.begin if engine.lean(spec) else engine.init_state

    def init(params: Params, *problem: object) -> engine.FitState:
        return begin(spec, params, _problem(*problem))

    args, axes = fits.problem_args(program, inputs)
    state = _admitted(spec, fits.data, index, jax.vmap(init, in_axes=(0, *axes))(trainable, *args))
    return fits._replace(state=state if engine.lean(spec) else _carried(spec, state))


def _admitted(spec: Spec, data: Data | None, index: jax.Array, state: Carry) -> Carry:
    """``state`` with no step for fits past the end of the batch (``index < 0``) nor
    for data sets (``data``: each fit's own, or None) with fewer real points than
    parameters."""
    status = jnp.where(index >= 0, state.status, Status.PADDING)
    if data is not None and data.mask is not None:
        real = jnp.sum(data.mask, axis=-1, dtype=jnp.int32)
        status = jnp.where(real < len(spec.trainable), Status.TOO_FEW_POINTS, status)
    return state._replace(status=status)


def _carried(spec: Spec, state: engine.FitState) -> engine.FitState:
    """What a batch loop keeps of a full state: not the step size (only a trace reads
    it), nor the gradient for a solver that needs none (Levenberg–Marquardt then
    evaluates only the loss of its trials: no reverse pass)."""
    keep_grad = solver_of(spec.optimizer).needs_gradient
    return state._replace(step_size=None, grad=state.grad if keep_grad else None)


def _step(spec: Spec, state: Carry, problem: Problem) -> Carry:
    """One step of a batch loop, which carries only what the next step needs: no step
    size (only the trace reads it), and for gradient methods no loss or gradient
    (``engine.advance``; ``_chunk`` evaluates the last ones)."""
    if engine.lean(spec):
        return engine.advance(spec, state, problem)
    return _carried(spec, engine.step(spec, state, problem))


def _chunk(program: Program, inputs: Inputs, lanes: _Lanes) -> Chunk:
    """What a chunk keeps of each lane's fit (its starting values as drawn at its start)."""
    state = lanes.state
    if engine.lean(program.spec):
        args, axes = lanes.problem_args(program, inputs)

        def conclude(state: engine.LeanState, *problem: object) -> engine.FitState:
            return engine.conclude(program.spec, state, _problem(*problem))

        state = jax.vmap(conclude, in_axes=(0, *axes))(state, *args)
    return Chunk(state.params, lanes.init, state.loss, state.step, state.status.astype(jnp.int8))


def _fit_block(program: Program, inputs: Inputs, index: jax.Array) -> Chunk:
    """Fits ``index`` (shape (B,)) as one ``vmap`` of the single-fit loop; fits at
    ``index < 0`` take no step."""
    fits = _start(program, inputs, index)

    def run(state: Carry, *problem: object) -> Carry:
        return lax.while_loop(
            lambda s: s.status == Status.RUNNING, lambda s: _step(program.spec, s, _problem(*problem)), state
        )

    args, axes = fits.problem_args(program, inputs)
    fits = fits._replace(state=jax.vmap(run, in_axes=(0, *axes))(fits.state, *args))
    return _with_stats(program, inputs, fits, _chunk(program, inputs, fits))


def _stepper(program: Program, inputs: Inputs, fits: _Lanes, on_lanes: bool) -> Callable[[Carry], Carry]:
    """One step of the fits ``fits`` holds (each running one steps; the others stay
    as they are): a ``vmap`` of the single-fit step, or (``on_lanes``: ``fits`` from
    ``_start_on_lanes``) the engine's step over the whole block at once."""
    if on_lanes:
        spec, problem = _lanes_problem(program, inputs, fits)

        def step_all(state: Carry) -> Carry:
            return _step(spec, state, problem)

    else:
        args, axes = fits.problem_args(program, inputs)

        def one(state: Carry, *problem: object) -> Carry:
            return _step(program.spec, state, _problem(*problem))

        vmapped = jax.vmap(one, in_axes=(0, *axes))

        def step_all(state: Carry) -> Carry:
            return vmapped(state, *args)

    # every leaf of a lanes state is one value per fit, so the same selection serves both
    return lambda state: engine.select_fits(state.status == Status.RUNNING, step_all(state), state)


def _lanes_problem(program: Program, inputs: Inputs, fits: _Lanes) -> tuple[Spec, Problem]:
    """The spec and the one problem of a block of fits on the vector lanes
    (``core.lanes``; ``fits.data``: None, or already with its points first)."""
    (frozen, common, hyper, data, bounds), _ = fits.problem_args(program, inputs)
    model = program.spec.model
    if fits.data is None:  # one data set for every fit
        data = lanes.data_of(data, False, model)
    return program.spec._replace(model=lanes.Lanes(model)), Problem(data, {**common, **frozen}, hyper, bounds)


def _on_lanes_of(program: Program, inputs: Inputs, index: jax.Array) -> tuple[_Lanes, Params, Data | None]:
    """``_lanes_of`` for the vector lanes: each fit's own data with its points first
    (``lanes.data_of``); also that data as drawn (None: every fit shares one)."""
    fits, trainable = _lanes_of(program, inputs, index)
    own = fits.data
    if own is not None:
        fits = fits._replace(data=lanes.data_of(own, True, program.spec.model))
    return fits, trainable, own


def _start_on_lanes(program: Program, inputs: Inputs, index: jax.Array) -> _Lanes:
    """``_start`` for a block on the vector lanes: every state leaf is ``(B,)`` and
    each fit's own data has its points first (``lanes.data_of``)."""
    fits, trainable, own = _on_lanes_of(program, inputs, index)
    spec, problem = _lanes_problem(program, inputs, fits)
    state = _admitted(spec, own, index, engine.init_state(spec, trainable, problem))
    return fits._replace(state=_carried(spec, state))


def _fit_on_lanes(program: Program, inputs: Inputs, index: jax.Array) -> Chunk:
    """Fits ``index`` (shape (B,)) as one block on the vector lanes (``core.lanes``),
    until its last fit stops; fits at ``index < 0`` take no step."""
    fits = _start_on_lanes(program, inputs, index)
    step = _stepper(program, inputs, fits, on_lanes=True)
    fits = fits._replace(
        state=lax.while_loop(lambda s: jnp.any(s.status == Status.RUNNING), step, fits.state)
    )
    chunk = _chunk(program, inputs, fits)
    return chunk._replace(stats=_lanes_stats(program, inputs, fits, chunk.params))


def _lanes_stats(program: Program, inputs: Inputs, fits: _Lanes, params: Params) -> Stats | None:
    """The statistics of the fits of ``fits`` (on the vector lanes) at ``params``,
    with a leading axis of fits as ``_with_stats`` gives them."""
    if program.stats is None:
        return None
    spec, problem = _lanes_problem(program, inputs, fits)
    f_scale = problem.hyper.f_scale
    stats = statistics(
        spec.model, spec.trainable, params, problem.frozen, problem.data, program.stats, spec.loss, f_scale
    )
    return _stored(fits_first(stats))


def _stored(stats: Stats) -> Stats:
    """The statistics a batch keeps: those that follow from χ² and dof alone (the
    reduced χ², AIC, BIC) are left to ``BatchResult`` (never computed on the device)."""
    return stats._replace(redchi=None, aic=None, bic=None)


def _fit_stream(
    program: Program,
    inputs: Inputs,
    *,
    first: jax.Array,
    stride: int,
    count: jax.Array,
    final: Chunk,
    width: int,
    group: int,
    on_lanes: bool = False,
) -> Chunk:
    """Fits ``first + j * stride`` for ``j < count`` streamed through ``width`` lanes,
    written to slot ``j`` of ``final`` (``count`` at most its length), which is
    returned. All lanes step together until ``group`` of them have stopped; those
    write their fits out and start the next ``group`` fits; and so on. A fit's
    arithmetic is the same as in a block (``_fit_block``, or ``_fit_on_lanes`` with
    ``on_lanes``), so is its result, bit for bit. The statistics of every fit follow
    at the end, in one pass over ``final``."""

    def index(j: jax.Array) -> jax.Array:
        return first + j * stride

    # Lanes start idle (stopped, holding no fit) and fill `group` at a time: one
    # place in the program starts fits, which keeps it small to compile.
    start = _start_on_lanes if on_lanes else _start
    shapes = jax.eval_shape(lambda index: start(program, inputs, index), jnp.zeros(width, jnp.int32))
    current = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    current = current._replace(state=current.state._replace(status=jnp.full(width, Status.PADDING)))
    fit = jnp.full(width, -1, jnp.int32)  # which of this device's fits each lane holds
    slots = final.loss.shape[0]

    def run_until_idle(current: _Lanes, enough: jax.Array) -> _Lanes:
        """Step until ``enough`` lanes are idle, or none is running."""

        def more(state: Carry) -> jax.Array:
            running = state.status == Status.RUNNING
            return jnp.any(running) & (jnp.sum(~running, dtype=jnp.int32) < enough)

        step = _stepper(program, inputs, current, on_lanes)
        return current._replace(state=lax.while_loop(more, step, current.state))

    def round_(carry: tuple) -> tuple:
        current, fit, taken, final = carry
        # while fits wait, refill every `group` idle lanes; then run the last ones out
        current = run_until_idle(current, jnp.where(taken < count, group, width + 1))
        idle = current.state.status != Status.RUNNING
        done = idle & (fit >= 0)
        slot = jnp.where(done, fit, slots)  # out of range: dropped
        final = jax.tree.map(
            lambda buf, v: buf.at[slot].set(v, mode="drop"), final, _chunk(program, inputs, current)
        )
        fit = jnp.where(done, -1, fit)
        # the next fits go to the first `group` idle lanes
        target = jnp.nonzero(idle, size=group, fill_value=width)[0].astype(jnp.int32)
        following = taken + jnp.arange(group, dtype=jnp.int32)
        starts = (target < width) & (following < count)
        target = jnp.where(starts, target, width)  # out of range: dropped
        started = start(program, inputs, jnp.where(starts, index(following), -1))
        current = _placed(current, target, started, on_lanes)
        fit = fit.at[target].set(following, mode="drop")
        return current, fit, taken + jnp.sum(starts, dtype=jnp.int32), final

    _, _, _, fits = lax.while_loop(
        lambda carry: jnp.any(carry[1] >= 0) | (carry[2] < count),
        round_,
        (current, fit, jnp.zeros((), jnp.int32), final._replace(stats=None)),
    )
    if program.stats is None:
        return fits

    # the statistics of the filled slots, `width` at a time (no pass over empty slots)
    def stats_of(j: jax.Array, params: Params) -> Stats:
        slots_index = jnp.where(j < count, index(j), -1)
        if on_lanes:
            return _lanes_stats(program, inputs, _on_lanes_of(program, inputs, slots_index)[0], params)
        done = Chunk(params, {}, None, None, None)
        return _with_stats(program, inputs, _lanes_of(program, inputs, slots_index)[0], done).stats

    offsets = jnp.arange(width, dtype=jnp.int32)
    shapes = jax.eval_shape(stats_of, jnp.zeros(slots, jnp.int32), fits.params)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def block(b: jax.Array, stats: Stats) -> Stats:
        at = jnp.minimum(b * width, slots - width)  # the last block may overlap the one before
        params = jax.tree.map(lambda a: lax.dynamic_slice_in_dim(a, at, width), fits.params)
        part = stats_of(at + offsets, params)
        return jax.tree.map(lambda buf, v: lax.dynamic_update_slice_in_dim(buf, v, at, 0), stats, part)

    blocks = (jnp.minimum(count, slots) + width - 1) // width
    return fits._replace(stats=lax.fori_loop(0, blocks, block, zeros))


def _placed(current: _Lanes, target: jax.Array, started: _Lanes, on_lanes: bool) -> _Lanes:
    """``current`` with lanes ``target`` (out of range: dropped) holding ``started``'s
    fits; on the vector lanes a fit's data is a column (its points first)."""

    def put(axis: int) -> Callable[[jax.Array, jax.Array], jax.Array]:
        if axis == 0:
            return lambda buf, v: buf.at[target].set(v, mode="drop")
        return lambda buf, v: buf.at[:, target].set(v, mode="drop")

    placed = jax.tree.map(put(0), current._replace(data=None), started._replace(data=None))
    if current.data is None:
        return placed
    return placed._replace(data=jax.tree.map(put(1 if on_lanes else 0), current.data, started.data))


def block_share(count: int | jax.Array, layout: Layout) -> int | jax.Array:
    """Fits per device in a call of ``count`` fits (blocks layout): an even split, so
    a short last call keeps every device busy (host ``int`` or traced ``int32``)."""
    count = min(max(count, 0), layout.chunk) if isinstance(count, int) else jnp.clip(count, 0, layout.chunk)
    return (count + layout.devices - 1) // layout.devices


@functools.lru_cache(maxsize=64)  # jaxfit.clear_caches() empties it
def compiled_chunk(program: Program, layout: Layout, devices: tuple[jax.Device, ...]) -> Callable[..., Chunk]:
    """``chunk(start, end, inputs, out) -> Chunk`` for fits ``start .. start+chunk``
    (fits at or past ``end`` take no step), jitted over a mesh of ``devices``. ``out``
    (``chunk_buffers``, or an earlier call's result) is donated: the results are
    written over it, so a batch reuses two sets of output buffers, call after call,
    instead of allocating (and zeroing) new memory for every call."""
    mesh = jax.sharding.Mesh(np.asarray(devices), (AXIS,))

    def on_device(start: jax.Array, end: jax.Array, inputs: Inputs, out: Chunk) -> Chunk:
        device = lax.axis_index(AXIS)
        if layout.refill:  # fits dealt round-robin: device d runs start + d + j * devices
            per_device = layout.chunk // layout.devices
            count = jnp.clip((end - start - device + layout.devices - 1) // layout.devices, 0, per_device)
            return _fit_stream(
                program,
                inputs,
                first=start + device,
                stride=layout.devices,
                count=count,
                final=out,
                width=layout.block_size,
                group=min(layout.refill, layout.block_size),
                on_lanes=layout.on_lanes,
            )
        # the call's fits split evenly: device d runs fits start + d * share + j, j < mine
        share = block_share(end - start, layout)
        mine = jnp.clip(end - start - device * share, 0, share)
        offsets = jnp.arange(layout.block_size, dtype=jnp.int32)

        def block(k: jax.Array, out: Chunk) -> Chunk:
            j = k * layout.block_size + offsets
            fit = _fit_on_lanes if layout.on_lanes else _fit_block
            done = fit(program, inputs, jnp.where(j < mine, start + device * share + j, -1))
            at = k * layout.block_size
            return jax.tree.map(lambda buf, v: lax.dynamic_update_slice_in_dim(buf, v, at, 0), out, done)

        return lax.fori_loop(0, layout.blocks, block, out)

    sharded = jax.shard_map(
        on_device, mesh=mesh, in_specs=(P(), P(), P(), P(AXIS)), out_specs=P(AXIS), check_vma=False
    )
    return jit(sharded, donate_argnums=3)


def chunk_buffers(program: Program, layout: Layout, devices: Sequence[jax.Device], inputs: Inputs) -> Chunk:
    """Output buffers for one call of ``compiled_chunk`` (zeros, on the devices)."""
    index = jax.ShapeDtypeStruct((1,), jnp.int32)
    one = jax.eval_shape(lambda inputs, index: _fit_block(program, inputs, index), inputs, index)
    sharding = jax.sharding.NamedSharding(jax.sharding.Mesh(np.asarray(devices), (AXIS,)), P(AXIS))
    zeros = jax.tree.map(lambda a: np.zeros((layout.chunk, *a.shape[1:]), a.dtype), one)
    return jax.device_put(zeros, sharding)  # copied, not compiled


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
    bounds = jax.tree.map(lambda _: True, inputs.bounds) if _bounds_per_set(inputs) else flags.bounds
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
    leaves, tree = jax.tree.flatten(inputs)
    per_set = jax.tree.leaves(_per_set(inputs, program.spec.model))

    def window(first: int, cut: Callable[[list], list] = lambda a: a) -> Inputs:
        """The inputs of a call whose fits read data sets ``first ..`` (``cut``: how
        the host rows of that window are placed)."""
        moving = iter(cut([_rows(a, first, rows) for a, f in zip(leaves, per_set) if f]))
        kept = iter(fixed)
        return jax.tree.unflatten(tree, [next(moving) if f else next(kept) for f in per_set])._replace(
            first=i32(first)
        )

    fixed = [a for a, f in zip(leaves, per_set) if not f]
    host = inputs if rows is None else window(0)
    spare_key = (key, signature((host,)))
    free = _SPARE.pop(spare_key, [])  # buffers no call is writing into

    def buffers() -> Chunk:
        return free.pop() if free else chunk_buffers(program, layout, devices, host)

    free.append(buffers())  # at least one set, to compile against
    compiled, compile_s = executable(compiled_chunk(*key), key, (i32(0), i32(0), host, free[-1]))
    # what every call shares goes to the devices once; the data sets a window at a time
    replicated = jax.sharding.NamedSharding(jax.sharding.Mesh(np.asarray(devices), (AXIS,)), P())
    fixed = jax.device_put(fixed, replicated)
    placed = jax.tree.unflatten(tree, fixed) if rows is None else None

    def inputs_of(start: int) -> Inputs:
        if rows is None:
            return placed
        return window(start // per_group, lambda host_rows: jax.device_put(host_rows, replicated))

    t1 = time.perf_counter()

    pending: list[tuple[int, int, Chunk]] = []

    def shards(a: jax.Array) -> list[np.ndarray]:
        """Each device's part of a chunk output, in device order, as host views (no copy)."""
        parts = sorted(a.addressable_shards, key=lambda sh: sh.index[0].start or 0)
        return [np.asarray(sh.data) for sh in parts]

    def flush() -> Chunk:
        """Hand the oldest call's results on; returns its buffers, to be written over."""
        s, e, out = pending.pop(0)
        jax.block_until_ready(out)
        if not layout.refill:  # device d holds fits s + d * share ...: hand them on as they are
            by_device = jax.tree.map(shards, out, is_leaf=lambda x: isinstance(x, jax.Array))
            share = block_share(e - s, layout)
            for d in range(layout.devices):
                first = s + d * share
                if first < e:
                    n = min(share, e - first)
                    on_chunk(
                        first,
                        jax.tree.map(
                            lambda parts, d=d, n=n: parts[d][:n],
                            by_device,
                            is_leaf=lambda x: isinstance(x, list),
                        ),
                    )
            return out

        def in_order(a: jax.Array) -> np.ndarray:  # streamed: fits dealt round-robin to devices
            parts = shards(a)
            if len(parts) == 1:
                return parts[0][: e - s]
            whole = np.empty((e - s,) + parts[0].shape[1:], parts[0].dtype)
            for d, part in enumerate(parts):
                whole[d :: layout.devices] = part[: len(whole[d :: layout.devices])]
            return whole

        on_chunk(s, jax.tree.map(in_order, out))
        return out

    for s, e in calls(ranges, layout.chunk, rows, per_group):
        pending.append((s, e, compiled(i32(s), i32(e), inputs_of(s), buffers())))
        if len(pending) > 1:
            free.append(flush())
    while pending:
        free.append(flush())
    _SPARE.clear()
    _SPARE[spare_key] = free[-2:]
    if timing is not None:
        timing.append(Timing(compile_s, time.perf_counter() - t1))
