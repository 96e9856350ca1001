"""Single fits: the compiled step for your own loop, and ``fit`` with a full trace.

Compiled functions are cached by what forces a compile (the ``Spec``; JAX adds
shapes and dtypes), so changing initial values, learning rate, tolerance or
max_steps reuses the same executable.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxfit.core import engine, lanes
from jaxfit.core.engine import FitState, Problem, Spec
from jaxfit.core.model import Params
from jaxfit.core.stats import Stats, StatsSpec, fits_first, statistics
from jaxfit.output.results import FitResult, fit_result
from jaxfit.plan import lowering
from jaxfit.plan.lowering import ConfigLike
from jaxfit.plan.plans import FitPlan
from jaxfit.run.aot import executable, jit

TRACE_LIMIT = 1000
"""Steps recorded in a single fit's trace (longer runs are marked as thinned)."""

StepFn = Callable[[FitState, Problem], FitState]
CACHED = 64
"""Compiled functions kept per kind (least recently used first out; ``jaxfit.clear_caches``)."""
SINGLE_STATS = StatsSpec()
"""A single fit's statistics: scaled by the reduced χ², the covariance kept."""


@functools.lru_cache(maxsize=CACHED)
def _compiled_step(spec: Spec) -> StepFn:
    return jit(functools.partial(engine.step, spec))


@functools.lru_cache(maxsize=CACHED)
def _compiled_init(spec: Spec) -> Callable[[Params, Problem], FitState]:
    return jit(functools.partial(engine.init_state, spec))


def named_stats(stats: Stats) -> dict[str, jax.Array]:
    """A fit's statistics under their output names (``stats.stderr.P``, ``stats.chisqr``, ...)."""
    named = {f"stats.stderr.{n}": v for n, v in stats.stderr.items()}
    named |= {f"stats.{f}": getattr(stats, f) for f in Stats._fields if f != "stderr"}
    return {k: v for k, v in named.items() if v is not None}


def _stats_of(spec: Spec, stats: StatsSpec, final: FitState, problem: Problem) -> Stats:
    f_scale = problem.hyper.f_scale
    return statistics(
        spec.model, spec.trainable, final.params, problem.frozen, problem.data, stats, spec.loss, f_scale
    )


def _named(
    spec: Spec, state0: FitState, final: FitState, trace: engine.Trace, problem: Problem
) -> dict[str, jax.Array]:
    named = {f"params.{n}": v for n, v in problem.frozen.items()}  # read back, not copied from the config
    named |= {
        "loss": final.loss,
        "init_loss": state0.loss,
        "steps": final.step,
        "status": final.status,
        "trace.loss": trace.loss,
    }
    for n in spec.trainable:
        named |= {f"params.{n}": final.params[n], f"trace.params.{n}": trace.params[n]}
        named |= {f"trace.grad.{n}": trace.grad[n], f"trace.step_size.{n}": trace.step_size[n]}
    return named


@functools.lru_cache(maxsize=CACHED)
def compiled_fit(
    spec: Spec, trace_limit: int, in_tree: Any, stats: StatsSpec = SINGLE_STATS
) -> Callable[..., dict[str, jax.Array]]:
    """A whole traced fit and its statistics as a jitted function of flat arrays (the
    leaves of ``(params, problem)``) returning named arrays (see ``results.fit_result``).

    Flat in, named out: the compiled executable can be serialised and called back
    without rebuilding any jaxfit or optax pytree (the CLI's warm start does this).
    """

    def fit_one(*leaves: jax.Array) -> dict[str, jax.Array]:
        params, problem = jax.tree.unflatten(in_tree, leaves)
        if _suits_lanes(spec):  # as one fit of a batch: the same bits
            row = jax.tree.map(lambda a: a[None], (params, problem))
            return jax.tree.map(lambda a: a[0], _traced_on_lanes(spec, *row, trace_limit, stats))
        state0 = engine.init_state(spec, params, problem)
        final, trace = engine.run_traced(spec, state0, problem, trace_limit)
        return _named(spec, state0, final, trace, problem) | named_stats(
            _stats_of(spec, stats, final, problem)
        )

    return jit(fit_one)


def _suits_lanes(spec: Spec) -> bool:
    return lanes.suits(spec.optimizer.name, len(spec.trainable))


def _traced_on_lanes(
    spec: Spec, params: Params, problem: Problem, trace_limit: int, stats: StatsSpec
) -> dict[str, jax.Array]:
    """Traced fits (every leaf of ``params`` and ``problem`` with a leading axis of
    fits) on the vector lanes (``core.lanes``), as a batch computes them: the lanes
    padded to ``lanes.width`` with copies of the last fit. Named
    outputs as ``compiled_fit_many``'s."""
    count = jax.tree.leaves(params)[0].shape[0]
    pad = jnp.minimum(jnp.arange(lanes.width(count)), count - 1)
    params_w, problem_w = jax.tree.map(lambda a: jnp.take(a, pad, axis=0), (params, problem))
    on_lanes = spec._replace(model=lanes.Lanes(spec.model))
    problem_w = problem_w._replace(data=lanes.data_of(problem_w.data, True, spec.model))
    state0 = engine.init_state(on_lanes, params_w, problem_w)
    final, trace = engine.run_traced_many(on_lanes, state0, problem_w, trace_limit)
    stats_w = fits_first(_stats_of(on_lanes, stats, final, problem_w))
    first = functools.partial(jax.tree.map, lambda a: a[:count])
    trace = jax.tree.map(lambda a: jnp.transpose(a)[:count], trace)
    return _named(spec, first(state0), first(final), trace, problem) | named_stats(first(stats_w))


