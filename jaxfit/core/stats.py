"""Statistics of a finished fit: covariance, standard errors and goodness of fit,
from the Jacobian of the (weighted) residuals at the final parameters. Pure and
vmappable: a batch gets every fit's statistics in its compiled program.

With ``r = (y - f)/σ`` (``r = y - f`` without σ) over the ``n`` real points, ``J``
its Jacobian with respect to the ``k`` trainable parameters (``jax.jacfwd``):

    χ² = Σ r²,   dof = n − k,   redchi = χ²/dof
    covariance = (JᵀJ)⁻¹ · redchi      (scipy ``curve_fit``; ``absolute_sigma``: (JᵀJ)⁻¹),
                 through J = QR (``inverse_qr``: the condition of J, not of JᵀJ)
    stderr = √diag(covariance)
    aic = n·ln(χ²/n) + 2k,   bic = n·ln(χ²/n) + k·ln n      (lmfit's)
    rsquared = 1 − χ² / Σ ((y − ȳ)/σ)²     (ȳ the σ-weighted mean)

A fit whose ``J`` is rank-deficient or not finite (a parameter without effect, more
parameters than points), or with ``dof ≤ 0``, is flagged ``singular`` and gets
infinite standard errors and covariance: data, not a warning.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxfit.core import losses
from jaxfit.core.lm import UNROLLED, diagonal, gram, unpacked
from jaxfit.core.model import Data, Model, Params, sum_points
from jaxfit.core.solvers import all_of


class StatsSpec(NamedTuple):
    """What the statistics are asked for (static: part of the compile key)."""

    absolute_sigma: bool = False
    """σ are absolute standard deviations: the covariance is not scaled by redchi."""
    covariance: bool = True
    """Keep the full ``(k, k)`` covariance (a batch keeps only standard errors by default)."""


class Stats(NamedTuple):
    """Statistics of one fit (every leaf gains a leading axis under ``vmap``, a
    trailing one on the vector lanes: ``core.lanes``)."""

    stderr: Params
    """Standard error of each trainable parameter, by name (inf where ``singular``)."""
    chisqr: jax.Array
    dof: jax.Array
    """n − k (int32)."""
    redchi: jax.Array
    aic: jax.Array
    bic: jax.Array
    rsquared: jax.Array
    singular: jax.Array
    """bool: JᵀJ singular, not finite, or dof ≤ 0."""
    covariance: jax.Array | None = None
    """``(k, k)`` in the order of the trainable names; None unless asked for."""


def inverse_spd(A: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(A⁻¹, singular)`` for a symmetric positive semi-definite ``A`` (k, k).

    Factorised as ``D·C·D`` with ``C`` of unit diagonal (Cholesky of ``C``, unrolled
    for small ``k``); ``singular`` where a pivot of ``C`` falls to ``k·eps`` or below
    (``C``'s condition number past about ``1/(k·eps)``), a diagonal entry is not
    positive, or anything is not finite."""
    k = A.shape[0]
    d = diagonal(A)
    positive = _every(d > 0, 1) & _every(jnp.isfinite(A), 2)
    s = jnp.where(d > 0, 1 / jnp.sqrt(jnp.where(d > 0, d, 1)), 0)
    C = A * s[:, None] * s[None, :]
    tol = k * jnp.finfo(A.dtype).eps
    if k > UNROLLED:  # one fit (a vmap), never on the lanes
        L = jnp.linalg.cholesky(jnp.where(positive, C, jnp.eye(k, dtype=A.dtype)))
        pivots = jnp.diag(L) ** 2
        Linv = jax.scipy.linalg.solve_triangular(L, jnp.eye(k, dtype=A.dtype), lower=True)
        Cinv = Linv.T @ Linv
    else:
        L = [[None] * k for _ in range(k)]
        piv = []
        zero = jnp.zeros((), A.dtype)
        for i in range(k):
            for j in range(i + 1):
                acc = C[i, j] - sum((L[i][m] * L[j][m] for m in range(j)), zero)
                if i == j:
                    piv.append(acc)
                    L[i][j] = jnp.sqrt(jnp.maximum(acc, tol))
                else:
                    L[i][j] = acc / L[j][j]
        pivots = jnp.stack(piv)
        # L⁻¹ by forward substitution, then C⁻¹ = L⁻ᵀ L⁻¹
        Li = [[zero] * k for _ in range(k)]
        for i in range(k):
            Li[i][i] = 1 / L[i][i]
            for j in range(i):
                Li[i][j] = -sum((L[i][m] * Li[m][j] for m in range(j, i)), zero) / L[i][i]
        Cinv = jnp.stack(
            [
                jnp.stack([sum((Li[m][i] * Li[m][j] for m in range(max(i, j), k)), zero) for j in range(k)])
                for i in range(k)
            ]
        )
    singular = ~positive | ~_every(pivots > tol, 1)
    inv = Cinv * s[:, None] * s[None, :]
    return inv, singular | ~_every(jnp.isfinite(inv), 2)


