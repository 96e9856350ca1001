"""The peers ``python -m jaxfit bench`` measures jaxfit against, in the same process.

- ``numpy_w1``, ``numpy_w2``: lean vectorised NumPy gradient descent, as a NumPy
  expert writes it: jaxfit's stopping rule (a fit stops once every trainable |step
  size| < tolerance, the step still applied), the frozen hidden nodes of W1 computed
  once, no loss per step. These are the ratios' denominators.
- ``numpy_gd``: the same descent with the loss and every finiteness check per step
  and per-fit status; the float64 agreement reference.
- ``curve_fit_loop``: a Python loop of ``scipy.optimize.curve_fit`` (MINPACK's
  Levenberg–Marquardt), one call per data set: what W4's users reach for.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from jaxfit.core.example import SEED_PARAMS, SEED_X, SEED_Y

CONVERGED, MAX_STEPS, DIVERGED = 1, 2, 3
X, Y = np.array(SEED_X), np.array(SEED_Y)
SEED = {k: v for k, v in SEED_PARAMS.items() if k != "b3"}


def numpy_w1(b0: np.ndarray, lr: float = 0.1, tol: float = 1e-4, max_steps: int = 1000) -> tuple:
    """Fits of b3 alone from each start in ``b0``; returns (final b3, steps per fit)."""
    dt = b0.dtype
    x, y = X.astype(dt), Y.astype(dt)
    fixed = (
        SEED["w3"] * np.logaddexp(0, SEED["w1"] * x + SEED["b1"])
        + SEED["w4"] * np.logaddexp(0, SEED["w2"] * x + SEED["b2"])
    ).astype(dt)
    b3 = b0.copy()
    running = np.ones(len(b0), bool)
    steps = np.zeros(len(b0), np.int32)
    for _ in range(max_steps):
        grad = -2 * (y[None] - (fixed[None] + b3[:, None])).sum(1)
        size = (lr * grad).astype(dt)
        b3 = np.where(running, b3 - size, b3)
        steps += running
        running &= np.abs(size) >= tol
        if not running.any():
            break
    return b3, steps


def numpy_w2(starts: np.ndarray, lr: float = 0.05, tol: float = 1e-5, max_steps: int = 2000) -> tuple:
    """Fits of all seven parameters from each row of ``starts`` (N, 7: w1 b1 w2 b2 w3
    w4 b3); returns (final parameters (N, 7), steps per fit)."""
    dt = starts.dtype
    x, y = X.astype(dt), Y.astype(dt)
    P = starts.copy()
    running = np.ones(len(P), bool)
    steps = np.zeros(len(P), np.int32)

    def sigmoid(z: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-z))

    for _ in range(max_steps):
        w1, b1, w2, b2, w3, w4, b3 = (P[:, i : i + 1] for i in range(7))
        z1, z2 = w1 * x + b1, w2 * x + b2
        h1, h2 = np.logaddexp(0, z1), np.logaddexp(0, z2)
        d = -2 * (y - (w3 * h1 + w4 * h2 + b3))
        s1, s2 = d * w3 * sigmoid(z1), d * w4 * sigmoid(z2)
        grad = np.stack(
            [
                (s1 * x).sum(1),
                s1.sum(1),
                (s2 * x).sum(1),
                s2.sum(1),
                (d * h1).sum(1),
                (d * h2).sum(1),
                d.sum(1),
            ],
            1,
        )
        size = lr * grad
        P = np.where(running[:, None], P - size, P)
        steps += running
        running &= np.abs(size).max(1) >= tol
        if not running.any():
            break
    return P, steps


def curve_fit_loop(
    f: Callable[..., np.ndarray], groups: Sequence[tuple[np.ndarray, np.ndarray]], p0: Any
) -> np.ndarray:
    """``scipy.optimize.curve_fit`` on each ``(x, y)`` data set from ``p0`` (one start
    for all, or a row per data set); returns each one's SSR at its fitted parameters
    (inf where it gave up)."""
    starts = np.asarray(p0, np.float64)
    from scipy.optimize import curve_fit

    ssr = np.full(len(groups), np.inf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for g, (x, y) in enumerate(groups):
            try:
                p, _ = curve_fit(f, x, y, p0=starts if starts.ndim == 1 else starts[g])
            except RuntimeError:  # no convergence within maxfev
                continue
            ssr[g] = float(np.sum((y - f(x, *p)) ** 2))
    return ssr


# -- the NumPy peer: all fits at once, finished ones dropped from the active set


BLUE, ORANGE = ("w1", "b1", "w3"), ("w2", "b2", "w4")


def _np_node(w: np.ndarray, b: np.ndarray, x: np.ndarray, need_sigmoid: bool):
    z = w[:, None] * x + b[:, None]
    e = np.exp(-np.abs(z))
    s = np.maximum(z, 0) + np.log1p(e)
    return s, (np.where(z >= 0, 1, e) / (1 + e) if need_sigmoid else None)


class _NumpyModel:
    """The seed's network and its gradient, vectorised over fits, written as a NumPy
    expert would: a hidden node none of whose parameters train is computed once."""

    def __init__(self, p: dict[str, np.ndarray], x: np.ndarray, trainable: Sequence[str]):
        self.x, self.trainable = x, set(trainable)
        self.const = np.zeros((len(p["b3"]), len(x)), x.dtype)
        for w, b, v in (BLUE, ORANGE):
            if not self.trainable & {w, b, v}:
                self.const += p[v][:, None] * _np_node(p[w], p[b], x, False)[0]
        self.live = [nm for nm in (BLUE, ORANGE) if self.trainable & set(nm)]

    def keep(self, rows: np.ndarray) -> None:
        self.const = self.const[rows]

    def loss_grad(self, p: dict[str, np.ndarray], y: np.ndarray):
        x = self.x
        pred = self.const + p["b3"][:, None]
        nodes = {}
        for w, b, v in self.live:
            s, sig = _np_node(p[w], p[b], x, bool(self.trainable & {w, b}))
            nodes[v] = (s, sig)
            pred = pred + p[v][:, None] * s
        r = y - pred
        d = -2 * r
        g: dict[str, np.ndarray] = {"b3": d.sum(1)} if "b3" in self.trainable else {}
        for w, b, v in self.live:
            s, sig = nodes[v]
            if v in self.trainable:
                g[v] = (d * s).sum(1)
            if sig is not None:
                t = d * p[v][:, None] * sig
                if w in self.trainable:
                    g[w] = (t * x).sum(1)
                if b in self.trainable:
                    g[b] = t.sum(1)
        return np.sum(r * r, axis=1), g


def numpy_gd(
    init: dict[str, np.ndarray], trainable: Sequence[str], lr: float, tol: float, max_steps: int, dtype: Any
):
    """Vectorised gradient descent with jaxfit's stopping rule; returns (params, loss, steps, status)."""
    x, y = np.asarray(SEED_X, dtype), np.asarray(SEED_Y, dtype)
    n = len(next(iter(init.values())))
    p = {k: np.array(v, dtype) for k, v in init.items()}
    lr, tol = dtype(lr), dtype(tol)
    steps, status = np.zeros(n, np.int32), np.zeros(n, np.int8)
    loss = np.empty(n, dtype)
    active = np.arange(n)
    with np.errstate(all="ignore"):
        cur = {k: v[active] for k, v in p.items()}
        model = _NumpyModel(cur, x, trainable)
        lo, g = model.loss_grad(cur, y)
        while active.size:
            sizes = {k: lr * g[k] for k in trainable}
            for k in trainable:
                cur[k] = cur[k] - sizes[k]
            lo, g = model.loss_grad(cur, y)
            count = steps[active] + 1
            finite = np.isfinite(lo)
            small = np.ones(active.size, bool)
            for k in trainable:
                finite &= np.isfinite(g[k]) & np.isfinite(cur[k]) & np.isfinite(sizes[k])
                small &= np.abs(sizes[k]) < tol
            st = np.select([~finite, small, count >= max_steps], [DIVERGED, CONVERGED, MAX_STEPS], 0)
            steps[active] = count
            done = st != 0
            if done.any():
                idx = active[done]
                status[idx], loss[idx] = st[done], lo[done]
                for k in trainable:
                    p[k][idx] = cur[k][done]
                keep = ~done
                active = active[keep]
                cur = {k: v[keep] for k, v in cur.items()}
                g = {k: v[keep] for k, v in g.items()}
                model.keep(keep)
    return p, loss, steps, status
