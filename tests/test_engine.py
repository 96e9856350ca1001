"""The engine's lean loop (``begin``/``advance``/``conclude``, which carries neither
loss nor gradient) gives every fit exactly what ``init_state``/``step`` give it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxfit.core import engine
from jaxfit.core.engine import Problem, Spec
from jaxfit.core.model import SEED_PARAMS, SEED_X, SEED_Y, Data
from jaxfit.core.optim import Hyper, OptimizerKind
from jaxfit.core.status import Status

# starts: ordinary; far away; huge (the loss overflows to inf while the gradient is
# finite); beyond float32 (inf); NaN
STARTS = [0.0, -40.0, 3e19, float("inf"), float("nan")]
RATES = [0.1, 0.33, 1.0]  # converges, max_steps (slow), diverges


def _problems(max_steps: int, name: str) -> tuple[jax.Array, Problem]:
    start, lr = (jnp.asarray(v, jnp.float32) for v in zip(*[(s, r) for s in STARTS for r in RATES]))
    n = start.shape[0]
    frozen = {k: jnp.full(n, v, jnp.float32) for k, v in SEED_PARAMS.items() if k != name}
    scalar = dict(momentum=0.9, b1=0.9, b2=0.999, eps=1e-8, damping=0.01, tolerance=1e-4)
    hyper = Hyper(
        learning_rate=lr,
        max_steps=jnp.full(n, max_steps, jnp.int32),
        **{k: jnp.full(n, v, jnp.float32) for k, v in scalar.items()},
    )
    data = Data(
        jnp.broadcast_to(jnp.asarray(SEED_X, jnp.float32), (n, 3)),
        jnp.broadcast_to(jnp.asarray(SEED_Y, jnp.float32), (n, 3)),
    )
    return start, Problem(data, frozen, hyper)


def _loop(step, state: engine.FitState) -> engine.FitState:
    return lax.while_loop(lambda s: s.status == Status.RUNNING, step, state)


@pytest.mark.parametrize("name", ["b3", "w1", "b1"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])  # engine.lean's optimizers
@pytest.mark.parametrize("max_steps", [0, 1, 60])
def test_lean_loop_equals_step_loop_bit_for_bit(optimizer, max_steps, name):
    spec = Spec((name,), OptimizerKind(optimizer))
    assert engine.lean(spec)
    start, problems = _problems(max_steps, name)

    @jax.jit
    @jax.vmap
    def both(start: jax.Array, problem: Problem) -> tuple[engine.FitState, engine.FitState]:
        full = _loop(lambda s: engine.step(spec, s, problem), engine.init_state(spec, {name: start}, problem))
        lean = _loop(lambda s: engine.advance(spec, s, problem), engine.begin(spec, {name: start}, problem))
        return full, engine.conclude(spec, lean, problem)

    full, lean = both(start, problems)
    assert set(np.asarray(full.status).tolist()) >= {Status.DIVERGED} | (
        {Status.MAX_STEPS} if max_steps else set()
    )
    np.testing.assert_array_equal(lean.status, full.status)
    np.testing.assert_array_equal(lean.step, full.step)
    # bit for bit, NaNs included
    for got, want in [
        (lean.params[name], full.params[name]),
        (lean.loss, full.loss),
        (lean.grad[name], full.grad[name]),
    ]:
        np.testing.assert_array_equal(np.asarray(got).view(np.int32), np.asarray(want).view(np.int32))