def inverse_qr(cols: tuple[jax.Array, ...]) -> tuple[jax.Array, jax.Array]:
    """``((JᵀJ)⁻¹, singular)`` from the columns of ``J`` (each (n,), or ``(n, fits)``
    on the lanes) through ``J = QR``, ``(JᵀJ)⁻¹ = R⁻¹R⁻ᵀ``, so that its accuracy follows
    the condition number of ``J``, not of ``JᵀJ`` (scipy's trf inverts through the SVD
    of ``J`` alike). Modified Gram–Schmidt, unrolled for small ``k``.

    ``singular`` where a column is zero, where ``R_jj / ‖J_j‖`` (the columns taken to
    unit length) falls to ``eps·max(n, k)`` or below (the rank is short to that
    precision: scipy's SVD threshold), or where anything is not finite."""
    k, n = len(cols), cols[0].shape[0]
    tol = jnp.finfo(cols[0].dtype).eps * max(n, k)
    if k > UNROLLED:  # one fit (a vmap), never on the lanes
        Rm = jnp.linalg.qr(jnp.stack(cols, axis=1), mode="r")
        norms = jnp.sqrt(jnp.sum(Rm * Rm, axis=0))
        pivots = jnp.abs(jnp.diag(Rm))
        Ri = jax.scipy.linalg.solve_triangular(Rm, jnp.eye(k, dtype=Rm.dtype), lower=False)
        inv = Ri @ Ri.T
        singular = ~jnp.all(norms > 0) | ~jnp.all(pivots > tol * norms)
        return inv, singular | ~jnp.all(jnp.isfinite(inv))
    R = _gram_schmidt(list(cols))
    zero = jnp.zeros_like(R[0][0])
    norms = [jnp.sqrt(sum(R[i][j] * R[i][j] for i in range(j + 1))) for j in range(k)]  # ‖J_j‖
    flags = [(norms[j] > 0) & (R[j][j] > tol * norms[j]) for j in range(k)]
    safe = [jnp.where(flags[j], R[j][j], 1) for j in range(k)]
    Ri = [[zero] * k for _ in range(k)]  # R⁻¹, upper triangular, by back substitution
    for j in range(k):
        Ri[j][j] = 1 / safe[j]
        for i in reversed(range(j)):
            Ri[i][j] = -sum((R[i][m] * Ri[m][j] for m in range(i + 1, j + 1)), zero) / safe[i]
    inv = jnp.stack(
        [
            jnp.stack([sum((Ri[i][m] * Ri[j][m] for m in range(max(i, j), k)), zero) for j in range(k)])
            for i in range(k)
        ]
    )
    return inv, ~all_of(flags) | ~_every(jnp.isfinite(inv), 2)


def _gram_schmidt(cols: list[jax.Array]) -> list[list[jax.Array]]:
    """``R`` (as rows of entries) of ``J = QR`` by modified Gram–Schmidt (its ``R`` is
    as accurate as Householder's, Björck 1967; only ``Q`` loses orthogonality). Its sums
    are ``sum_points``' row chains, so a fit's bits do not depend on its lane (each sum
    depends on the last, so XLA:CPU runs them one by one: 10-20x the cost of ``gram``)."""
    k = len(cols)
    zero = jnp.zeros_like(cols[0][0])
    R = [[zero] * k for _ in range(k)]
    Q: list[jax.Array] = []
    for j in range(k):
        v = cols[j]
        for i in range(j):
            R[i][j] = sum_points(Q[i] * v)
            v = v - R[i][j] * Q[i]
        R[j][j] = jnp.sqrt(sum_points(v * v))
        Q.append(v / jnp.where(R[j][j] > 0, R[j][j], 1))
    return R


def _every(flags: jax.Array, lead: int) -> jax.Array:
    """``all`` over the first ``lead`` axes, as a chain of elementwise ``&`` (a
    reduction over leading axes does not vectorise across the fits on CPU)."""
    rows = flags.reshape((-1, *flags.shape[lead:]))
    return all_of([rows[i] for i in range(rows.shape[0])])


def fits_first(stats: Stats) -> Stats:
    """Statistics computed on the vector lanes (``core.lanes``: the fits last) with
    the fits first, as a ``vmap`` gives them: only the covariance has other axes."""
    if stats.covariance is None:
        return stats
    return stats._replace(covariance=jnp.moveaxis(stats.covariance, -1, 0))


def information(chisqr: Any, dof: Any, k: int, xp: Any = jnp) -> tuple[Any, Any, Any]:
    """``(redchi, aic, bic)`` from χ² and the dof of a fit of ``k`` parameters (``n =
    dof + k`` points): ``χ²/dof`` (inf where dof ≤ 0), ``n·ln(χ²/n) + 2k`` and
    ``n·ln(χ²/n) + k·ln(n)``, in χ²'s dtype. ``xp``: ``jax.numpy`` in a fit's program,
    NumPy where a batch's results derive them on the host."""
    dtype = chisqr.dtype
    redchi = xp.where(dof > 0, chisqr / xp.maximum(dof, 1).astype(dtype), xp.inf)
    n = (dof + k).astype(dtype)
    log_term = n * xp.log(chisqr / n)
    return redchi, log_term + 2 * k, log_term + k * xp.log(n)


