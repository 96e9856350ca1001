"""A built-in or composite model in ``curve_fit``: its starts (the user's ``p0`` —
an array of the free parameters or a dict by name —, else the guess, run on the
device for every data set), its hints' bounds merged with the user's, and every
parameter's and derived quantity's value and error after the fit (the tied ones
through the covariance of the free ones, by autodiff)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxfit.models.model import Model, bounds_of, plan, start_values


def array_p0(model: Model, p0: Any) -> Any:
    """``p0`` as ``curve_fit`` checks it: an array as given, a dict or None as None
    (the starts are then filled in by ``starts``)."""
    if p0 is None or isinstance(p0, Mapping):
        return None
    return p0


def starts(model: Model, arrays: Any, p0: Any) -> np.ndarray:
    """``(G, k)`` starts: the guess (or the hints' values), overridden by a dict
    ``p0`` by name; an array ``p0`` stands as checked."""
    if p0 is not None and not isinstance(p0, Mapping):
        return arrays.starts
    free = plan(model).free
    guessed = start_values(model, np.asarray(arrays.x), np.asarray(arrays.y), arrays.mask)
    for name, value in (p0 or {}).items():
        if name not in free:
            raise ValueError(f"p0: no free parameter {name!r}; the free ones are {', '.join(free)}")
        guessed[:, free.index(name)] = np.broadcast_to(np.asarray(value, np.float64), guessed.shape[:1])
    if not np.isfinite(guessed).all():
        g, i = np.argwhere(~np.isfinite(guessed))[0]
        raise ValueError(f"p0: the guess of {free[i]} is not finite for data set {g}; give p0 for it")
    return guessed


def merged_bounds(model: Model, bounds: Any, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """The user's ``(lower, upper)`` (number, ``(k,)`` or ``(G, k)``) within the
    hints' bounds."""
    from jaxfit.curvefit import _bound_pair

    low, high = bounds_of(model)
    user_low, user_high = (np.asarray(b, np.float64) for b in _bound_pair(bounds))
    k = len(low)
    lower = np.maximum(np.broadcast_to(user_low, (groups, k)) if user_low.ndim < 2 else user_low, low)
    upper = np.minimum(np.broadcast_to(user_high, (groups, k)) if user_high.ndim < 2 else user_high, high)
    return lower, upper


def inside(starts: np.ndarray, bounds: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Guessed starts moved into the box (a guess is a start, not a constraint)."""
    return np.clip(starts, bounds[0], bounds[1])


def quantities(
    model: Model, popt: np.ndarray, pcov: np.ndarray
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Names, values ``(G, m)`` and standard errors ``(G, m)`` of every parameter
    (free, tied, fixed) and derived quantity: ``e = sqrt(∇q·pcov·∇qᵀ)``."""
    p = plan(model)
    popt2 = np.atleast_2d(popt)
    pcov3 = np.reshape(pcov, (-1, len(p.free), len(p.free)))
    with jax.enable_x64(True):
        q = jax.vmap(p.quantities)(jnp.asarray(popt2, jnp.float64))
        J = jax.vmap(jax.jacfwd(p.quantities))(jnp.asarray(popt2, jnp.float64))
        values, J = np.asarray(q), np.asarray(J)
    finite = np.isfinite(pcov3).all(axis=(1, 2))
    safe = np.where(finite[:, None, None], pcov3, 0.0)
    var = np.einsum("gmk,gkl,gml->gm", J, safe, J)
    errors = np.where(finite[:, None], np.sqrt(np.maximum(var, 0.0)), np.inf)
    return p.quantity_names(), values, errors


def component_bands(
    model: Model, x: np.ndarray, popt: np.ndarray, pcov: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each part's curve at ``x`` and its standard deviation ``sqrt(g·pcov·gᵀ)``, ``g``
    the part's gradient in the free parameters (one data set: ``popt`` ``(k,)``)."""
    p = plan(model)
    with jax.enable_x64(True):
        free = jnp.asarray(popt, jnp.float64)
        xs = jnp.asarray(x, jnp.float64)
        out = {}
        for shape in model.shapes():

            def part(v: jax.Array, shape: Any = shape) -> jax.Array:
                return jnp.broadcast_to(shape.evaluate(xs, p.expand(dict(zip(p.free, v)))), xs.shape[-1:])

            curve, g = np.asarray(part(free)), np.asarray(jax.jacfwd(part)(free))
            var = (
                np.einsum("nk,kl,nl->n", g, pcov, g)
                if np.isfinite(pcov).all()
                else np.full(len(curve), np.inf)
            )
            out[shape.prefix or shape.name] = (curve, np.sqrt(np.maximum(var, 0.0)))
    return out


def values_of(model: Model, popt: np.ndarray) -> np.ndarray:
    """Every parameter's and derived quantity's value ``(…, m)`` from the free ones'
    ``(…, k)`` (NaN rows stay NaN)."""
    p = plan(model)
    flat = np.reshape(popt, (-1, popt.shape[-1]))
    with jax.enable_x64(True):
        q = np.asarray(jax.vmap(p.quantities)(jnp.asarray(np.nan_to_num(flat), jnp.float64)))
    q = np.where(np.isfinite(flat).all(axis=1, keepdims=True), q, np.nan)
    return q.reshape(*popt.shape[:-1], q.shape[-1])


def depends_on(model: Model, popt: np.ndarray) -> np.ndarray:
    """For each quantity, the one free parameter it depends on (by its gradient at the
    fits), or −1 (none, or several)."""
    p = plan(model)
    with jax.enable_x64(True):
        J = np.asarray(jax.vmap(jax.jacfwd(p.quantities))(jnp.asarray(np.nan_to_num(popt), jnp.float64)))
    used = (np.abs(J) > 0).any(axis=0)  # (m, k)
    return np.where(used.sum(axis=1) == 1, used.argmax(axis=1), -1)
