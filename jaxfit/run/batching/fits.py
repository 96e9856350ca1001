"""A batch's fits: what each one reads (``Program``, ``Inputs``, and ``drawn`` from
its index) and what each one gives (``Chunk``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from jaxfit.core import lm
from jaxfit.core.engine import Carry, Problem, Spec
from jaxfit.core.model import Data, Params
from jaxfit.core.optim import Hyper
from jaxfit.core.stats import Stats, StatsSpec, fits_first, of_normal
from jaxfit.plan.sweep import FIXED, Plan, Tables, draw


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
    """int32: the data set the per-data-set rows start at (``pipeline.run_chunks`` hands
    a call a window of the batch's data sets; None: all, from 0)."""


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


PER_FIT = ("learning_rate", "tolerance", "max_steps")
"""Hyperparameters a batch may vary across fits (the others are ``Inputs.common``)."""


class Fits(NamedTuple):
    """Fits in progress, one per lane: state and per-fit inputs (leading axis = lanes,
    but for ``data`` on the vector lanes, whose points come first)."""

    state: Carry | None
    frozen: Params
    """Frozen values that vary across fits (one per lane); the ones every fit shares
    come from ``shared_frozen`` and stay unbatched."""
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
        """``(frozen, shared frozen, hyper, data, bounds)`` of the lanes' problems (see
        ``problem``) and their ``vmap`` axes."""
        per_lane = {f: getattr(self, f) for f in PER_FIT if getattr(self, f) is not None}
        hyper = inputs.common._replace(**per_lane)
        hyper_axes = Hyper(*(0 if f in per_lane else None for f in Hyper._fields))
        shared = self.data is None
        data = inputs.data if shared else self.data
        data_axes = None if shared else Data(None if self.data.x is None else 0, 0, 0, 0)
        if not shared and self.data.x is None:
            data = data._replace(x=inputs.data.x)
        common = shared_frozen(program, inputs.tables)
        bounds = inputs.bounds if self.bounds is None else self.bounds
        args = (self.frozen, common, hyper, data, bounds)
        return args, (0, None, hyper_axes, data_axes, None if self.bounds is None else 0)


def problem(frozen: Params, common: Params, hyper: Hyper, data: Data, bounds: tuple | None) -> Problem:
    """One fit's ``Problem`` from ``Fits.problem_args``."""
    return Problem(data, {**common, **frozen}, hyper, bounds)


def shared_frozen(program: Program, tables: Tables) -> Params:
    """Frozen parameters whose value is the same for every fit, as scalars."""
    plan = program.plan
    return {
        n: tables.coef[q, 0]
        for q, (n, kind) in enumerate(zip(plan.names, plan.kinds))
        if kind == FIXED and n not in program.spec.trainable
    }


def x_shared(data: Data, model: object) -> bool:
    """Whether data sets stacked along a leading axis share one ``x`` (``(n,)``, or
    ``(n, d)`` for a model of ``d`` coordinates), which then is not copied per fit."""
    point = 1 if getattr(model, "dims", 0) else 0
    return jnp.ndim(data.x) == 1 + point and jnp.ndim(data.y) == 2


def varying_of(program: Program, inputs: Inputs) -> tuple[str, ...]:
    """The quantities that differ between fits (each fit's starting value of them is an
    output): the plan's varying ones and the parameters with a start per data set."""
    varying = program.plan.varying()
    return varying + tuple(n for n in inputs.starts or {} if n not in varying)


def bounds_per_set(inputs: Inputs) -> bool:
    """Whether each data set has bounds of its own."""
    return inputs.bounds is not None and jnp.ndim(jax.tree.leaves(inputs.bounds)[0]) > 0


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


def _data_of(program: Program, inputs: Inputs, index: jax.Array) -> Data | None:
    """Each fit's own data set (None: every fit shares ``inputs.data``); its ``x`` is
    None where every data set shares it (``x_shared``)."""
    if inputs.per_group is None:
        return None
    group = _group(inputs, index)
    own = jax.tree.map(lambda a: a[group], inputs.data._replace(x=None))
    return own if x_shared(inputs.data, program.spec.model) else own._replace(x=inputs.data.x[group])


def drawn(program: Program, inputs: Inputs, index: jax.Array) -> tuple[Fits, Params]:
    """The per-fit inputs of fits ``index`` (shape (B,); no state yet) and their
    starting trainable values."""
    spec = program.spec
    values = draw(program.plan, inputs.tables, _draw_index(inputs, index))
    if inputs.starts is not None:
        group = _group(inputs, index)
        values = values._replace(params={**values.params, **{n: v[group] for n, v in inputs.starts.items()}})
    common = shared_frozen(program, inputs.tables)
    frozen = {n: v for n, v in values.params.items() if n not in spec.trainable and n not in common}
    varies = set(program.plan.varying())
    per_fit = {f: getattr(values, f) if f in varies else None for f in PER_FIT}
    everything = {**values.params, **values._asdict()}
    init = {q: everything[q] for q in varying_of(program, inputs)}
    bounds = None
    if bounds_per_set(inputs):
        bounds = jax.tree.map(lambda a: a[_group(inputs, index)], inputs.bounds)
    fits = Fits(None, frozen, **per_fit, data=_data_of(program, inputs, index), init=init, bounds=bounds)
    return fits, {n: values.params[n] for n in spec.trainable}


def stored(stats: Stats) -> Stats:
    """The statistics a batch keeps of each fit: its standard errors, the ``singular``
    flag and (if asked) its covariance. What follows from its loss and its data set
    alone — χ² (the loss), dof, R², the reduced χ², AIC, BIC — ``BatchResult`` derives
    on the host when asked (never copied from the device)."""
    return stats._replace(chisqr=None, dof=None, redchi=None, aic=None, bic=None, rsquared=None)


def carried_normal(program: Program, state: Carry) -> jax.Array | None:
    """What each fit's statistics can come from without a pass over its data: the
    normal equations a least-squares fit's Levenberg–Marquardt state carries
    (``lm.normal_of``), where the program asks for statistics; else None."""
    opt_state = state.opt_state
    if program.stats is None or program.spec.loss != "ssr" or not isinstance(opt_state, lm.LMState):
        return None
    return opt_state.normal


def stats_of_normal(program: Program, normal: jax.Array, points: jax.Array) -> Stats:
    """Each fit's statistics (as ``stored``) from its carried normal equations
    (``Stepping.normal``, ``(m, fits)``) and its count of real points ``(fits,)``."""
    return stored(fits_first(of_normal(normal, program.spec.trainable, points, program.stats)))


class Stepping(Protocol):
    """How a block's fits step: the interface ``vmapped`` and ``vector`` share, which
    ``blocks`` and ``streamed`` run (each function of the block's ``index``, shape (B,):
    fits at ``index < 0`` take no step)."""

    def drawn(self, program: Program, inputs: Inputs, index: jax.Array) -> Fits:
        """The per-fit inputs of fits ``index``, as this stepping holds them (no state)."""

    def start(self, program: Program, inputs: Inputs, index: jax.Array) -> Fits:
        """Fits ``index`` at their starts."""

    def stepper(self, program: Program, inputs: Inputs, fits: Fits) -> Callable[[Carry], Carry]:
        """One step of ``fits``' running fits (the others stay as they are)."""

    def finish(self, program: Program, inputs: Inputs, fits: Fits) -> Chunk:
        """What a chunk keeps of each fit (no statistics)."""

    def normal(self, program: Program, fits: Fits) -> jax.Array | None:
        """Each fit's carried normal equations ``(m, B)`` where its statistics can come
        from them (``carried_normal``), else None."""

    def points(self, program: Program, inputs: Inputs, fits: Fits) -> jax.Array:
        """Each fit's count of real points, (B,) (for ``stats_of_normal``)."""

    def stats(self, program: Program, inputs: Inputs, fits: Fits, params: Params) -> Stats | None:
        """Each fit's statistics at ``params``, by a pass over its data (None: the
        program computes none)."""

    def place(self, current: Fits, target: jax.Array, started: Fits) -> Fits:
        """``current`` with lanes ``target`` (out of range: dropped) holding ``started``."""
