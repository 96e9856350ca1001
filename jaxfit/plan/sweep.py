"""The initial values and hyperparameters of every fit in a batch, as a pure
function of the fit's global index.

A ``Plan`` (static, hashable) says how each quantity varies; ``Tables`` (traced)
hold the numbers (``problem.plan_of`` builds both from a config). ``draw(plan, tables, index)`` gives fit ``index``'s starting
parameters and hyperparameters, on the device, independent of block size, device
count or process layout: random draws use ``fold_in(seed, quantity, index)``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxfit.core.example import PARAM_NAMES
from jaxfit.core.model import Params

HYPER_NAMES: tuple[str, ...] = ("learning_rate", "tolerance", "max_steps")

FIXED, LINSPACE, VALUES, NORMAL, UNIFORM = "fixed", "linspace", "values", "normal", "uniform"


class Plan(NamedTuple):
    """Static: how each quantity in ``quantities`` varies, and the values-table width."""

    kinds: tuple[str, ...]
    capacity: int = 8
    names: tuple[str, ...] = PARAM_NAMES
    """The model's parameter names."""

    counted: bool = False
    """Whether each grid point is fitted more than once (``count > 1``)."""

    @property
    def grid(self) -> tuple[int, ...]:
        """Rows of the grid axes, slowest first."""
        return tuple(q for q, k in enumerate(self.kinds) if k in (LINSPACE, VALUES))

    @property
    def quantities(self) -> tuple[str, ...]:
        """Everything that may vary across fits, in grid order (the last varies fastest):
        the model's parameters, then ``HYPER_NAMES``."""
        return self.names + HYPER_NAMES

    def varying(self) -> tuple[str, ...]:
        """Names of the quantities that are not fixed."""
        return tuple(q for q, k in zip(self.quantities, self.kinds) if k != FIXED)


class Tables(NamedTuple):
    """Traced numbers behind a ``Plan`` (row ``q`` belongs to ``plan.quantities[q]``)."""

    coef: jax.Array
    """(Q, 3): fixed value | start, stop, num | mean, std | low, high."""
    values: jax.Array
    """(Q, capacity): explicit grid values, padded."""
    size: jax.Array
    """(Q,) int32: grid size of each quantity (1 if not a grid axis)."""
    stride: jax.Array
    """(Q,) int32: grid index stride of each quantity."""
    count: jax.Array
    """() int32: fits per grid point."""
    seed: jax.Array
    """() uint32."""


class Draw(NamedTuple):
    params: Params
    learning_rate: jax.Array
    tolerance: jax.Array
    max_steps: jax.Array


def fixed_plan(names: tuple[str, ...], values: dict[str, float]) -> tuple[Plan, Tables]:
    """A plan of one fit from ``values`` (every parameter of ``names`` and every
    ``HYPER_NAMES``), nothing varying: the base a start per data set replaces."""
    quantities = names + HYPER_NAMES
    coef = np.zeros((len(quantities), 3))
    coef[:, 0] = [values[q] for q in quantities]
    tables = Tables(
        coef=coef,
        values=np.zeros((len(quantities), 8)),
        size=np.ones(len(quantities), np.int32),
        stride=np.ones(len(quantities), np.int32),
        count=np.asarray(1, np.int32),
        seed=np.asarray(0, np.uint32),
    )
    return Plan((FIXED,) * len(quantities), 8, names), tables


def tables_as(tables: Tables, dtype: np.dtype) -> Tables:
    """Tables with float rows in ``dtype`` (host arrays)."""
    return tables._replace(coef=np.asarray(tables.coef, dtype), values=np.asarray(tables.values, dtype))


def draw(plan: Plan, tables: Tables, index: jax.Array) -> Draw:
    """Starting values and hyperparameters of fits ``index`` (int32 array, any shape)."""
    dtype = tables.coef.dtype
    # grid indices by integer division only where the plan needs it (a division by a
    # traced divisor costs more than the rest of a fit's start): the slowest axis needs
    # no remainder, the fastest no quotient (its stride is 1)
    point = index // tables.count if plan.counted else index
    grid = plan.grid
    key = jax.random.key(tables.seed)
    out = {}
    for q, (name, kind) in enumerate(zip(plan.quantities, plan.kinds)):
        c = tables.coef[q]
        if kind == FIXED:
            value = jnp.broadcast_to(c[0], index.shape)
        elif kind in (LINSPACE, VALUES):
            k = point
            if q != grid[-1]:
                k = k // tables.stride[q]
            if q != grid[0]:
                k = k % tables.size[q]
            if kind == VALUES:
                value = tables.values[q][k]
            else:
                step = (c[1] - c[0]) / jnp.maximum(c[2] - 1, 1).astype(dtype)
                value = c[0] + k.astype(dtype) * step
        else:
            keys = jax.vmap(lambda i, q=q: jax.random.fold_in(jax.random.fold_in(key, q), i))(
                index.ravel()
            ).reshape(index.shape)
            if kind == NORMAL:
                z = jax.vmap(lambda k: jax.random.normal(k, (), dtype))(keys.ravel())
                value = c[0] + c[1] * z.reshape(index.shape)
            else:
                u = jax.vmap(lambda k: jax.random.uniform(k, (), dtype))(keys.ravel())
                value = c[0] + (c[1] - c[0]) * u.reshape(index.shape)
        out[name] = value
    return Draw(
        params={n: out[n] for n in plan.names},
        learning_rate=out["learning_rate"],
        tolerance=out["tolerance"],
        max_steps=jnp.round(out["max_steps"]).astype(jnp.int32),
    )
