"""Student's t distribution on the host (plain NumPy, float64): the quantile behind
confidence intervals and bands, for any degrees of freedom.

``t_quantile(p, dof)`` inverts the CDF ``F(t) = 1 − ½·I_{ν/(ν+t²)}(ν/2, ½)`` (``t > 0``)
by bisection (to about 1e-12 relative; 1e-9 past a million degrees of freedom); the regularised incomplete beta function
``I`` comes from its continued fraction (Lentz's method).
"""

from __future__ import annotations

import math

import numpy as np


def _beta_fraction(a: float, b: float, x: float) -> float:
    tiny, eps = 1e-300, 1e-16
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for num in (
            m * (b - m) * x / ((a + m2 - 1) * (a + m2)),
            -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function ``I_x(a, b)``."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, dof: float) -> float:
    """``P(T ≤ t)`` for Student's t with ``dof`` degrees of freedom."""
    tail = 0.5 * betainc(dof / 2.0, 0.5, dof / (dof + t * t))
    return 1.0 - tail if t > 0 else tail


def _quantile(p: float, dof: float) -> float:
    if not 0.0 < p < 1.0 or not dof > 0:
        return math.nan
    if p < 0.5:
        return -_quantile(1.0 - p, dof)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, dof) < p:
        lo, hi = hi, 2 * hi
        if hi > 1e300:
            return math.inf
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if t_cdf(mid, dof) < p else (lo, mid)
    return 0.5 * (lo + hi)


def t_quantile(p: float, dof: object) -> np.ndarray:
    """The ``p`` quantile of Student's t for each of ``dof`` (array; NaN where
    ``dof ≤ 0``). Each distinct ``dof`` is solved once."""
    dof = np.asarray(dof, np.float64)
    values, inverse = np.unique(dof, return_inverse=True)
    solved = np.array([_quantile(float(p), float(v)) for v in values], np.float64)
    return solved[inverse].reshape(dof.shape)


def two_sided(confidence: float, dof: object) -> np.ndarray:
    """The factor ``t`` of a two-sided ``confidence`` interval ``value ± t·stderr``."""
    return t_quantile(0.5 + confidence / 2.0, dof)
