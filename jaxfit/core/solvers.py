"""Solvers as peers: every optimizer behind one small interface, so the engine runs
"a solver" and names none (in the spirit of optax's ``init / update`` and
optimistix's ``init / step``).

    solver = solver_of(kind)
    opt_state = solver.init(objective, params, hyper)
    move = solver.step(objective, params, opt_state, loss, grad, hyper)   -> Move

A solver sees the fit's loss only through an ``Objective``: its value and gradient
at given trainable parameters, and its least-squares form ``(r, J)`` (residuals whose
``JᵀJ`` and ``Jᵀr`` are the Gauss–Newton Hessian and gradient, halved). The loss,
the weights and the bounds live in the objective; a bounded step is projected back
into the box (``project``), and Levenberg–Marquardt holds a parameter that sits on a
bound its gradient pushes against (``pinned``) out of the step, as Gpufit clamps and
as projected Newton methods do.
A ``Move`` is the candidate state after one step and whether that step counts as
converged; the engine decides the fit's status from it (``status.decide``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from jaxfit.core import lm
from jaxfit.core.model import Params, sum_points
from jaxfit.core.optim import Hyper, OptimizerKind, make_optimizer


class Objective(NamedTuple):
    """The loss of one fit as a function of its trainable parameters (by name)."""

    value_and_grad: Callable[[Params], tuple[jax.Array, Params]]
    value: Callable[[Params], jax.Array]
    linearized: Callable[[Params], tuple[jax.Array, tuple[jax.Array, ...]]]
    """``(r, J)`` at the parameters: ``r`` (n,) and ``J``'s columns (each (n,)) in
    trainable order."""
    bounds: tuple[Params, Params] | None = None
    """``(lower, upper)`` of the bounded parameters (None: none is)."""
    least_squares: bool = False
    """The value is ``‖r‖²`` of ``linearized`` (the SSR): a linearization gives it."""


class Move(NamedTuple):
    """What one step proposes: the new state's parts (``loss`` and ``grad`` at
    ``params``), the update it applied (``new = old - step_size``) and whether the
    step meets the solver's convergence test."""

    params: Params
    opt_state: Any
    loss: jax.Array
    grad: Params
    step_size: Params
    converged: jax.Array
    stalled: jax.Array | bool = False
    """The step met a convergence test away from a stationary point (``Status.STALLED``)."""


class Solver(Protocol):
    def init(self, objective: Objective, params: Params, hyper: Hyper) -> Any:
        """The solver's state before the first step (at ``params``)."""

    def step(
        self,
        objective: Objective,
        params: Params,
        opt_state: Any,
        loss: jax.Array,
        grad: Params,
        hyper: Hyper,
    ) -> Move:
        """One step from ``params`` (where the loss is ``loss`` with gradient ``grad``)."""


def project(params: Params, bounds: tuple[Params, Params]) -> Params:
    """The nearest parameters inside the bounds."""
    lower, upper = bounds
    return {n: jnp.clip(v, lower[n], upper[n]) if n in lower else v for n, v in params.items()}


def pinned(params: Params, descent: jax.Array, bounds: tuple[Params, Params]) -> jax.Array:
    """Which parameters (columns in ``params`` order) sit on a bound that the descent
    direction ``descent`` (``-∇loss``, up to a positive factor) points out of."""
    lower, upper = bounds
    flags = [
        ((params[n] <= lower[n]) & (descent[i] < 0)) | ((params[n] >= upper[n]) & (descent[i] > 0))
        if n in lower
        else jnp.zeros(jnp.shape(params[n]), bool)
        for i, n in enumerate(params)
    ]
    return jnp.stack(flags)


def all_of(flags: list[jax.Array]) -> jax.Array:
    """An elementwise chain of ``&`` (not stack + reduce), so XLA fuses it into the step."""
    return functools.reduce(jnp.logical_and, flags)


def small(step_size: Params, tolerance: jax.Array) -> jax.Array:
    return all_of([jnp.abs(s) < tolerance for s in jax.tree.leaves(step_size)])


