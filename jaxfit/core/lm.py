"""Levenberg–Marquardt: the least-squares method for an SSR loss (what scipy's
``curve_fit`` runs), one fit at a time, pure and vmappable.

A step, at parameters ``p`` with residuals ``r = y - predicted`` and their Jacobian
``J`` (``jax.jacfwd``, trainable parameters only):

    A = JᵀJ,  g = Jᵀr,  δ = -(A + λ·D)⁻¹ g
    D = the largest diag(A) seen so far                  (MINPACK's column scaling)
    try p + δ:  SSR no larger -> accept;   else reject (p stays)
    λ: Nielsen's update from ρ = actual / predicted reduction (``next_state``)

``step_size`` is what the step applied (``-δ`` when accepted, zeros when rejected),
so ``new = old - step_size`` holds as for every optimizer. A fit converges when an
accepted step has every ``|δ| < tolerance``, or (with ``ftol > 0``) changes the SSR by
less than ``max(ftol, ftol·SSR)``: a rejected step is never convergence.
The damping ``λ`` is the optimizer state (``LMState``), starting at ``hyper.damping``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxfit.core.model import Params

LOWEST, HIGHEST = 1e-12, 1e12
"""Bounds of the damping."""


class LMState(NamedTuple):
    damping: jax.Array
    """λ: 0 is Gauss–Newton, large is a short gradient step."""
    growth: jax.Array
    """ν: the factor of λ at the next rejected step (doubles while steps are rejected)."""
    scale: jax.Array
    """(k,) MINPACK's column scaling: the largest ``diag(JᵀJ)`` seen so far."""


def proposal(
    names: tuple[str, ...],
    r: jax.Array,
    J: jax.Array,
    damping: jax.Array,
    held: jax.Array | None = None,
    seen: jax.Array | None = None,
) -> tuple[Params, jax.Array]:
    """The damped Gauss–Newton step ``δ`` (by name) for residuals ``r`` (n,) and
    their Jacobian ``J`` (n, k), columns in the order of ``names``; ``held`` (bool,
    (k,)): parameters the step leaves where they are (``δ = 0``), the others stepping
    as if those were frozen."""
    if held is not None:
        J = jnp.where(held[None, :], 0, J)
    A, g = gram(J, r)
    if held is not None:
        A = A + jnp.diag(held.astype(A.dtype))
    d = jnp.diag(A) if seen is None else jnp.maximum(jnp.diag(A), seen)
    scale = jnp.maximum(d, 1e-12 * jnp.max(d) + jnp.finfo(d.dtype).tiny)
    delta = solve_spd(A + damping * jnp.diag(scale), -g)
    return {n: delta[i] for i, n in enumerate(names)}, d


def gram(J: jax.Array, r: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(JᵀJ, Jᵀr)`` for ``J`` (n, k): for small ``k`` as ``k(k+1)/2 + k`` sums of
    elementwise products, which vectorise across vmapped fits (a batch of tiny matrix
    products does not, on CPU)."""
    k = J.shape[-1]
    if k > UNROLLED:
        return J.T @ J, J.T @ r
    cols = [J[:, i] for i in range(k)]
    A = [[None] * k for _ in range(k)]
    for i in range(k):
        for j in range(i + 1):
            A[i][j] = A[j][i] = jnp.sum(cols[i] * cols[j])
    return jnp.stack([jnp.stack(row) for row in A]), jnp.stack([jnp.sum(c * r) for c in cols])


UNROLLED = 16
"""Systems up to this size are solved by an unrolled Cholesky factorisation:
elementwise ops that vectorise across vmapped fits (a batched LAPACK call does not)."""


def solve_spd(M: jax.Array, b: jax.Array) -> jax.Array:
    """``M⁻¹ b`` for a symmetric positive definite ``M`` (k, k)."""
    k = M.shape[0]
    if k > UNROLLED:
        return jnp.linalg.solve(M, b)
    L = [[None] * k for _ in range(k)]
    for i in range(k):
        for j in range(i + 1):
            acc = M[i, j] - sum((L[i][m] * L[j][m] for m in range(j)), jnp.zeros((), M.dtype))
            L[i][j] = jnp.sqrt(acc) if i == j else acc / L[j][j]
    z = []
    for i in range(k):  # L z = b
        z.append((b[i] - sum((L[i][m] * z[m] for m in range(i)), jnp.zeros((), M.dtype))) / L[i][i])
    x = [None] * k
    for i in reversed(range(k)):  # Lᵀ x = z
        x[i] = (z[i] - sum((L[m][i] * x[m] for m in range(i + 1, k)), jnp.zeros((), M.dtype))) / L[i][i]
    return jnp.stack(x)


def predicted(names: tuple[str, ...], r: jax.Array, J: jax.Array, delta: Params) -> jax.Array:
    """The loss reduction the linear model predicts for ``delta``: ``‖r‖² − ‖r + Jδ‖²``
    (in a form without cancellation; ``J``'s columns in the order of ``names``)."""
    Jd = sum(J[:, i] * delta[n] for i, n in enumerate(names))
    return -jnp.sum(Jd * (2 * r + Jd))


def next_state(state: LMState, accepted: jax.Array, ratio: jax.Array, scale: jax.Array) -> LMState:
    """Nielsen's damping update (Madsen, Nielsen & Tingleff 2004): after an accepted
    step ``λ·max(1/3, 1 − (2ρ − 1)³)`` with ``ρ`` the actual over the predicted
    reduction, ``ν = 2``; after a rejected one ``λ·ν`` and ``ν`` doubles."""
    damping, growth, _ = state
    shrink = jnp.maximum(1 / 3, 1 - (2 * ratio - 1) ** 3)
    damping = jnp.where(accepted, damping * shrink, damping * growth)
    growth = jnp.where(accepted, 2.0, 2 * growth)
    return LMState(
        jnp.clip(damping, LOWEST, HIGHEST).astype(state.damping.dtype),
        jnp.minimum(growth, 2.0**30).astype(state.growth.dtype),
        scale,
    )
