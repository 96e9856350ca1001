"""Losses: what a fit minimises, and its least-squares form for Gauss–Newton solvers.

With ``r = (y − f)/σ`` over the real points (``model.residuals``):

    ssr      Σ r²                                       (least squares: the default)
    robust   Σ C²·ρ((r/C)²),  C = f_scale               (scipy's ``least_squares`` losses)
             soft_l1 ρ(z) = 2(√(1+z) − 1)   huber ρ(z) = z if z ≤ 1 else 2√z − 1
             cauchy  ρ(z) = ln(1+z)         arctan ρ(z) = arctan z
    poisson  2 Σ (m − d − d·ln(m/d))                    (the Poisson deviance; counts d,
                                                         model m > 0: maximum likelihood)

Each is twice scipy's ``cost``, so ``ssr`` is the χ² of the other modules. Their
least-squares form ``(r̃, J̃)`` is what a Gauss–Newton step and the covariance use:
``ssr``: the residuals and their Jacobian; robust: scipy's rescaling (``J̃ = √(ρ' + 2ρ''r²)·J``,
``r̃ = ρ'·r/√(…)``); ``poisson``: ``r̃ = (d − m)/√m``, ``J̃ = −(∂m/∂p)/√m``, so that
``J̃ᵀJ̃ = JᵀWJ`` (``W = 1/m``) is the Fisher information and ``J̃ᵀr̃`` half the
deviance's gradient (Fisher scoring).

A robust loss *steps* by another form (``majorize``): iteratively reweighted least
squares, ``r̃ = √ρ'·r``, ``J̃ = √ρ'·J``. Every ``ρ`` here is concave, so
``Σ C²ρ(z₀) + ρ'(z₀)(r² − r₀²)`` lies above the loss and touches it at ``r₀``: the same
gradient, and a curvature that never vanishes. scipy's rescaling gives a point past the
knee a Jacobian row of ~0 (Huber's is exactly 0), which leaves a damped Gauss–Newton
system with nothing to step on when every point starts past it.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxfit.core.model import Data, Model, Params, masked_x, residuals, ssr, sum_points

LOSSES = ("ssr", "poisson", "soft_l1", "huber", "cauchy", "arctan")
ROBUST = ("soft_l1", "huber", "cauchy", "arctan")


def rho(kind: str, z: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(ρ(z), ρ'(z), ρ''(z))`` of a robust loss (scipy's definitions), ``z ≥ 0``."""
    if kind == "soft_l1":
        t = 1 + z
        return 2 * (jnp.sqrt(t) - 1), t**-0.5, -0.5 * t**-1.5
    if kind == "huber":
        inside = z <= 1
        s = jnp.where(inside, 1.0, z)  # no 1/√0 in the branch not taken (nor in its gradient)
        return (
            jnp.where(inside, z, 2 * jnp.sqrt(s) - 1),
            jnp.where(inside, 1.0, s**-0.5),
            jnp.where(inside, 0.0, -0.5 * s**-1.5),
        )
    if kind == "cauchy":
        return jnp.log1p(z), 1 / (1 + z), -1 / (1 + z) ** 2
    if kind == "arctan":
        return jnp.arctan(z), 1 / (1 + z * z), -2 * z / (1 + z * z) ** 2
    raise ValueError(f"unknown robust loss {kind!r}; allowed: {', '.join(ROBUST)}")


def _counts(params: Params, data: Data, model: Model) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(m, d, real)``: the model and the counts at every point, padded points masked out."""
    x, y, mask, _ = data
    real = jnp.ones(jnp.shape(y), bool) if mask is None else mask
    if mask is not None:
        x = masked_x(x, mask, model)
    return model(params, x), jnp.where(real, y, 0), real


def value(kind: str, params: Params, data: Data, model: Model, f_scale: jax.Array | None = None) -> jax.Array:
    """The loss at ``params`` (every parameter, by name); inf for ``poisson`` where the
    model is not positive at a real point."""
    if kind == "ssr":
        return ssr(params, data, model)
    if kind == "poisson":
        m, d, real = _counts(params, data, model)
        positive = jnp.all(jnp.where(real, m, 1) > 0, axis=0)
        m = jnp.where(real & (m > 0), m, 1)
        term = m - d - (jax.scipy.special.xlogy(d, m) - jax.scipy.special.xlogy(d, d))
        return jnp.where(positive, 2 * sum_points(jnp.where(real, term, 0)), jnp.inf)
    r = residuals(params, data, model)
    c2 = f_scale * f_scale
    return sum_points(c2 * rho(kind, r * r / c2)[0])


def linearized(
    kind: str,
    model: Model,
    names: tuple[str, ...],
    trainable: Params,
    frozen: Params,
    data: Data,
    f_scale: jax.Array | None = None,
    majorize: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """``(r̃, J̃)``: the least-squares form of the loss at ``trainable``: ``r̃`` (n,),
    ``J̃`` as its ``k`` columns (each (n,)) in the order of ``names`` (zero rows at
    padded points); under ``core.lanes`` each ``(n, fits)``. ``majorize``: a robust
    loss's reweighted form, for the steps (the module docstring)."""
    if kind == "poisson":
        m, jac = _columns(lambda t: _counts({**frozen, **t}, data, model)[0], names, trainable)
        _, d, real = _counts({**frozen, **trainable}, data, model)
        root = jnp.sqrt(jnp.where(real & (m > 0), m, 1))
        w = jnp.where(real, 1 / root, 0)
        return (d - m) * w, tuple(-c * w for c in jac)

    r, jac = _columns(lambda t: residuals({**frozen, **t}, data, model), names, trainable)
    if kind == "ssr":
        return r, jac
    c2 = f_scale * f_scale
    _, rho1, rho2 = rho(kind, r * r / c2)
    if majorize:
        w = jnp.sqrt(rho1)
        return r * w, tuple(c * w for c in jac)
    scale = jnp.sqrt(jnp.maximum(rho1 + 2 * (rho2 / c2) * r * r, jnp.finfo(r.dtype).eps))
    return r * rho1 / scale, tuple(c * scale for c in jac)


def _columns(
    f: Callable[[Params], jax.Array], names: tuple[str, ...], params: Params
) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    """``f(params)`` and its derivative along each parameter of ``names`` (forward mode,
    one ``jvp`` each). A parameter may hold one value per fit of independent fits
    (``core.lanes``): a tangent of ones then gives every fit's column at once."""

    def along(n: str) -> jax.Array:
        return jax.jvp(lambda v: f({**params, n: v}), (params[n],), (jnp.ones_like(params[n]),))[1]

    return f(params), tuple(along(n) for n in names)