class GradientDescent(NamedTuple):
    """sgd, momentum and adam through optax: ``p ← p - update(grad)``; converged when
    every ``|step_size| < tolerance``."""

    kind: OptimizerKind
    needs_gradient: bool = True

    @property
    def lean(self) -> bool:
        """Whether a batch loop may carry only parameters and optimizer state
        (``engine.advance``): one trainable parameter, and an update that only adds and
        multiplies (sgd, momentum). With several parameters XLA would evaluate the whole
        gradient again for each parameter's update, which costs more than carrying it;
        Adam's update compiled into another fusion may round differently (an ulp)."""
        return self.kind.name in ("sgd", "momentum")

    def init(self, objective: Objective, params: Params, hyper: Hyper) -> Any:
        return make_optimizer(self.kind, hyper).init(params)

    def update(self, grad: Params, opt_state: Any, params: Params, hyper: Hyper) -> tuple[Params, Any]:
        """``(step_size, opt_state)``: the update for ``grad`` at ``params``."""
        updates, opt_state = make_optimizer(self.kind, hyper).update(grad, opt_state, params)
        return jax.tree.map(jnp.negative, updates), opt_state

    def step(
        self,
        objective: Objective,
        params: Params,
        opt_state: Any,
        loss: jax.Array,
        grad: Params,
        hyper: Hyper,
    ) -> Move:
        step_size, opt_state = self.update(grad, opt_state, params, hyper)
        new = jax.tree.map(jnp.subtract, params, step_size)
        if objective.bounds is not None:  # the step that was taken: to the bound
            new = project(new, objective.bounds)
            step_size = jax.tree.map(jnp.subtract, params, new)
        loss, grad = objective.value_and_grad(new)
        return Move(new, opt_state, loss, grad, step_size, small(step_size, hyper.tolerance))


