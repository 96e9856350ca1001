"""Starting values from one data set, in ``jax.numpy`` (vmapped over a batch on the
device): lmfit's ``guess`` rules, with a ``mask`` of the real points (padding and
left-out points take no part). Each returns a dict of the shape's own parameter names.
``x`` is ``(n,)``, or ``(n, 2)`` for the 2-D shapes; ``y`` and ``mask`` ``(n,)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Guess = Callable[[jax.Array, jax.Array, jax.Array], dict[str, jax.Array]]


def _extremes(v: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    return jnp.max(jnp.where(mask, v, -jnp.inf)), jnp.min(jnp.where(mask, v, jnp.inf))


def _around_top(x: jax.Array, above: jax.Array, top: jax.Array) -> jax.Array:
    """The points of ``above`` joined to the highest one (``top``) along ``x``: its
    peak alone, not every point of the data above half maximum."""
    order = jnp.argsort(x)
    rank = jnp.argsort(order)  # each point's place along x
    below = ~above[order]
    cb = jnp.cumsum(below)
    t = rank[top]
    j = jnp.arange(x.shape[0])
    gaps = jnp.where(j <= t, cb[t] - cb + below, cb - cb[t])
    return above & (gaps == 0)[rank]


def peak(
    x: jax.Array,
    y: jax.Array,
    mask: jax.Array,
    ampscale: float = 1.0,
    sigscale: float = 1.0,
    local: bool = False,
) -> dict:
    """lmfit's ``guess_from_peak``: the center and width from the points above half
    maximum (where there are more than two), the area from height × width. ``local``:
    only the points joined to the highest (one peak of several, as in a sum)."""
    maxy, miny = _extremes(y, mask)
    maxx, minx = _extremes(x, mask)
    top = jnp.argmax(jnp.where(mask, y, -jnp.inf))
    cen = x[top]
    above = mask & (y > (maxy + miny) / 2.0)
    if local:
        above = _around_top(x, above, top)
    count = jnp.sum(above)
    hi, lo = _extremes(x, above)
    wide = count > 2
    sig = jnp.where(wide, (hi - lo) / 2.0, (maxx - minx) / 6.0)
    cen = jnp.where(wide, jnp.sum(jnp.where(above, x, 0)) / jnp.maximum(count, 1), cen)
    amp = (maxy - miny) * 3.0 * sig * ampscale
    return {"amplitude": amp, "center": cen, "sigma": sig * sigscale}


def scaled_peak(ampscale: float = 1.0, sigscale: float = 1.0, **fixed: float) -> Guess:
    """A peak's guess (``local``: one peak among several, for sums)."""

    def guess(x: jax.Array, y: jax.Array, mask: jax.Array, local: bool = False) -> dict:
        out = peak(x, y, mask, ampscale, sigscale, local)
        return {**out, **{k: jnp.asarray(v, y.dtype) for k, v in fixed.items()}}

    guess.peak = True  # type: ignore[attr-defined]
    return guess


def _mean(v: jax.Array, mask: jax.Array) -> jax.Array:
    return jnp.sum(jnp.where(mask, v, 0)) / jnp.maximum(jnp.sum(mask), 1)


def polyfit(x: jax.Array, y: jax.Array, mask: jax.Array, degree: int) -> jax.Array:
    """Least-squares polynomial coefficients, lowest power first, over the real
    points (centred and scaled ``x`` for conditioning)."""
    mid = _mean(x, mask)
    hi, lo = _extremes(x, mask)
    scale = jnp.maximum((hi - lo) / 2, jnp.finfo(y.dtype).tiny)
    t = jnp.where(mask, (x - mid) / scale, 0)
    V = jnp.stack([t**d for d in range(degree + 1)], axis=-1) * mask[:, None]
    c = jnp.linalg.lstsq(V, jnp.where(mask, y, 0))[0]
    # back from t = (x - mid)/scale to powers of x
    out = jnp.zeros(degree + 1, y.dtype)
    from math import comb

    for d in range(degree + 1):
        for j in range(d + 1):  # ((x - mid)/scale)^d = sum_j C(d,j) x^j (-mid)^(d-j) / scale^d
            out = out.at[j].add(c[d] * comb(d, j) * (-mid) ** (d - j) / scale**d)
    return out


def constant(x: jax.Array, y: jax.Array, mask: jax.Array) -> dict:
    return {"c": _mean(y, mask)}


def linear(x: jax.Array, y: jax.Array, mask: jax.Array) -> dict:
    c = polyfit(x, y, mask, 1)
    return {"intercept": c[0], "slope": c[1]}


def parabolic(x: jax.Array, y: jax.Array, mask: jax.Array) -> dict:
    c = polyfit(x, y, mask, 2)
    return {"c": c[0], "b": c[1], "a": c[2]}


def polynomial(degree: int) -> Guess:
    def guess(x: jax.Array, y: jax.Array, mask: jax.Array) -> dict:
        c = polyfit(x, y, mask, degree)
        return {f"c{i}": c[i] for i in range(degree + 1)}

    return guess


def exponential(x: jax.Array, y: jax.Array, mask: jax.Array) -> dict:
    c = polyfit(x, jnp.log(jnp.abs(y) + 1e-15), mask, 1)
    return {"amplitude": jnp.exp(c[0]), "decay": -1.0 / c[1]}


def powerlaw(x: jax.Array, y: jax.Array, mask: jax.Array) -> dict:
    c = polyfit(jnp.log(x + 1e-14), jnp.log(y + 1e-14), mask, 1)
    return {"amplitude": jnp.exp(c[0]), "exponent": c[1]}


