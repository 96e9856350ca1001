"""Fits on the vector lanes: a block of fits as a struct of arrays.

A vmapped fit keeps each fit's points on the minor axis: its sums over 5-30 points
are short horizontal reductions, and a step of several parameters is many tiny ops per
fit. On the lanes every parameter, residual and Jacobian column is instead an array
whose *last* axis is the block's fits, ``(fits,)`` or ``(n, fits)``: each operation of
a step runs along the fits (the CPU's vector lanes, a GPU's threads), a sum over a
fit's points adds whole rows, and a damped normal-equation solve is ``k(k+1)/2 + k``
elementwise products and an unrolled Cholesky over whole arrays.

The core is written for both forms (points on axis 0, sums over them by
``model.sum_points``; per-fit values elementwise; the Jacobian by one forward-mode
``jvp`` per trainable parameter, ``losses._columns``), so the engine's own ``step``
runs a block unchanged, given

- the model evaluated at every point for every fit (``Lanes``), and
- the data with its points first (``data_of``).

A fit's arithmetic does not depend on its lane or on the block's size, so neither do
its results: bit for bit across block sizes and device counts, as long as every lane
is computed by vector code (XLA:CPU computes a loop's remainder past the last full
vector with scalar code, which may round differently): blocks are ``width``-rounded
to a multiple of ``MULTIPLE``, and at least ``FEWEST`` wide.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxfit.core import lm
from jaxfit.core.model import Data, Model, Params, masked_x


def suits(optimizer: str, trainable: int) -> bool:
    """Whether fits run on the lanes: Levenberg–Marquardt of 2 to ``lm.UNROLLED``
    parameters, whose steps are many small per-fit operations (the batch, the single
    fit and the service alike, so a fit gives the same bits in each)."""
    return optimizer == "lm" and 1 < trainable <= lm.UNROLLED


MULTIPLE = 16
"""Lanes come in multiples of the widest vector of float32 (AVX-512: 16)..."""
FEWEST = 64
"""... and at least 64 of them: XLA:CPU fuses narrower blocks otherwise (its fusion
decisions weigh the arrays' sizes), which may round the statistics differently."""


def width(lanes: int) -> int:
    """``lanes`` rounded up to a multiple of ``MULTIPLE``, at least ``FEWEST``."""
    return max(FEWEST, -(-lanes // MULTIPLE) * MULTIPLE)


class Lanes(NamedTuple):
    """``model`` for a block of fits: ``Lanes(model)(params, x)`` is ``(n, fits)``
    for parameters ``(fits,)`` (or one scalar every fit shares) and ``x`` per point,
    ``(n,)`` / ``(n, d)`` shared by every fit or ``(n, fits)`` / ``(n, fits, d)``
    per fit. Static and hashable, like the model it wraps."""

    model: Model

    @property
    def names(self) -> tuple[str, ...]:
        return self.model.names

    @property
    def dims(self) -> int:
        return getattr(self.model, "dims", 0)

    def __call__(self, params: Params, x: jax.Array) -> jax.Array:
        per_fit = jnp.ndim(x) == (3 if self.dims else 2)
        axes = {n: 0 if jnp.ndim(v) else None for n, v in params.items()}
        if getattr(self.model, "layout", None) is not None:  # the model takes every point at once
            return jax.vmap(self.model, in_axes=(axes, 1 if per_fit else None), out_axes=1)(params, x)

        def at_point(xi: jax.Array) -> jax.Array:  # one point of every fit: (fits,)
            return jax.vmap(self.model, in_axes=(axes, 0 if per_fit else None))(params, xi)

        # fits inside, points outside: every op is (n, fits) with the fits minor
        return jax.vmap(at_point)(x)


def data_of(data: Data, per_fit: bool, model: Model) -> Data:
    """A block's data with the points first. ``per_fit``: each fit's own data set,
    leaves ``(fits, n, ...)``, though ``x`` may be one every fit shares (``(n,)`` or
    ``(n, d)``, or None: kept as it is); else one data set for every fit, ``(n, ...)``, whose
    ``y``, mask and sigma gain a fits axis of 1 (to broadcast against ``(n, fits)``).
    ``x`` is zeroed at padded points here, once per block."""
    x, y, mask, sigma = data
    if mask is not None and x is not None:
        x = masked_x(x, mask, model)
    if per_fit:

        def first(a: jax.Array | None) -> jax.Array | None:
            return None if a is None else jnp.swapaxes(a, 0, 1)

        x_per_fit = x is not None and jnp.ndim(x) == jnp.ndim(y) + (1 if getattr(model, "dims", 0) else 0)
        return Data(first(x) if x_per_fit else x, first(y), first(mask), first(sigma))

    def column(a: jax.Array | None) -> jax.Array | None:
        return None if a is None else a[:, None]

    return Data(x, column(y), column(mask), column(sigma))
