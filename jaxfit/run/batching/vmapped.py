"""Fits of a block as a ``vmap`` of the engine's single-fit step (any solver, any
model): the ``fits.Stepping`` for everything the vector lanes do not take."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxfit.core import engine
from jaxfit.core.engine import Carry
from jaxfit.core.model import Data, Params
from jaxfit.core.stats import Stats, statistics
from jaxfit.core.status import Status
from jaxfit.run.batching import fits as fits_
from jaxfit.run.batching.fits import Chunk, Fits, Inputs, Program


def drawn(program: Program, inputs: Inputs, index: jax.Array) -> Fits:
    return fits_.drawn(program, inputs, index)[0]


def _vmapped(program: Program, inputs: Inputs, fits: Fits, fn: Callable) -> Callable:
    """``fn(spec, first, problem)`` over ``fits``: ``(first) -> fn`` of each fit."""
    args, axes = fits.problem_args(program, inputs)

    def one(first: object, *problem: object) -> object:
        return fn(program.spec, first, fits_.problem(*problem))

    vmapped = jax.vmap(one, in_axes=(0, *axes))
    return lambda first: vmapped(first, *args)


def start(program: Program, inputs: Inputs, index: jax.Array) -> Fits:
    fits, trainable = fits_.drawn(program, inputs, index)
    state = _vmapped(program, inputs, fits, engine.start)(trainable)
    return fits._replace(state=engine.admitted(program.spec, state, index >= 0, fits.data))


def stepper(program: Program, inputs: Inputs, fits: Fits) -> Callable[[Carry], Carry]:
    step_all = _vmapped(program, inputs, fits, engine.loop_step)
    return lambda state: engine.select_fits(state.status == Status.RUNNING, step_all(state), state)


def finish(program: Program, inputs: Inputs, fits: Fits) -> Chunk:
    state = _vmapped(program, inputs, fits, engine.finish)(fits.state)
    return Chunk(state.params, fits.init, state.loss, state.step, state.status.astype(jnp.int8))


def normal(program: Program, fits: Fits) -> jax.Array | None:
    carried = fits_.carried_normal(program, fits.state)  # (B, m): vmapped
    return None if carried is None else carried.T


def points(program: Program, inputs: Inputs, fits: Fits) -> jax.Array:
    data = fits.problem_args(program, inputs)[0][3]
    real = data.y.shape[-1] if data.mask is None else jnp.sum(data.mask, axis=-1, dtype=jnp.int32)
    return jnp.broadcast_to(real, fits.state.status.shape)


def stats(program: Program, inputs: Inputs, fits: Fits, params: Params) -> Stats | None:
    if program.stats is None:
        return None
    (frozen, common, hyper, data, _), (frozen_axis, _, _, data_axis, _) = fits.problem_args(program, inputs)

    def one(params: Params, frozen: Params, data: Data) -> Stats:
        spec, f_scale = program.spec, hyper.f_scale
        frozen = {**common, **frozen}
        return statistics(spec.model, spec.trainable, params, frozen, data, program.stats, spec.loss, f_scale)

    return fits_.stored(jax.vmap(one, in_axes=(0, frozen_axis, data_axis))(params, frozen, data))


def place(current: Fits, target: jax.Array, started: Fits) -> Fits:
    return jax.tree.map(lambda buf, v: buf.at[target].set(v, mode="drop"), current, started)
