"""The fit engine: pure functions of explicit state.

    init_state(spec, params, problem) -> FitState
    step(spec, state, problem)        -> FitState     one gradient-descent step
    run(spec, state, problem)         -> FitState     lax.while_loop until stopped
    run_traced(spec, state, problem, trace_limit) -> (FitState, Trace)
    run_traced_many(spec, states, problems, trace_limit)  the same for a batch
    begin / advance / conclude        the batch loops' lean form of init_state / step
                                      (a LeanState: no loss or gradient carried; same results)
    start / loop_step / finish        a batch loop's body: the lean form where it serves
                                      (``lean``), else the full one carrying only what
                                      its steps read (``carried``); ``admitted`` marks
                                      the fits that take no step

The engine runs the spec's solver (``core.solvers``: sgd, momentum and adam through
optax, and Levenberg–Marquardt, peers behind one interface) and names none; it
decides each fit's status in one place (``decide``).

``spec`` (a ``Spec``) is static: the model, the trainable set and the optimizer kind. Everything
numeric (data, frozen params, initial values, learning rate, tolerance, max_steps)
is a traced argument, so changing it never retraces or recompiles.

Gradients are taken with respect to the trainable parameters only; the frozen ones
are never differentiated and come back bit-identical. ``loss`` and ``grad`` in a
state always belong to that state's ``params``, so a step is: ``step_size`` from
the optimizer, ``new = old - step_size``, then loss and gradient at ``new``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from jaxfit.core import losses
from jaxfit.core.lanes import Lanes
from jaxfit.core.model import SEED_MODEL, Data, Model, Params
from jaxfit.core.optim import Hyper, OptimizerKind
from jaxfit.core.solvers import Objective, all_of, small, solver_of
from jaxfit.core.status import Status


class Spec(NamedTuple):
    """What forces a compile: which parameters train and how, the model, the loss and
    which parameters have bounds (hashable, static)."""

    trainable: tuple[str, ...] = ("b3",)
    optimizer: OptimizerKind = OptimizerKind()
    model: Model = SEED_MODEL
    loss: str = "ssr"
    """``core.losses.LOSSES``."""
    bounded: tuple[str, ...] = ()
    """Trainable parameters kept inside ``Problem.bounds``."""


class Problem(NamedTuple):
    """Traced inputs shared by every step of a fit."""

    data: Data
    frozen: Params
    """Values of the parameters that do not train."""
    hyper: Hyper
    bounds: tuple[Params, Params] | None = None
    """``(lower, upper)`` of each of ``Spec.bounded`` (±inf: unbounded on that side)."""


class FitState(NamedTuple):
    """The state of one fit (every leaf gains a leading axis under ``vmap``).

    ``loss`` and ``grad`` are evaluated at ``params``; ``step_size`` is the update
    that the last step applied (zeros before the first step).
    """

    params: Params
    """Trainable parameters, by name."""
    opt_state: optax.OptState
    loss: jax.Array
    grad: Params
    step_size: Params
    step: jax.Array
    """Steps taken so far (int32)."""
    status: jax.Array
    """A ``Status`` code (int32); ``RUNNING`` until the fit stops."""


class Trace(NamedTuple):
    """The first ``trace_limit`` steps of one fit: row ``k`` is step ``k + 1``.

    ``params``, ``loss`` and ``grad`` are taken *before* that step's update;
    rows past the last step taken hold NaN.
    """

    params: Params
    loss: jax.Array
    grad: Params
    step_size: Params


def objective(spec: Spec, problem: Problem) -> Objective:
    """The fit's loss (``core.losses``) as a function of the trainable parameters, and
    the projection onto its bounds, for the solvers."""
    f_scale = problem.hyper.f_scale

    def loss(trainable: Params) -> jax.Array:
        return losses.value(spec.loss, {**problem.frozen, **trainable}, problem.data, spec.model, f_scale)

    def value_and_grad(trainable: Params) -> tuple[jax.Array, Params]:
        # ``jax.value_and_grad``'s own arithmetic; also for a block of independent fits
        # (``core.lanes``: a loss per fit, each fit's gradient from its own loss)
        value, pullback = jax.vjp(loss, trainable)
        return value, pullback(jnp.ones_like(value))[0]

    def linearized(trainable: Params) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        names = tuple(trainable)
        return losses.linearized(
            spec.loss, spec.model, names, trainable, problem.frozen, problem.data, f_scale, majorize=True
        )

    bounds = problem.bounds if spec.bounded else None
    return Objective(value_and_grad, loss, linearized, bounds, least_squares=spec.loss == "ssr")


def _all_finite(loss: jax.Array, *trees: object) -> jax.Array:
    """Per fit (``loss``'s shape): every leaf is finite. A leaf with leading axes of its
    own (a solver's packed values, e.g. Levenberg–Marquardt's normal equations) is
    finite where all of its entries are."""

    def per_fit(leaf: jax.Array) -> jax.Array:
        extra = jnp.ndim(leaf) - jnp.ndim(loss)
        return jnp.all(jnp.isfinite(leaf), axis=tuple(range(extra))) if extra > 0 else jnp.isfinite(leaf)

    return all_of([per_fit(leaf) for leaf in jax.tree.leaves((loss, trees))])


def decide(
    finite: jax.Array,
    converged: jax.Array,
    count: jax.Array,
    max_steps: jax.Array,
    stalled: jax.Array | bool = False,
) -> jax.Array:
    """A fit's status after ``count`` steps (every loop decides it here). Non-finite
    first: a NaN must never look converged (nan < tol is False anyway)."""
    going = jnp.where(count >= max_steps, Status.MAX_STEPS, Status.RUNNING)
    if stalled is not False:
        going = jnp.where(stalled, Status.STALLED, going)
    return jnp.where(finite, jnp.where(converged, Status.CONVERGED, going), Status.DIVERGED).astype(jnp.int32)


def init_state(spec: Spec, params: Params, problem: Problem, gradient: bool = True) -> FitState:
    """The state before the first step, from the trainable ``params`` (by name).
    ``gradient=False``: no gradient (``grad`` None; for a loop whose solver needs
    none), so no reverse pass."""
    params = {name: jnp.asarray(params[name]) for name in spec.trainable}
    fn = objective(spec, problem)
    loss, grad = fn.value_and_grad(params) if gradient else (fn.value(params), None)
    opt_state = solver_of(spec.optimizer).init(fn, params, problem.hyper)
    zero = jnp.zeros(jnp.shape(loss), jnp.int32)  # (fits,) under core.lanes
    # the solver's state too: it may carry values of the fit's loss (as Levenberg–Marquardt's)
    finite = _all_finite(loss, grad, params, opt_state)
    return FitState(
        params=params,
        opt_state=opt_state,
        loss=loss,
        grad=grad,
        step_size=jax.tree.map(jnp.zeros_like, params),
        step=zero,
        status=decide(finite, False, zero, problem.hyper.max_steps),
    )


def step(spec: Spec, state: FitState, problem: Problem) -> FitState:
    """One step of the spec's solver; sets ``status`` to why the fit should stop, if
    it should. A step is always taken, whatever ``state.status`` says: loops stop on
    status. The step size need not be checked for finiteness: the old parameters
    are finite, so a non-finite step makes the new ones non-finite."""
    hyper = problem.hyper
    move = solver_of(spec.optimizer).step(
        objective(spec, problem), state.params, state.opt_state, state.loss, state.grad, hyper
    )
    count = state.step + 1
    finite = _all_finite(move.loss, move.grad, move.params)
    status = decide(finite, move.converged, count, hyper.max_steps, move.stalled)
    return FitState(move.params, move.opt_state, move.loss, move.grad, move.step_size, count, status)


def lean(spec: Spec) -> bool:
    """Whether the batch loops step ``spec``'s fits with ``advance`` rather than
    ``step`` (``GradientDescent.lean``, and one trainable parameter, whose loop is
    bound by what it carries, and no bounds)."""
    return solver_of(spec.optimizer).lean and len(spec.trainable) == 1 and not spec.bounded


class LeanState(NamedTuple):
    """What an ``advance`` loop carries: no loss, gradient or step size (every leaf
    gains a leading axis under ``vmap``)."""

    params: Params
    opt_state: optax.OptState
    step: jax.Array
    status: jax.Array


def begin(spec: Spec, params: Params, problem: Problem) -> LeanState:
    """The state an ``advance`` loop starts from (``advance`` evaluates the loss and
    gradient, and checks them, at its first step)."""
    params = {name: jnp.asarray(params[name]) for name in spec.trainable}
    zero = jnp.zeros((), jnp.int32)
    opt_state = solver_of(spec.optimizer).init(objective(spec, problem), params, problem.hyper)
    return LeanState(params, opt_state, zero, decide(True, False, zero, problem.hyper.max_steps))


def advance(spec: Spec, state: LeanState, problem: Problem) -> LeanState:
    """``step`` for loops that carry neither loss nor gradient (start from ``begin``,
    end with ``conclude``): both are evaluated here, at ``state.params``, before the
    update. A fit whose loss, gradient or parameters are not finite there stops as
    DIVERGED without stepping; its ``step`` counts the step it did not take (so that
    the count never waits on the finiteness check), which ``conclude`` takes back.
    Same fits as ``step``, bit for bit, for a fraction of the carry (what the loop's
    speed is bound by)."""
    hyper = problem.hyper
    fn = objective(spec, problem)
    loss, grad = fn.value_and_grad(state.params)
    finite = _all_finite(loss, grad, state.params)
    step_size, opt_state = solver_of(spec.optimizer).update(grad, state.opt_state, state.params, hyper)
    params = jax.tree.map(jnp.subtract, state.params, step_size)  # as in `step`, op for op
    count = state.step + 1
    status = decide(finite, small(step_size, hyper.tolerance), count, hyper.max_steps)
    kept = select_fits(finite, (params, opt_state), (state.params, state.opt_state))
    return LeanState(*kept, count, status)


def conclude(spec: Spec, state: LeanState, problem: Problem) -> FitState:
    """The end of an ``advance`` loop's fit: the loss and gradient at its last
    parameters, DIVERGED where they (or the parameters) are not finite, and the step
    count ``step`` would give (a fit ``advance`` stopped as DIVERGED did not take its
    last counted step). Its step size is not kept (zeros)."""
    loss, grad = objective(spec, problem).value_and_grad(state.params)
    steps = jnp.where(state.status == Status.DIVERGED, state.step - 1, state.step)
    status = jnp.where(_all_finite(loss, grad, state.params), state.status, Status.DIVERGED)
    zeros = jax.tree.map(jnp.zeros_like, state.params)
    return FitState(state.params, state.opt_state, loss, grad, zeros, steps, status.astype(jnp.int32))


Carry = FitState | LeanState
"""What a batch loop carries of each fit: a ``LeanState`` for ``lean`` specs, else a
``FitState`` without what only a trace reads (``carried``)."""


def carried(spec: Spec, state: FitState) -> FitState:
    """What a batch loop keeps of a full state: not the step size (only a trace reads
    it), nor the gradient for a solver that needs none (Levenberg–Marquardt then
    evaluates only the loss of its trials: no reverse pass)."""
    keep_grad = solver_of(spec.optimizer).needs_gradient
    return state._replace(step_size=None, grad=state.grad if keep_grad else None)


def start(spec: Spec, params: Params, problem: Problem) -> Carry:
    """The state a batch loop starts a fit from (``begin`` for ``lean`` specs)."""
    if lean(spec):
        return begin(spec, params, problem)
    return carried(spec, init_state(spec, params, problem, solver_of(spec.optimizer).needs_gradient))


def loop_step(spec: Spec, state: Carry, problem: Problem) -> Carry:
    """One step of a batch loop (``advance`` for ``lean`` specs, else ``step``), which
    carries only what the next step reads."""
    if lean(spec):
        return advance(spec, state, problem)
    return carried(spec, step(spec, state, problem))


def finish(spec: Spec, state: Carry, problem: Problem) -> FitState:
    """The end of a batch loop's fit (``conclude`` for ``lean`` specs; a full state
    is already complete but for what ``carried`` dropped)."""
    return conclude(spec, state, problem) if lean(spec) else state


def admitted(spec: Spec, state: Carry, taken: jax.Array, data: Data | None) -> Carry:
    """``state`` (a batch's, leading axis = fits) with no step for the fits not
    ``taken`` (padding past the end of a batch: ``PADDING``) nor for those whose own
    data (``data``: one set per fit, or None) has fewer real points than trainable
    parameters (``TOO_FEW_POINTS``)."""
    status = jnp.where(taken, state.status, Status.PADDING)
    if data is not None and data.mask is not None:
        real = jnp.sum(data.mask, axis=-1, dtype=jnp.int32)
        status = jnp.where(real < len(spec.trainable), Status.TOO_FEW_POINTS, status)
    return state._replace(status=status)


def _running(state: FitState) -> jax.Array:
    return state.status == Status.RUNNING


def run(spec: Spec, state: FitState, problem: Problem) -> FitState:
    """Step until the fit stops (converged, max_steps or diverged), compiled as one loop."""
    return lax.while_loop(_running, lambda s: step(spec, s, problem), state)


def run_traced(spec: Spec, state: FitState, problem: Problem, trace_limit: int) -> tuple[FitState, Trace]:
    """Like ``run``, also recording the first ``trace_limit`` steps (static) in a ``Trace``."""
    nan = jnp.full((trace_limit,), jnp.nan, state.loss.dtype)
    by_name = {name: nan for name in spec.trainable}
    trace0 = Trace(by_name, nan, by_name, by_name)

    def body(carry: tuple[FitState, Trace]) -> tuple[FitState, Trace]:
        before, trace = carry
        after = step(spec, before, problem)
        row = Trace(before.params, before.loss, before.grad, after.step_size)
        # Out-of-range rows (past trace_limit) are dropped by the scatter.
        trace = jax.tree.map(lambda buf, v: buf.at[before.step].set(v, mode="drop"), trace, row)
        return after, trace

    return lax.while_loop(lambda c: _running(c[0]), body, (state, trace0))


def select_fits(mask: jax.Array, new: object, old: object) -> object:
    """``new`` where ``mask`` (one flag per fit, the leading axis), else ``old``, leaf by leaf."""
    return jax.tree.map(
        lambda n, o: jnp.where(mask.reshape(mask.shape + (1,) * (n.ndim - 1)), n, o), new, old
    )


def select_lanes(mask: jax.Array, new: object, old: object) -> object:
    """``select_fits`` on the vector lanes (``core.lanes``): the fits are every leaf's
    last axis."""
    return jax.tree.map(lambda n, o: jnp.where(mask, n, o), new, old)


def run_traced_many(
    spec: Spec, state: FitState, problem: Problem, trace_limit: int
) -> tuple[FitState, Trace]:
    """``run_traced`` for a batch (every leaf has a leading fit axis), each fit
    stopping on its own; the trace's rows are ``[trace_limit, fits]``.

    With a ``core.lanes`` model, the fits are the lanes of one problem (no ``vmap``).
    ``vmap(run_traced)`` would select every trace buffer in full on every step (a
    vmapped ``while_loop`` merges the whole carry of finished and running fits).
    Here one loop steps all fits together with an unbatched counter, so each step
    writes one row of the trace and merges only the small per-fit state.
    """
    nan = jnp.full((trace_limit, state.loss.shape[0]), jnp.nan, state.loss.dtype)
    by_name = {name: nan for name in spec.trainable}
    trace0 = Trace(by_name, nan, by_name, by_name)
    step_all, select = functools.partial(step, spec), select_lanes  # fits on the lanes step as one
    if not isinstance(spec.model, Lanes):
        step_all, select = jax.vmap(step_all), select_fits

    def body(carry: tuple[jax.Array, FitState, Trace]) -> tuple[jax.Array, FitState, Trace]:
        k, before, trace = carry
        running = _running(before)
        after = select(running, step_all(before, problem), before)
        row = Trace(before.params, before.loss, before.grad, after.step_size)
        row = jax.tree.map(lambda v: jnp.where(running, v, jnp.nan), row)
        # Rows past trace_limit are dropped by the scatter.
        trace = jax.tree.map(lambda buf, v: buf.at[k].set(v, mode="drop"), trace, row)
        return k + 1, after, trace

    _, final, trace = lax.while_loop(
        lambda c: jnp.any(_running(c[1])), body, (jnp.zeros((), jnp.int32), state, trace0)
    )
    return final, trace


def state_to_dict(state: FitState) -> dict[str, object]:
    """A state as plain containers (optimizer state as a list of arrays), e.g. to
    serialise it or send it over the wire; ``state_from_dict`` inverts it."""
    return {**state._asdict(), "opt_state": jax.tree.leaves(state.opt_state)}


def opt_state_shapes(spec: Spec, dtype: object) -> object:
    """The optimizer state's leaves for ``spec`` as shapes and dtypes (no model is
    traced; a linearization, where the state carries one, is of one zero point)."""
    zeros = {n: jnp.zeros((), dtype) for n in spec.trainable}
    hyper = Hyper(*(jnp.zeros((), jnp.int32 if f == "max_steps" else dtype) for f in Hyper._fields))
    point = jnp.zeros((1,), dtype)
    shape_only = Objective(None, None, lambda p: (point, tuple(point for _ in p)))
    init = functools.partial(solver_of(spec.optimizer).init, shape_only)
    return jax.eval_shape(init, zeros, hyper)


def opt_state_tree(spec: Spec, dtype: object) -> jax.tree_util.PyTreeDef:
    """The optimizer state's structure for ``spec``."""
    return jax.tree.structure(opt_state_shapes(spec, dtype))


def state_from_dict(d: dict, opt_tree: jax.tree_util.PyTreeDef) -> FitState:
    """The ``FitState`` of ``state_to_dict``'s output (``opt_tree`` from ``opt_state_tree``)."""
    return FitState(**{**d, "opt_state": jax.tree.unflatten(opt_tree, d["opt_state"])})
