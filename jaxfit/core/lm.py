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

In float32, for up to ``UNROLLED`` parameters, the state also carries the normal
equations ``(JᵀJ, Jᵀr, ‖r‖²)`` of the current point (``normal_of``; ``carries``): a step
linearizes its *trial* only — the SSR comes with it — and keeps the trial's normal
equations when it accepts the trial; so a step is one linearization where it was one
plus a loss, and a finished fit holds ``JᵀJ`` at its optimum (its covariance is an
inverse: ``stats.of_normal``). Float64 linearizes the current point at each step:
its step is refined from ``J`` itself (``refined``).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxfit.core.model import Params, sum_points

LOWEST, HIGHEST = 1e-12, 1e12
"""Bounds of the damping."""


def ordered(params: Params) -> Params:
    """``params`` by sorted name: the order of a step's columns of ``J`` and of the
    carried normal equations (a dict's pytree order, so it survives every ``jit`` and
    loop)."""
    return {n: params[n] for n in sorted(params)}


def carries(dtype: object, k: int) -> bool:
    """Whether a fit of ``k`` parameters in ``dtype`` carries its normal equations
    (``normal_of``; the module docstring)."""
    return jnp.dtype(dtype) == jnp.float32 and k <= UNROLLED


def normal_of(J: tuple[jax.Array, ...], r: jax.Array) -> jax.Array:
    """The normal equations of residuals ``r`` and Jacobian columns ``J`` (``gram``'s
    sums) packed in one array, ``(m, ...)``: ``JᵀJ``'s upper triangle row by row, then
    ``Jᵀr``, then ``‖r‖²`` (``m = k(k+1)/2 + k + 1``; on the lanes each a row of the
    block's fits). The parameters in sorted order (``ordered``)."""
    A, g = gram(J, r)
    k = len(J)
    entries = [A[i, j] for i in range(k) for j in range(i, k)] + [g[i] for i in range(k)]
    return jnp.stack([*entries, sum_points(r * r)])