class LevenbergMarquardt(NamedTuple):
    """Levenberg–Marquardt (``core.lm``): a damped Gauss–Newton trial, kept only if the
    loss does not grow. Converged when an accepted step has every ``|δ| < tolerance``,
    or (each when > 0) changes the loss by less than ``max(ftol, ftol·loss)`` (Gpufit's
    test), or has ``‖δ‖ < xtol·(xtol + ‖p‖)``; or, with no step, where MINPACK's
    ``gtol`` test holds. A rejected step never converges."""

    lean: bool = False  # it compares losses: the loss is always carried
    needs_gradient: bool = False
    """It steps from ``(r, J)``: a loop may carry no gradient (``grad`` None), and then
    none is computed."""

    def init(self, objective: Objective, params: Params, hyper: Hyper) -> lm.LMState:
        first = next(iter(params.values()))
        shape = jnp.shape(first)  # (fits,) under core.lanes
        damping = jnp.broadcast_to(jnp.asarray(hyper.damping), shape)
        scale = tuple(jnp.zeros(shape, damping.dtype) for _ in params)
        normal = None
        if lm.carries(jnp.result_type(first), len(params)):
            r, J = objective.linearized(lm.ordered(params))
            normal = lm.normal_of(J, r)
        return lm.LMState(damping, jnp.full_like(damping, 2.0), scale, normal)

    @staticmethod
    def _step_threshold(params: Params, hyper: Hyper) -> jax.Array:
        """The step below which the step tests stop: ``tolerance``, or ``xtol``'s
        ``xtol·(xtol + ‖p‖)`` where that is larger."""
        if hyper.xtol is None:
            return hyper.tolerance
        norm = jnp.sqrt(sum(p * p for p in jax.tree.leaves(params)))
        return jnp.maximum(hyper.tolerance, hyper.xtol * (hyper.xtol + norm))

    def step(
        self,
        objective: Objective,
        params: Params,
        opt_state: lm.LMState,
        loss: jax.Array,
        grad: Params,
        hyper: Hyper,
    ) -> Move:
        damping, params = opt_state.damping, lm.ordered(params)
        names = tuple(params)
        if opt_state.normal is not None:  # carried from the step that reached `params`
            A, g, rr = lm.unpacked(opt_state.normal, len(names))
            refine = None
        else:
            r, J = objective.linearized(params)
            (A, g), rr = lm.gram(J, r), sum_points(r * r)
            refine = (r, J) if r.dtype == jnp.float64 else None
        held = None if objective.bounds is None else pinned(params, -g, objective.bounds)
        flat = hyper.gtol is not None and _gradient_small(g, lm.diagonal(A), rr, hyper.gtol)
        delta, scale, g_held, d = lm.proposal(names, A, g, damping, held, opt_state.scale, refine)
        trial = jax.tree.map(jnp.add, params, delta)
        if objective.bounds is not None:  # the step that was taken: to the bound
            trial = project(trial, objective.bounds)
            delta = jax.tree.map(jnp.subtract, trial, params)
        normal = None
        if opt_state.normal is not None:  # the trial's linearization: its SSR comes with it
            r_trial, J_trial = objective.linearized(trial)
            normal = lm.normal_of(J_trial, r_trial)
            trial_loss = normal[-1] if objective.least_squares else objective.value(trial)
            trial_grad = None if grad is None else objective.value_and_grad(trial)[1]
            predicted = lm.predicted_normal(A, g, jnp.stack([delta[n] for n in names]))
        else:
            if grad is None:  # a loop that keeps no gradient: the loss alone (no reverse pass)
                trial_loss, trial_grad = objective.value(trial), None
            else:
                trial_loss, trial_grad = objective.value_and_grad(trial)
            predicted = lm.predicted(names, r, J, delta)
        accepted = trial_loss <= loss  # False for a NaN trial: rejected, not diverged
        if hyper.gtol is not None:  # already at a stationary point: no step
            accepted = accepted & ~flat

        def pick(new: object, old: object) -> object:
            return jax.tree.map(lambda n, o: jnp.where(accepted, n, o), new, old)

        step_size = jax.tree.map(lambda s: jnp.where(accepted, -s, jnp.zeros_like(s)), delta)
        converged = accepted & small(delta, hyper.tolerance)
        if hyper.ftol is not None:  # the relative change of the loss
            near = jnp.abs(loss - trial_loss) < jnp.maximum(hyper.ftol, hyper.ftol * trial_loss)
            converged = converged | (accepted & (hyper.ftol > 0) & near)
        if hyper.xtol is not None:  # the step relative to the parameters
            size = jnp.sqrt(sum(d * d for d in jax.tree.leaves(delta)))
            norm = jnp.sqrt(sum(p * p for p in jax.tree.leaves(params)))
            converged = converged | (accepted & (hyper.xtol > 0) & (size < hyper.xtol * (hyper.xtol + norm)))
        still = lm.stationary(loss, g_held, d, params, self._step_threshold(params, hyper), hyper.ftol)
        stalled = converged & ~still
        converged = converged & still
        if hyper.gtol is not None:
            converged = converged | flat
            stalled = stalled & ~flat
        return Move(
            pick(trial, params),
            lm.next_state(opt_state, accepted, _gain(loss - trial_loss, predicted), scale, normal),
            pick(trial_loss, loss),
            pick(trial_grad, grad),
            step_size,
            converged,
            stalled,
        )


def _gain(actual: jax.Array, predicted: jax.Array) -> jax.Array:
    """The gain ratio ``ρ``, 0 where nothing was predicted (no step)."""
    return jnp.where(predicted > 0, actual / jnp.where(predicted > 0, predicted, 1), 0)


def _gradient_small(g: jax.Array, d: jax.Array, rr: jax.Array, gtol: jax.Array) -> jax.Array:
    """MINPACK's ``gtol`` test: every ``|J_jᵀr| ≤ gtol·‖J_j‖·‖r‖`` (``gtol > 0``), from
    ``g = Jᵀr``, ``d = diag(JᵀJ)`` and ``rr = ‖r‖²``."""
    return (gtol > 0) & jnp.all(jnp.abs(g) <= gtol * (jnp.sqrt(d) * jnp.sqrt(rr)), axis=0)


def solver_of(kind: OptimizerKind) -> GradientDescent | LevenbergMarquardt:
    """The solver for an optimizer kind."""
    return LevenbergMarquardt() if kind.name == "lm" else GradientDescent(kind)
