"""Profile-likelihood intervals for every fit of a batch at once (lmfit's
``conf_interval``).

For a parameter ``θᵢ`` of a fit, the profile ``χ²ₚ(t)`` is the least χ² with ``θᵢ``
pinned at ``t`` and the others refitted. A side of the interval is where it crosses
``χ²ₚ = χ² + Δ``: ``Δ = χ²·F⁻¹(p; 1, n − k)/(n − k)`` (the F-test, lmfit's, when the
weights' scale is estimated) or ``Δ = z²`` with ``z`` the normal quantile
(``absolute_sigma``). Every fit × parameter × side × level is one lane: a Newton
iteration on ``√(χ²ₚ − χ²)`` (nearly linear in ``t``; its slope ``∂χ²/∂θᵢ`` at the
pinned optimum comes with the refit), kept inside its bracket by bisection, each step a
Levenberg–Marquardt refit of the others from the last point inside. All lanes run as
one vmapped, compiled loop in float64.
"""

from __future__ import annotations

import functools
import os
import statistics
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxfit.output.student import two_sided

FOUND, AT_BOUND, UNBOUNDED, FAILED = 0, 1, 2, 3
WHY = {
    FOUND: "found",
    AT_BOUND: "the profile stays below the level up to the parameter's bound: the bound is that side",
    UNBOUNDED: "the profile stays below the level however far the parameter goes: that side is unbounded",
    FAILED: "the refits did not reach the level's crossing (or the fit has no finite error)",
}
BLOCK = int(os.environ.get("JAXFIT_PROFILE_BLOCK", 256))
STEPS = 2000
"""Levenberg–Marquardt steps at most per side (all its refits together)."""


class Intervals(NamedTuple):
    """``low``/``high`` shaped as ``popt`` (``(G, k)``, or ``(k,)`` for one data set);
    ``why_low``/``why_high`` a code per side (``FOUND``, ``AT_BOUND``, ``UNBOUNDED``,
    ``FAILED``; ``WHY`` says each in words)."""

    low: np.ndarray
    high: np.ndarray
    why_low: np.ndarray
    why_high: np.ndarray
    confidence: float
    method: str


def threshold(dof: np.ndarray, confidence: float, absolute_sigma: bool) -> tuple[np.ndarray, np.ndarray]:
    """``Δ = χ²·a + b``, the rise of χ² at the interval's ends, as ``(a, b)`` per fit."""
    dof = np.asarray(dof)
    if absolute_sigma:
        z = statistics.NormalDist().inv_cdf((1 + confidence) / 2)
        return np.zeros(dof.shape), np.full(dof.shape, z * z)
    t = np.where(dof > 0, two_sided(confidence, np.maximum(dof, 1)), np.nan)
    return t * t / np.maximum(dof, 1), np.zeros(dof.shape)  # F(1, ν) = t_ν²