def unpacked(normal: jax.Array, k: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(JᵀJ, Jᵀr, ‖r‖²)`` of ``normal_of``'s array: ``(k, k, ...)``, ``(k, ...)``, ``(...)``."""
    entry = [normal[i] for i in range(normal.shape[0])]
    rows, at = [[None] * k for _ in range(k)], 0
    for i in range(k):
        for j in range(i, k):
            rows[i][j] = rows[j][i] = entry[at]
            at += 1
    return jnp.stack([jnp.stack(row) for row in rows]), jnp.stack(entry[at : at + k]), entry[-1]


class LMState(NamedTuple):
    damping: jax.Array
    """λ: 0 is Gauss–Newton, large is a short gradient step."""
    growth: jax.Array
    """ν: the factor of λ at the next rejected step (doubles while steps are rejected)."""
    scale: tuple[jax.Array, ...]
    """MINPACK's column scaling, one per parameter: the largest ``diag(JᵀJ)`` seen so
    far (a tuple, so that every leaf of the state is one value per fit)."""
    normal: jax.Array | None = None
    """The normal equations at the current parameters (``normal_of``), where carried
    (``carries``)."""


def proposal(
    names: tuple[str, ...],
    A: jax.Array,
    g: jax.Array,
    damping: jax.Array,
    held: jax.Array | None = None,
    seen: tuple[jax.Array, ...] | None = None,
    refine: tuple[jax.Array, tuple[jax.Array, ...]] | None = None,
) -> tuple[Params, tuple[jax.Array, ...], jax.Array, jax.Array]:
    """The damped Gauss–Newton step ``δ`` (by name) for the normal equations ``A =
    JᵀJ`` (k, k) and ``g = Jᵀr`` (k,) in the order of ``names``; ``held`` (bool, (k,)):
    parameters the step leaves where they are (``δ = 0``), the others stepping as if
    those were frozen; ``refine``: ``(r, J)`` to correct the step once from ``J``
    itself (``refined``). Also returns the column scaling seen so far, and ``Jᵀr`` and
    ``diag(JᵀJ)`` (each (k,), held columns zeroed) for ``stationary``. Under
    ``core.lanes`` every one of these has a trailing axis of fits."""
    k = len(names)
    if held is not None:
        A = jnp.stack(
            [jnp.stack([jnp.where(held[i] | held[j], 0, A[i, j]) for j in range(k)]) for i in range(k)]
        )
        g = jnp.where(held, 0, g)
        A = _plus_diagonal(A, held.astype(A.dtype))
    here = diagonal(A)
    d = here if seen is None else jnp.maximum(here, jnp.stack(seen))
    scale = jnp.maximum(d, 1e-12 * jnp.max(d, axis=0) + jnp.finfo(d.dtype).tiny)
    M = _plus_diagonal(A, damping * scale)
    delta = solve_spd(M, -g)
    if refine is not None:
        r, J = refine
        if held is not None:
            J = tuple(jnp.where(held[i], 0, c) for i, c in enumerate(J))
        delta = refined(M, J, r, damping * scale, delta)
    return {n: delta[i] for i, n in enumerate(names)}, tuple(d[i] for i in range(k)), g, here


def refined(
    M: jax.Array, J: tuple[jax.Array, ...], r: jax.Array, damping: jax.Array, delta: jax.Array
) -> jax.Array:
    """``delta`` of ``M δ = −Jᵀr`` (``M = JᵀJ + diag(damping)``) corrected once by the
    corrected semi-normal equations: the residual ``Jᵀ(r + Jδ) + damping·δ`` is formed
    from ``J`` and ``r``, not from ``M``, so the step's error follows the condition of
    ``J`` rather than of ``JᵀJ`` (Björck 1987) — what a QR step (MINPACK's) gets, for
    ``k`` more sums over the points."""
    linear = r + sum(J[i] * delta[i] for i in range(len(J)))
    h = jnp.stack([sum_points(c * linear) for c in J]) + damping * delta
    return delta + solve_spd(M, -h)


STATIONARY = {"float32": 3e-3, "float64": 1e-6}
"""Largest cosine between the residuals and a column of the Jacobian at a stationary
point, by precision (``stationary``)."""


def stationary(
    loss: jax.Array,
    g: jax.Array,
    d: jax.Array,
    params: Params,
    step: jax.Array,
    ftol: jax.Array | None = None,
) -> jax.Array:
    """Whether the fit is at a stationary point, to first order: for every column
    ``J_j`` (``g = Jᵀr`` and ``d = diag(JᵀJ)`` as ``proposal`` returns them; ``‖r‖²``
    is the ``loss``: the SSR, and for the other losses at least the reweighted ``‖r̃‖²``)

    - within ``τ`` of orthogonal to the residuals, ``|J_jᵀr| ≤ τ·‖J_j‖·‖r‖``
      (MINPACK's gtol measure; ``τ`` is ``STATIONARY``, or ``√ftol`` where larger: a
      relative decrease below ``ftol`` is all a step along ``J_j`` has left), or
    - with an undamped step along it below ``step`` (``|J_jᵀr| ≤ step·‖J_j‖²``: the
      step test's own threshold, e.g. a fit through the data), or
    - with ``J_jᵀr`` at the rounding of the residuals, ``16·eps·‖J_j‖·‖f‖``, the
      model's size ``‖f‖`` bounded by ``Σ_i ‖J_i‖·|p_i|`` (the residuals of a fit
      that meets the data to the last digits are rounding, whatever their direction).
    """
    tau = STATIONARY[jnp.dtype(loss.dtype).name]
    if ftol is not None:
        tau = jnp.maximum(tau, jnp.sqrt(ftol))
    rr = loss
    values = list(params.values())
    size = sum(jnp.sqrt(d[i]) * jnp.abs(values[i]) for i in range(len(values)))
    floor = 16 * jnp.finfo(loss.dtype).eps * size
    flags = [
        (g[i] * g[i] <= (tau * tau) * d[i] * rr)
        | (jnp.abs(g[i]) <= step * d[i])
        | (jnp.abs(g[i]) <= floor * jnp.sqrt(d[i]))
        for i in range(g.shape[0])
    ]
    return functools.reduce(jnp.logical_and, flags)


def diagonal(A: jax.Array) -> jax.Array:
    """``A[i, i]`` for ``A`` (k, k, ...): (k, ...)."""
    return jnp.stack([A[i, i] for i in range(A.shape[0])])


def _plus_diagonal(A: jax.Array, v: jax.Array) -> jax.Array:
    """``A + diag(v)`` for ``A`` (k, k, ...) and ``v`` (k, ...)."""
    k = A.shape[0]
    eye = jnp.eye(k, dtype=A.dtype).reshape((k, k) + (1,) * (v.ndim - 1))
    return A + eye * v[None]


def gram(cols: tuple[jax.Array, ...], r: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(JᵀJ, Jᵀr)`` for the columns ``cols`` of ``J`` (each (n,), or ``(n, fits)``
    under ``core.lanes``): for small ``k`` as ``k(k+1)/2 + k`` sums of elementwise
    products, which vectorise across vmapped fits (a batch of tiny matrix products
    does not, on CPU)."""
    k = len(cols)
    if k > UNROLLED:
        J = jnp.stack(cols, axis=1)
        return jnp.einsum("ni...,nj...->ij...", J, J), jnp.einsum("ni...,n...->i...", J, r)
    A = [[None] * k for _ in range(k)]
    for i in range(k):
        for j in range(i + 1):
            A[i][j] = A[j][i] = sum_points(cols[i] * cols[j])
    g = [sum_points(c * r) for c in cols]
    return jnp.stack([jnp.stack(row) for row in A]), jnp.stack(g)


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


def predicted(names: tuple[str, ...], r: jax.Array, J: tuple[jax.Array, ...], delta: Params) -> jax.Array:
    """The loss reduction the linear model predicts for ``delta``: ``‖r‖² − ‖r + Jδ‖²``
    (in a form without cancellation; ``J``'s columns in the order of ``names``)."""
    Jd = sum(J[i] * delta[n] for i, n in enumerate(names))
    return -sum_points(Jd * (2 * r + Jd))


def predicted_normal(A: jax.Array, g: jax.Array, delta: jax.Array) -> jax.Array:
    """``predicted`` from the normal equations: ``−(2gᵀδ + δᵀAδ)`` for ``δ`` (k,)."""
    k = delta.shape[0]
    Ad = [sum(A[i, j] * delta[j] for j in range(k)) for i in range(k)]
    return -sum(delta[i] * (2 * g[i] + Ad[i]) for i in range(k))


def next_state(
    state: LMState,
    accepted: jax.Array,
    ratio: jax.Array,
    scale: tuple[jax.Array, ...],
    normal: jax.Array | None = None,
) -> LMState:
    """Nielsen's damping update (Madsen, Nielsen & Tingleff 2004): after an accepted
    step ``λ·max(1/3, 1 − (2ρ − 1)³)`` with ``ρ`` the actual over the predicted
    reduction, ``ν = 2``; after a rejected one ``λ·ν`` and ``ν`` doubles. ``normal``:
    the trial's normal equations, kept where it was accepted (where they are carried)."""
    damping, growth = state.damping, state.growth
    shrink = jnp.maximum(1 / 3, 1 - (2 * ratio - 1) ** 3)
    damping = jnp.where(accepted, damping * shrink, damping * growth)
    growth = jnp.where(accepted, 2.0, 2 * growth)
    return LMState(
        jnp.clip(damping, LOWEST, HIGHEST).astype(state.damping.dtype),
        jnp.minimum(growth, 2.0**30).astype(state.growth.dtype),
        scale,
        None if normal is None else jnp.where(accepted, normal, state.normal),
    )
