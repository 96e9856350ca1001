"""Single fits: the compiled step for your own loop, and ``fit`` with a full trace.

Compiled functions are cached by what forces a compile (the ``Spec``; JAX adds
shapes and dtypes), so changing initial values, learning rate, tolerance or
max_steps reuses the same executable.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxfit import engine
from jaxfit import problem as _problem
from jaxfit.compiled import executable
from jaxfit.config import Config, load_config
from jaxfit.engine import FitState, Problem, Spec
from jaxfit.model import PARAM_NAMES, Params
from jaxfit.problem import initial_params, precision, spec_of
from jaxfit.results import FitResult
from jaxfit.status import Status

TRACE_LIMIT = 1000
"""Steps recorded in a single fit's trace (longer runs are marked as thinned)."""

StepFn = Callable[[FitState, Problem], FitState]


@functools.cache
def _compiled_step(spec: Spec) -> StepFn:
    return jax.jit(functools.partial(engine.step, spec))


@functools.cache
def _compiled_init(spec: Spec) -> Callable[[Params, Problem], FitState]:
    return jax.jit(functools.partial(engine.init_state, spec))


@functools.cache
def _compiled_traced_fit(spec: Spec, trace_limit: int) -> Callable[..., Any]:
    def fit_one(params: Params, problem: Problem) -> tuple[FitState, engine.Trace, Any]:
        state0 = engine.init_state(spec, params, problem)
        final, trace = engine.run_traced(spec, state0, problem, trace_limit)
        return final, trace, state0.loss

    return jax.jit(fit_one)


def make_step(config: Config | Mapping[str, Any] | str | Path) -> StepFn:
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
    return _compiled_step(spec_of(load_config(config)))


def make_problem(config: Config | Mapping[str, Any] | str | Path) -> Problem:
    """A config's data, frozen parameter values and hyperparameters, as JAX arrays.

    For ``precision: float64``, call it (and the step) inside ``with jax.enable_x64(True):``.
    """
    return _problem.make_problem(load_config(config))


def make_state(
    config: Config | Mapping[str, Any] | str | Path,
    problem: Problem | None = None,
    params: Params | None = None,
) -> FitState:
    """The state before the first step (compiled once per trainable set).

    Args:
        config: the run's config.
        problem: from ``make_problem(config)`` (built if omitted).
        params: starting values of the trainable parameters (default: the config's).
    """
    config = load_config(config)
    problem = _problem.make_problem(config) if problem is None else problem
    params = initial_params(config) if params is None else params
    return _compiled_init(spec_of(config))(params, problem)


def fit(config: Config | Mapping[str, Any] | str | Path | None = None) -> FitResult:
    """Run one fit to completion in a compiled loop and return it with its trace.

    Example:
        >>> r = fit({"train": {"trainable": ["b3"], "learning_rate": 0.1}})
        >>> r.status.label, r.steps, round(r.params["b3"], 3)
        ('converged', 10, 2.609)
    """
    config = load_config(config)
    spec = spec_of(config)
    with precision(config):
        problem = _problem.make_problem(config)
        init = initial_params(config)
        fn = _compiled_traced_fit(spec, TRACE_LIMIT)
        compiled, compile_s = executable(fn, (spec, TRACE_LIMIT), (init, problem))
        t0 = time.perf_counter()
        final, trace, init_loss = jax.device_get(compiled(init, problem))
        run_s = time.perf_counter() - t0
    start = config.params.model_dump()
    end = {**start, **{n: float(final.params[n]) for n in spec.trainable}}
    steps = int(final.step)
    rows = min(steps, TRACE_LIMIT)

    def cut(by_name: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {n: np.asarray(by_name[n][:rows]) for n in spec.trainable}

    return FitResult(
        params={n: end[n] for n in PARAM_NAMES},
        init={n: start[n] for n in PARAM_NAMES},
        trainable=spec.trainable,
        loss=float(final.loss),
        init_loss=float(init_loss),
        steps=steps,
        status=Status(int(final.status)),
        trace_params=cut(trace.params),
        trace_loss=np.asarray(trace.loss[:rows]),
        trace_grad=cut(trace.grad),
        trace_step_size=cut(trace.step_size),
        precision=config.precision,
        compile_s=compile_s,
        run_s=run_s,
    )
