"""The seed's network: one input, two softplus hidden nodes, one output.

    predicted(x) = w3 * softplus(w1*x + b1)     # "blue" curve (top node)
                 + w4 * softplus(w2*x + b2)     # "orange" curve (bottom node)
                 + b3                           # moves the "green squiggle"

Parameters are a pytree: a dict from name to a scalar array (or, under ``vmap``,
one value per fit). Every function here is pure and works under ``jit``, ``grad``
and ``vmap``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxfit.core.example import PARAM_NAMES, SEED_PARAMS, SEED_X, SEED_Y

__all__ = ["PARAM_NAMES", "SEED_PARAMS", "SEED_X", "SEED_Y", "Data", "Params", "predict", "ssr"]

SMALL_DATA = 8
"""Data sets up to this size are summed term by term (see ``ssr``)."""

Params = dict[str, jax.Array]


class Data(NamedTuple):
    """Observations: ``x`` (dosage) and ``y`` (efficacy), both shape ``(n,)``."""

    x: jax.Array
    y: jax.Array


@jax.custom_jvp
def softplus(z: jax.Array) -> jax.Array:
    """``log(1 + e^z) = max(z, 0) + log1p(e^-|z|)``, stable for large ``|z|``."""
    return jnp.maximum(z, 0) + jnp.log1p(jnp.exp(-jnp.abs(z)))


@softplus.defjvp
def _softplus_jvp(primals: tuple[jax.Array], tangents: tuple[jax.Array]) -> tuple[jax.Array, jax.Array]:
    # the derivative is the sigmoid, from the same exp(-|z|): one exp per evaluation
    (z,), (dz,) = primals, tangents
    e = jnp.exp(-jnp.abs(z))
    sigmoid = jnp.where(z >= 0, 1.0, e) / (1.0 + e)
    return jnp.maximum(z, 0) + jnp.log1p(e), sigmoid * dz


def blue(params: Params, x: jax.Array) -> jax.Array:
    """Top node's contribution: ``w3 * softplus(w1*x + b1)``."""
    return params["w3"] * softplus(params["w1"] * x + params["b1"])


def orange(params: Params, x: jax.Array) -> jax.Array:
    """Bottom node's contribution: ``w4 * softplus(w2*x + b2)``."""
    return params["w4"] * softplus(params["w2"] * x + params["b2"])


def predict(params: Params, x: jax.Array) -> jax.Array:
    """The green squiggle: ``blue + orange + b3``, same shape as ``x``."""
    return blue(params, x) + orange(params, x) + params["b3"]


def ssr(params: Params, data: Data) -> jax.Array:
    """Sum of squared residuals ``sum_i (y_i - predicted(x_i))^2`` (a scalar)."""
    if data.x.shape[0] <= SMALL_DATA:
        # One term per observation: under vmap every op then runs along the fits
        # axis, which XLA:CPU vectorises far better than many length-3 reductions.
        total = jnp.zeros((), data.y.dtype)
        for i in range(data.x.shape[0]):
            r = data.y[i] - predict(params, data.x[i])
            total = total + r * r
        return total
    residual = data.y - predict(params, data.x)
    return jnp.sum(residual * residual)
