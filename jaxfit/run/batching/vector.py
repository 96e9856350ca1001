"""Fits of a block as one problem on the vector lanes (``core.lanes``: a struct of
arrays, each fit's data with its points first), stepped by the engine's own step
over the whole block: the ``fits.Stepping`` for Levenberg–Marquardt's small fits."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxfit.core import engine, lanes
from jaxfit.core.engine import Carry, Problem, Spec
from jaxfit.core.model import Data, Params
from jaxfit.core.stats import Stats, fits_first, statistics
from jaxfit.core.status import Status
from jaxfit.run.batching import fits as fits_
from jaxfit.run.batching.fits import Chunk, Fits, Inputs, Program


def _drawn(program: Program, inputs: Inputs, index: jax.Array) -> tuple[Fits, Params, Data | None]:
    """``fits.drawn`` with each fit's own data with its points first
    (``lanes.data_of``); also that data as drawn (None: every fit shares one)."""
    fits, trainable = fits_.drawn(program, inputs, index)
    own = fits.data
    if own is not None:
        fits = fits._replace(data=lanes.data_of(own, True, program.spec.model))
    return fits, trainable, own


def drawn(program: Program, inputs: Inputs, index: jax.Array) -> Fits:
    return _drawn(program, inputs, index)[0]


def _problem(program: Program, inputs: Inputs, fits: Fits) -> tuple[Spec, Problem]:
    """The spec and the one problem of the block (``fits.data``: None, or already with
    its points first)."""
    (frozen, common, hyper, data, bounds), _ = fits.problem_args(program, inputs)
    model = program.spec.model
    if fits.data is None:  # one data set for every fit
        data = lanes.data_of(data, False, model)
    return program.spec._replace(model=lanes.Lanes(model)), fits_.problem(frozen, common, hyper, data, bounds)


def start(program: Program, inputs: Inputs, index: jax.Array) -> Fits:
    fits, trainable, own = _drawn(program, inputs, index)
    spec, problem = _problem(program, inputs, fits)
    state = engine.start(spec, trainable, problem)
    return fits._replace(state=engine.admitted(spec, state, index >= 0, own))


def stepper(program: Program, inputs: Inputs, fits: Fits) -> Callable[[Carry], Carry]:
    spec, problem = _problem(program, inputs, fits)
    return lambda state: engine.select_lanes(
        state.status == Status.RUNNING, engine.loop_step(spec, state, problem), state
    )


def finish(program: Program, inputs: Inputs, fits: Fits) -> Chunk:
    spec, problem = _problem(program, inputs, fits)
    state = engine.finish(spec, fits.state, problem)
    return Chunk(state.params, fits.init, state.loss, state.step, state.status.astype(jnp.int8))


def normal(program: Program, fits: Fits) -> jax.Array | None:
    return fits_.carried_normal(program, fits.state)  # (m, B) already


def points(program: Program, inputs: Inputs, fits: Fits) -> jax.Array:
    data = _problem(program, inputs, fits)[1].data  # points first
    real = data.y.shape[0] if data.mask is None else jnp.sum(data.mask, axis=0, dtype=jnp.int32)
    return jnp.broadcast_to(real, fits.state.status.shape)


def stats(program: Program, inputs: Inputs, fits: Fits, params: Params) -> Stats | None:
    if program.stats is None:
        return None
    spec, problem = _problem(program, inputs, fits)
    f_scale = problem.hyper.f_scale
    stats = statistics(
        spec.model, spec.trainable, params, problem.frozen, problem.data, program.stats, spec.loss, f_scale
    )
    return fits_.stored(fits_first(stats))


def place(current: Fits, target: jax.Array, started: Fits) -> Fits:
    def put(buf: jax.Array, v: jax.Array) -> jax.Array:
        return buf.at[..., target].set(v, mode="drop")  # the fits are the last axis

    placed = jax.tree.map(put, current._replace(data=None), started._replace(data=None))
    if current.data is None:
        return placed
    # a fit's data is a column (its points first)
    data = jax.tree.map(lambda buf, v: buf.at[:, target].set(v, mode="drop"), current.data, started.data)
    return placed._replace(data=data)