def compiled_fit_many(
    spec: Spec, trace_limit: int, in_tree: Any, stats: StatsSpec = SINGLE_STATS
) -> Callable[..., dict[str, jax.Array]]:
    """``compiled_fit`` for a batch: every input and output gains a leading fit axis
    (traces are ``[fits, trace_limit]``); fit ``i`` equals ``compiled_fit`` of row ``i``.
    Not cached here: the caller decides how long its executables live."""
    stats_spec = stats

    def fit_many(*leaves: jax.Array) -> dict[str, jax.Array]:
        params, problem = jax.tree.unflatten(in_tree, leaves)
        if _suits_lanes(spec):
            return _traced_on_lanes(spec, params, problem, trace_limit, stats_spec)
        state0 = jax.vmap(functools.partial(engine.init_state, spec))(params, problem)
        final, trace = engine.run_traced_many(spec, state0, problem, trace_limit)
        stats = jax.vmap(functools.partial(_stats_of, spec, stats_spec))(final, problem)
        named = _named(spec, state0, final, jax.tree.map(jnp.transpose, trace), problem)
        return named | named_stats(stats)

    return jit(fit_many)


def fit_inputs(plan: FitPlan) -> tuple[list[np.ndarray], Any]:
    """The flat inputs of ``compiled_fit`` for ``plan`` (host arrays) and their tree."""
    return jax.tree.flatten((plan.params, plan.problem))


def fit_inputs_many(plans: Sequence[FitPlan]) -> tuple[list[np.ndarray], Any]:
    """The flat inputs of ``compiled_fit_many`` for ``plans`` (which share a ``Spec``
    and precision) and the tree of one fit's inputs."""
    leaves, _ = jax.tree.flatten(lowering.stacked(plans))
    return leaves, fit_inputs(plans[0])[1]


def fit_compiled(plan: FitPlan) -> tuple[jax.stages.Compiled, float, list[np.ndarray]]:
    """``(executable, compile seconds, inputs)`` of the traced fit of ``plan``."""
    inputs, tree = fit_inputs(plan)
    with jax.enable_x64(plan.precision == "float64"):
        fn = compiled_fit(plan.spec, TRACE_LIMIT, tree, plan.stats)
        compiled, compile_s = executable(fn, (plan.spec, TRACE_LIMIT, str(tree), plan.stats), tuple(inputs))
    return compiled, compile_s, inputs


def make_step(config: ConfigLike) -> StepFn:
    """The jit-compiled pure step function for a config's trainable set and optimizer.

    ``step(state, problem) -> state`` takes one gradient-descent step. It compiles once
    per trainable set and optimizer kind (and shapes/dtypes); every numeric value is a
    traced argument. It can be ``jax.vmap``-ed and called in your own loop.

    Example:
        >>> import jaxfit
        >>> cfg = jaxfit.load_config("configs/b3.yaml")
        >>> step, problem = jaxfit.make_step(cfg), jaxfit.make_problem(cfg)
        >>> state = jaxfit.make_state(cfg, problem)
        >>> while state.status == jaxfit.Status.RUNNING:
        ...     state = step(state, problem)
        >>> round(float(state.params["b3"]), 3), int(state.step)
        (2.609, 10)
    """
    return _compiled_step(lowering.spec_of(lowering.load_config(config)))


def make_problem(config: ConfigLike) -> Problem:
    """A config's data, frozen parameter values and hyperparameters, as JAX arrays.

    For ``precision: float64``, call it (and the step) inside ``with jax.enable_x64(True):``.
    """
    return lowering.problem_of(lowering.load_config(config))


def make_state(
    config: ConfigLike,
    problem: Problem | None = None,
    params: Params | None = None,
) -> FitState:
    """The state before the first step (compiled once per trainable set).

    Args:
        config: the run's config.
        problem: from ``make_problem(config)`` (built if omitted).
        params: starting values of the trainable parameters (default: the config's).
    """
    config = lowering.load_config(config)
    problem = lowering.problem_of(config) if problem is None else problem
    params = lowering.initial_params(config) if params is None else params
    return _compiled_init(lowering.spec_of(config))(params, problem)


def fit(config: ConfigLike | None = None) -> FitResult:
    """Run one fit to completion in a compiled loop and return it with its trace.

    Example:
        >>> r = fit({"train": {"trainable": ["b3"], "learning_rate": 0.1}})
        >>> r.status.label, r.steps, round(r.params["b3"], 3)
        ('converged', 10, 2.609)
    """
    return fit_and_executable(lowering.plan_fit(config))[0]


def fit_and_executable(
    plan: FitPlan,
) -> tuple[FitResult, jax.stages.Compiled, list[np.ndarray], dict[str, Any]]:
    """``fit`` of a lowered fit that also returns the executable, its flat inputs and
    named outputs."""
    compiled, compile_s, inputs = fit_compiled(plan)
    with jax.enable_x64(plan.precision == "float64"):
        t0 = time.perf_counter()
        outputs = jax.device_get(compiled(*inputs))
        run_s = time.perf_counter() - t0
    result = fit_result(plan.facts, outputs, compile_s, run_s)
    if plan.intervals == "profile":
        from jaxfit.run.profile import of_plan

        result = dataclasses.replace(result, profile=of_plan(plan, result))
    return result, compiled, inputs, outputs