def step(x: jax.Array, y: jax.Array, mask: jax.Array) -> dict:
    ymax, ymin = _extremes(y, mask)
    xmax, xmin = _extremes(x, mask)
    n = jnp.sum(mask)
    rank = jnp.cumsum(mask) - 1  # each real point's index among the real points
    fifth = n // 5
    first = mask & (rank < fifth)
    last = mask & (rank >= n - fifth)
    falling = _mean(y, first) > _mean(y, last)
    sigma = 0.1 * (xmax - xmin)
    return {
        "amplitude": ymax - ymin,
        "center": (xmax + xmin) / 2.0,
        "sigma": jnp.where(falling, -sigma, sigma),
    }


def rectangle(x: jax.Array, y: jax.Array, mask: jax.Array) -> dict:
    ymax, ymin = _extremes(y, mask)
    xmax, xmin = _extremes(x, mask)
    return {
        "amplitude": ymax - ymin,
        "center1": (xmax + xmin) / 4.0,
        "center2": 3 * (xmax + xmin) / 4.0,
        "sigma1": (xmax - xmin) / 10.0,
        "sigma2": (xmax - xmin) / 10.0,
    }


def thermal(x: jax.Array, y: jax.Array, mask: jax.Array) -> dict:
    center = _mean(x, mask)
    xmax, xmin = _extremes(x, mask)
    ymax, _ = _extremes(y, mask)
    kt = (xmax - xmin) / 10
    return {"amplitude": ymax * jnp.exp((xmin - center) / jnp.maximum(1e-15, kt)), "center": center, "kt": kt}


def sine(x: jax.Array, y: jax.Array, mask: jax.Array) -> dict:
    """lmfit's: the strongest frequency of the (uniformly spaced) data, then the best
    of 11 phases."""
    n = y.shape[0]
    data = jnp.where(mask, y - _mean(y, mask), 0)
    xmax, xmin = _extremes(x, mask)
    spacing = jnp.abs(xmax - xmin) / jnp.maximum(jnp.sum(mask) - 1, 1)
    power = jnp.abs(jnp.fft.fft(data))
    top = jnp.argmax(power)
    freqs = jnp.fft.fftfreq(n) / spacing
    amplitude = 2.0 * power[top] / n
    frequency = 2 * jnp.pi * jnp.abs(freqs[top])
    shifts = jnp.linspace(0, 2 * jnp.pi, 11, endpoint=False)
    errors = jax.vmap(
        lambda s: jnp.sum(jnp.where(mask, (amplitude * jnp.sin(x * frequency + s) - data) ** 2, 0))
    )(shifts)
    return {"amplitude": amplitude, "frequency": frequency, "shift": shifts[jnp.argmin(errors)]}


def dose_response(x: jax.Array, y: jax.Array, mask: jax.Array) -> dict:
    """Plateaus from the ends of the dose range, log EC50 where the data cross half-way,
    the slope's sign from which end is higher."""
    xmax, xmin = _extremes(x, mask)
    at_low = _mean(y, mask & (x <= xmin + 0.25 * (xmax - xmin)))
    at_high = _mean(y, mask & (x >= xmax - 0.25 * (xmax - xmin)))
    half = (at_low + at_high) / 2
    near = jnp.argmin(jnp.where(mask, jnp.abs(y - half), jnp.inf))
    return {"bottom": at_low, "top": at_high, "logec50": x[near], "hill": jnp.ones((), y.dtype)}


def hill(x: jax.Array, y: jax.Array, mask: jax.Array) -> dict:
    out = dose_response(jnp.log10(jnp.maximum(x, 1e-300)), y, mask)
    return {"bottom": out["bottom"], "top": out["top"], "ec50": 10.0 ** out["logec50"], "n": out["hill"]}


def michaelis_menten(x: jax.Array, y: jax.Array, mask: jax.Array) -> dict:
    ymax, _ = _extremes(y, mask)
    near = jnp.argmin(jnp.where(mask, jnp.abs(y - ymax / 2), jnp.inf))
    return {"vmax": ymax, "km": jnp.abs(x[near])}


def double_exponential(x: jax.Array, y: jax.Array, mask: jax.Array) -> dict:
    one = exponential(x, y, mask)
    k = 1.0 / jnp.abs(one["decay"])
    a = one["amplitude"] / 2
    return {"a1": a, "k1": 3.0 * k, "a2": a, "k2": k / 3.0}


def spot(x: jax.Array, z: jax.Array, mask: jax.Array) -> dict[str, Any]:
    """A 2-D spot (``x`` ``(n, 2)``, the points' coordinates): center at the brightest
    point, offset the dimmest, width a sixth of the extent (lmfit's ``guess_from_peak2d``)."""
    zmax, zmin = _extremes(z, mask)
    top = jnp.argmax(jnp.where(mask, z, -jnp.inf))
    xmax, xmin = _extremes(x[:, 0], mask)
    ymax, ymin = _extremes(x[:, 1], mask)
    sx, sy = (xmax - xmin) / 6.0, (ymax - ymin) / 6.0
    return {
        "amplitude": zmax - zmin,
        "x0": x[top, 0],
        "y0": x[top, 1],
        "sigma": (sx + sy) / 2,
        "sigma_x": sx,
        "sigma_y": sy,
        "gamma_x": sx,
        "gamma_y": sy,
        "offset": zmin,
        "rotation": jnp.zeros((), z.dtype),
        "centerx": x[top, 0],
        "centery": x[top, 1],
        "sigmax": sx,
        "sigmay": sy,
    }