def _lm_step(
    resid: Any,
    q: jax.Array,
    lam: jax.Array,
    free: jax.Array,
    i: jax.Array,
    lower: jax.Array,
    upper: jax.Array,
    level: jax.Array | float = jnp.nan,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    """One Levenberg–Marquardt step (Marquardt's scaling) of the ``free`` parameters,
    kept inside the bounds: the new ``q``, ``λ``, χ², whether the refit has ended and
    ``∂χ²/∂θᵢ`` there. A refit far from the χ² ``level`` sought ends sooner: when a
    step gains less than 0.1% of the distance to it (near it, as strictly as any)."""
    r, J = resid(q), jax.jacfwd(resid)(q)
    Jf = J * free
    A, g = Jf.T @ Jf, Jf.T @ r
    scale = jnp.where(free > 0, jnp.maximum(jnp.diag(A), 1e-30), 1.0)
    step = jnp.linalg.solve(A + jnp.diag(lam * scale + (1 - free)), -g) * free
    trial = jnp.clip(q + step, lower, upper)
    r_new = resid(trial)
    old, new = r @ r, r_new @ r_new
    better = new < old
    tiny = jnp.abs(trial - q).max() <= 1e-13 * (1 + jnp.abs(q).max())
    enough = jnp.maximum(1e-14 * new, jnp.nan_to_num(1e-3 * jnp.abs(new - level)))
    ended = (better & (old - new <= enough)) | tiny | (lam > 1e16)
    slope = 2.0 * (J[:, i] @ jnp.where(better, r_new, r))
    return (
        jnp.where(better, trial, q),
        jnp.where(better, jnp.maximum(lam * 0.3, 1e-15), lam * 4.0),
        jnp.where(better, new, old),
        ended,
        slope,
    )


def pinned(
    resid: Any, q: jax.Array, i: jax.Array, lower: jax.Array, upper: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """The least χ² with ``q[i]`` held (``i = −1``: none): the parameters and χ²."""
    free = (jnp.arange(q.shape[0]) != i).astype(q.dtype)

    def body(state: tuple) -> tuple:
        q, lam, _, _, n = state
        q, lam, chi, ended, _ = _lm_step(resid, q, lam, free, i, lower, upper)
        return q, lam, chi, ended, n + 1

    start = (q, jnp.asarray(1e-3, q.dtype), jnp.asarray(jnp.inf, q.dtype), jnp.asarray(False), 0)
    q, _, chi, _, _ = jax.lax.while_loop(lambda s: ~s[3] & (s[4] < STEPS), body, start)
    return q, chi


class _Lane(NamedTuple):
    """One lane's state: the refit in progress and the root's search around it."""

    q: jax.Array
    """The refit's parameters, ``q[i]`` pinned at the trial value."""
    lam: jax.Array
    warm: jax.Array
    """The refit's parameters at the last point inside the level."""
    inside: jax.Array
    outside: jax.Array
    h: jax.Array
    result: jax.Array
    why: jax.Array
    steps: jax.Array


def _side(
    resid: Any,
    popt: jax.Array,
    chisqr: jax.Array,
    i: jax.Array,
    direction: jax.Array,
    reach: jax.Array,
    rise: jax.Array,
    lower: jax.Array,
    upper: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """One side of one parameter's interval (the fit at its float64 minimum ``popt``,
    ``chisqr``; the level ``rise`` above it): the value and why. One loop of
    Levenberg–Marquardt steps with ``θᵢ`` pinned at each trial value, from the linear
    interval's end; when a refit ends, the next trial (Newton on ``√(χ²ₚ − χ²)``,
    bisection inside a bracket, doubling steps before one) starts from the last point
    inside."""
    k = popt.shape[0]
    h0 = jnp.where(jnp.isfinite(reach) & (reach > 0), reach, jnp.maximum(0.2 * jnp.abs(popt[i]), 1e-3))
    bound = jnp.where(direction > 0, upper[i], lower[i])
    free = (jnp.arange(k) != i).astype(popt.dtype)
    target = jnp.sqrt(rise)

    def next_trial(s: _Lane, q: jax.Array, chi: jax.Array, slope: jax.Array) -> _Lane:
        t = q[i]
        rise_t = chi - chisqr
        beyond = rise_t >= rise
        inside = jnp.where(beyond, s.inside, t)
        warm = jnp.where(beyond, s.warm, q)
        outside = jnp.where(beyond, t, s.outside)
        zeta = jnp.sqrt(jnp.maximum(rise_t, 0.0))
        newton = t + (target - zeta) * 2.0 * jnp.maximum(zeta, 1e-300) / slope
        bracketed = jnp.isfinite(outside)
        lo, hi = jnp.minimum(inside, outside), jnp.maximum(inside, outside)
        in_bracket = jnp.isfinite(newton) & (newton > lo) & (newton < hi)
        ahead = jnp.isfinite(newton) & ((newton - inside) * direction > 0)
        far = jnp.minimum(jnp.abs(newton - inside), 4.0 * s.h)
        nxt = jnp.where(
            bracketed,
            jnp.where(in_bracket, newton, 0.5 * (inside + outside)),
            jnp.where(ahead, inside + direction * far, inside + direction * 2.0 * s.h),
        )
        h = jnp.where(bracketed, s.h, jnp.maximum(jnp.abs(nxt - inside), s.h))
        nxt = jnp.clip(nxt, lower[i], upper[i])
        met = jnp.abs(rise_t - rise) <= 1e-11 * (rise + chisqr)
        narrow = bracketed & (hi - lo <= 1e-10 * (jnp.abs(t) + h0))
        why = jnp.where(
            met | narrow,
            FOUND,
            jnp.where(
                (t == bound) & ~beyond,
                AT_BOUND,
                jnp.where(~bracketed & (jnp.abs(nxt - popt[i]) > 1e12 * h0), UNBOUNDED, -1),
            ),
        )
        return s._replace(
            q=warm.at[i].set(nxt),
            lam=jnp.asarray(1e-3, q.dtype),
            warm=warm,
            inside=inside,
            outside=outside,
            h=h,
            result=jnp.where(met, t, 0.5 * (inside + outside)),
            why=why,
        )

    def body(s: _Lane) -> _Lane:
        q, lam, chi, ended, slope = _lm_step(resid, s.q, s.lam, free, i, lower, upper, chisqr + rise)
        going = s._replace(q=q, lam=lam, steps=s.steps + 1)
        return jax.tree.map(lambda a, b: jnp.where(ended, a, b), next_trial(going, q, chi, slope), going)

    def active(s: _Lane) -> jax.Array:
        return (s.why < 0) & (s.steps < STEPS)

    first = jnp.clip(popt[i] + direction * h0, lower[i], upper[i])  # the linear interval's end
    nan = jnp.asarray(jnp.nan, popt.dtype)
    start = _Lane(
        popt.at[i].set(first),
        jnp.asarray(1e-3, popt.dtype),
        popt,
        popt[i],
        nan,
        h0,
        popt[i],
        jnp.asarray(-1),
        jnp.asarray(0),
    )
    s = jax.lax.while_loop(active, body, start)
    why = jnp.where(s.why < 0, FAILED, s.why)
    value = jnp.where(
        why == FOUND,
        s.result,
        jnp.where(why == AT_BOUND, bound, jnp.where(why == UNBOUNDED, direction * jnp.inf, jnp.nan)),
    )
    return value, why


def _residuals(names: tuple[str, ...], model: Any, x: Any, y: Any, mask: Any, sigma: Any) -> Any:
    from jaxfit.core.model import Data, residuals

    data = Data(x, y, mask, sigma)
    return lambda q: residuals(dict(zip(names, q)), data, model)


@functools.lru_cache(maxsize=32)
def _programs(names: tuple[str, ...], model: Any, per_set: bool) -> tuple[Any, Any]:
    """The compiled polish of every fit and sides of every lane (one pair per model
    and data layout)."""

    def polish(x, y, m, s, p, lo, hi):
        return pinned(_residuals(names, model, x, y, m, s), p, jnp.asarray(-1), lo, hi)

    def lane(x, y, m, s, p, chi, i, d, reach, rise, lo, hi):
        return _side(_residuals(names, model, x, y, m, s), p, chi, i, d, reach, rise, lo, hi)

    def sides(x: jax.Array, *per_lane: Any) -> Any:
        # blocks of lanes, one after another: a block's loop ends with its slowest lane
        if per_set:
            return jax.lax.map(lambda a: lane(*a), (x, *per_lane), batch_size=BLOCK)
        return jax.lax.map(lambda a: lane(x, *a), per_lane, batch_size=BLOCK)

    axes = (0 if per_set else None, *([0] * 6))
    return jax.jit(jax.vmap(polish, in_axes=axes)), jax.jit(sides)


def _mask_sigma(arrays: Any) -> tuple[np.ndarray, np.ndarray]:
    mask = np.ones(arrays.y.shape, bool) if arrays.mask is None else arrays.mask
    return mask, np.ones(arrays.y.shape) if arrays.sigma is None else np.asarray(arrays.sigma, np.float64)


def curve(problem: Any, popt: np.ndarray, g: int, i: int, values: np.ndarray) -> np.ndarray:
    """The profile ``χ²ₚ`` of parameter ``i`` of fit ``g`` at each of ``values`` (the
    others refitted from ``popt`` with ``θᵢ`` pinned there)."""
    from jaxfit.core.model import Data, residuals

    arrays = problem.arrays
    names, model = arrays.names, arrays.model
    per_set = arrays.x.ndim == (3 if model.dims else 2)
    mask, sigma = _mask_sigma(arrays)
    k = len(names)
    lower, upper = (
        (np.full(k, -np.inf), np.full(k, np.inf))
        if problem.bounds is None
        else (problem.bounds[0][g], problem.bounds[1][g])
    )
    with jax.enable_x64(True):
        data = Data(
            jnp.asarray(arrays.x[g] if per_set else arrays.x, jnp.float64),
            jnp.asarray(arrays.y[g], jnp.float64),
            jnp.asarray(mask[g]),
            jnp.asarray(sigma[g]),
        )

        def resid(q: jax.Array) -> jax.Array:
            return residuals(dict(zip(names, q)), data, model)

        def at(t: jax.Array) -> jax.Array:
            start = jnp.asarray(popt[g], jnp.float64).at[i].set(t)
            return pinned(resid, start, jnp.asarray(i), jnp.asarray(lower), jnp.asarray(upper))[1]

        return np.asarray(jax.jit(jax.vmap(at))(jnp.asarray(values, jnp.float64)))


def profile(
    problem: Any, popt: np.ndarray, perr: np.ndarray, chisqr: np.ndarray, dof: np.ndarray, confidence: float
) -> Intervals:
    """Profile intervals of every fit ``(G, k)`` of ``problem`` (a ``curvefit.Problem``)."""

    arrays = problem.arrays
    if problem.options.loss != "ssr":
        raise ValueError(
            f"profile: intervals from the χ² profile need loss='linear' (this fit's loss is {problem.options.loss!r})"
        )
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: must be in (0, 1), got {confidence}")
    names, model = arrays.names, arrays.model
    groups, k = popt.shape
    lower, upper = (
        (np.full((groups, k), -np.inf), np.full((groups, k), np.inf))
        if problem.bounds is None
        else problem.bounds
    )
    # lanes: (fit, parameter, side)
    g = np.repeat(np.arange(groups), 2 * k)
    i = np.tile(np.repeat(np.arange(k), 2), groups)
    direction = np.tile([-1.0, 1.0], groups * k)
    per_set = arrays.x.ndim == (3 if model.dims else 2)
    mask, sigma = _mask_sigma(arrays)
    ok = np.isfinite(popt).all(axis=1) & np.isfinite(chisqr) & (np.asarray(dof) > 0)

    a, b = threshold(dof, confidence, problem.options.absolute_sigma)
    # the linear interval's half-width: the first trial, and the search's scale
    reach = np.sqrt(np.where(problem.options.absolute_sigma, b, a * np.asarray(dof)))[:, None] * perr
    polish, sides = _programs(names, model, per_set)
    f64 = np.float64
    with jax.enable_x64(True):
        x, y = np.asarray(arrays.x, f64), np.asarray(arrays.y, f64)
        start = np.where(ok[:, None], popt, 0.0).astype(f64)
        best, chi = (
            np.asarray(v) for v in polish(x, y, mask, sigma, start, lower.astype(f64), upper.astype(f64))
        )
        chi = np.where(ok, chi, 1.0)
        value, why = sides(
            x[g] if per_set else x,
            y[g],
            mask[g],
            sigma[g],
            best[g],
            chi[g],
            i.astype(np.int32),
            direction,
            reach[g, i].astype(f64),
            (chi * np.where(ok, a, 0.0) + np.where(ok, b, 1.0))[g],
            lower[g].astype(f64),
            upper[g].astype(f64),
        )
    value = np.asarray(value).reshape(groups, k, 2)
    why = np.asarray(why).reshape(groups, k, 2).astype(np.int8)
    value = np.where(ok[:, None, None], value, np.nan)
    why = np.where(ok[:, None, None], why, FAILED).astype(np.int8)
    return Intervals(value[..., 0], value[..., 1], why[..., 0], why[..., 1], confidence, "profile")


class _Held(NamedTuple):
    """A config's model with its untrained parameters held at their values."""

    model: Any
    held: tuple[tuple[str, float], ...]

    @property
    def dims(self) -> int:
        return getattr(self.model, "dims", 0)

    def __call__(self, params: Any, x: jax.Array) -> jax.Array:
        return self.model({**dict(self.held), **params}, x)


def of_plan(plan: Any, result: Any) -> dict[str, tuple[float, float]]:
    """The profile intervals of a config's single fit (``plan`` a ``FitPlan``, ``result``
    its ``FitResult``) at the plan's confidence, by trainable parameter."""
    from jaxfit.curvefit import Options, Problem
    from jaxfit.curvefit_args import Arrays

    names, data = result.trainable, plan.problem.data
    held = tuple((n, float(result.params[n])) for n in plan.problem.frozen)
    y = np.asarray(data.y, np.float64)[None]
    sigma = None if data.sigma is None else np.broadcast_to(np.asarray(data.sigma, np.float64), y.shape)
    popt = np.array([[result.params[n] for n in names]])
    arrays = Arrays(
        np.asarray(data.x, np.float64),
        y,
        None if data.mask is None else np.asarray(data.mask)[None],
        sigma,
        popt,
        names,
        _Held(plan.spec.model, held),
        np.dtype(np.float64),
        True,
    )
    bounds = None
    if plan.problem.bounds is not None:
        lower, upper = plan.problem.bounds
        bounds = (
            np.array([[float(lower.get(n, -np.inf)) for n in names]]),
            np.array([[float(upper.get(n, np.inf)) for n in names]]),
        )
    options = Options(plan.stats.absolute_sigma, 0.0, 0, 0.0, 0.0, 0.0, plan.spec.loss, 1.0, None, None)
    got = profile(
        Problem(arrays, bounds, options),
        popt,
        np.array([[result.stderr[n] for n in names]]),
        np.array([result.chisqr]),
        np.array([result.dof]),
        plan.confidence,
    )
    return {n: (float(got.low[0, j]), float(got.high[0, j])) for j, n in enumerate(names)}