def statistics(
    model: Model,
    names: tuple[str, ...],
    trainable: Params,
    frozen: Params,
    data: Data,
    spec: StatsSpec,
    loss: str = "ssr",
    f_scale: jax.Array | None = None,
) -> Stats:
    """The statistics of a fit that ended at ``trainable`` (see the module docstring);
    the covariance's rows and columns follow ``names``. They follow the ``loss``: χ²
    is its value, ``J`` its least-squares form (``losses.linearized``); a Poisson fit's
    covariance is the inverse Fisher information, never scaled."""
    r, J = losses.linearized(loss, model, names, trainable, frozen, data, f_scale)
    if loss == "ssr":
        chisqr = sum_points(r * r)
    else:
        chisqr = losses.value(loss, {**frozen, **trainable}, data, model, f_scale)
    dtype = r.dtype
    k = len(J)
    real = jnp.ones(r.shape, bool) if data.mask is None else jnp.broadcast_to(data.mask, r.shape)
    n = sum_points(real.astype(jnp.int32))
    dof = n - k
    if r.dtype == jnp.float64:  # the condition of J (NIST's hardest need it), bit for bit across layouts
        inv, singular = inverse_qr(J)
    else:  # float32: JᵀJ, whose sums fuse into the fit's program (the batch layers' speed)
        inv, singular = inverse_spd(gram(J, r)[0])
    # R²: against the best constant (the σ-weighted mean), in the same metric
    w = jnp.where(real, 1.0, 0.0).astype(dtype)
    if data.sigma is not None:
        w = w / jnp.where(real, data.sigma, 1) ** 2
    y = jnp.where(real, data.y, 0)
    mean = sum_points(w * y) / sum_points(w)
    total = sum_points(w * (y - mean) ** 2)
    absolute = spec.absolute_sigma or loss == "poisson"
    return _assembled(names, chisqr, dof, inv, singular, absolute, spec, 1 - chisqr / total)


def _assembled(
    names: tuple[str, ...],
    chisqr: jax.Array,
    dof: jax.Array,
    inv: jax.Array,
    singular: jax.Array,
    absolute: bool,
    spec: StatsSpec,
    rsquared: jax.Array | None,
) -> Stats:
    """The ``Stats`` of a fit from χ², its dof and ``(JᵀJ)⁻¹`` (the covariance scaled by
    the reduced χ² unless ``absolute``; inf wherever the fit is singular or has no
    degrees of freedom)."""
    redchi, aic, bic = information(chisqr, dof, len(names))
    singular = singular | (dof <= 0)
    cov = jnp.where(singular, jnp.inf, inv if absolute else inv * redchi)
    stderr = jnp.sqrt(diagonal(cov))
    return Stats(
        stderr={name: stderr[i] for i, name in enumerate(names)},
        chisqr=chisqr,
        dof=dof,
        redchi=redchi,
        aic=aic,
        bic=bic,
        rsquared=rsquared,
        singular=singular,
        covariance=cov if spec.covariance else None,
    )


def of_normal(normal: jax.Array, names: tuple[str, ...], points: jax.Array, spec: StatsSpec) -> Stats:
    """The statistics of least-squares fits (the SSR loss) from the normal equations
    their Levenberg–Marquardt states carry at the final parameters (``lm.normal_of``,
    ``(m, ...)``), over ``points`` real points each: the same ``JᵀJ`` that
    ``statistics`` inverts in float32, with no pass over the data. Elementwise over
    the trailing axes (a batch's fits: its leaves end with that axis, as on the lanes).
    R² needs the data itself (None: a batch derives it on the host)."""
    k = len(names)
    A, _, chisqr = unpacked(normal, k)
    at = {n: i for i, n in enumerate(sorted(names))}  # the normal's order (``lm.ordered``)
    A = jnp.stack([jnp.stack([A[at[a], at[b]] for b in names]) for a in names])
    dof = (points - k).astype(jnp.int32)
    return _assembled(names, chisqr, dof, *inverse_spd(A), spec.absolute_sigma, spec, None)


def band(
    model: Model, params: Params, names: tuple[str, ...], covariance: jax.Array, x: jax.Array
) -> jax.Array:
    """``√(g C gᵀ)`` at each ``x``: the standard deviation of the fitted curve, with
    ``g = ∂f/∂p`` over the trainable ``names`` by autodiff (multiply by Student's t
    for a confidence band; add the points' variance inside the root for a prediction
    band)."""
    trainable = {n: params[n] for n in names}
    frozen = {n: v for n, v in params.items() if n not in trainable}

    def f(t: Params) -> jax.Array:
        return model({**frozen, **t}, x)

    g = jax.jacfwd(f)(trainable)
    G = jnp.stack([jnp.broadcast_to(g[n], jnp.shape(x)) for n in names], axis=-1)
    return jnp.sqrt(jnp.maximum(jnp.einsum("...i,ij,...j->...", G, covariance, G), 0))
