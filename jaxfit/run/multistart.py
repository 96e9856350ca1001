"""Many starts per data set: ``K`` starts around each data set's own (the guess or
``p0``), all ``K × G`` fits run as one batch, the best kept per data set with how many
starts reached it.

The starts are a Latin hypercube per data set (seeded): a parameter with two finite
bounds is drawn within them; a position (``center``, ``x0``, ``logec50`` …) across the
data's ``x`` range; any other scaled by a factor in ``[1/3, 3]`` (log-uniform, its sign
kept; a zero start by ±1). Start 0 is the data set's own start, unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

POSITIONS = frozenset({"center", "center1", "center2", "logec50", "centerx", "centery", "x0", "y0"})
"""Parameters (after any prefix) that name a place on the ``x`` axis."""
SPREAD = 3.0
SAME = 1e-6
"""Fits whose χ² is within this relative distance of the best reached it too."""


def _position_axis(name: str) -> int | None:
    """Which coordinate a position parameter lives on (None: not a position)."""
    base = next((p for p in sorted(POSITIONS, key=len, reverse=True) if name.endswith(p)), None)
    if base is None:
        return None
    return 1 if base in ("y0", "centery") else 0


def spread(
    base: np.ndarray,
    names: tuple[str, ...],
    x: np.ndarray,
    dims: int,
    bounds: tuple[np.ndarray, np.ndarray] | None,
    count: int,
    seed: int,
) -> np.ndarray:
    """``(count·G, k)`` starts, block ``j`` (rows ``j·G … j·G + G − 1``) the ``j``-th
    start of every data set; ``base`` ``(G, k)``; ``x`` shared ``(n,)``/``(n, d)`` or
    per set."""
    groups, k = base.shape
    rng = np.random.default_rng(seed)
    # a Latin hypercube per data set and parameter: one draw in each of count strata
    strata = rng.permuted(np.tile(np.arange(count), (groups, k, 1)), axis=-1)
    u = np.moveaxis((strata + rng.random((groups, k, count))) / count, -1, 0)  # (count, G, k)
    lower, upper = (np.full((groups, k), -np.inf), np.full((groups, k), np.inf)) if bounds is None else bounds
    out = base * SPREAD ** (2 * u - 1)
    out = np.where(base == 0, 2 * u - 1, out)
    per_set = x.ndim == (3 if dims else 2)
    for i, name in enumerate(names):
        axis = _position_axis(name)
        if axis is None or (dims and axis >= dims):
            continue
        coords = x[..., axis] if dims else x
        coords = np.where(np.isfinite(coords), coords, np.nan)
        lo = np.nanmin(coords, axis=-1) if per_set else np.full(groups, np.nanmin(coords))
        hi = np.nanmax(coords, axis=-1) if per_set else np.full(groups, np.nanmax(coords))
        out[:, :, i] = lo + u[:, :, i] * (hi - lo)
    boxed = np.isfinite(lower) & np.isfinite(upper)
    width = np.where(boxed, upper - lower, 0.0)
    out = np.where(boxed, np.where(boxed, lower, 0.0) + u * width, out)
    out = np.clip(out, lower, upper)
    out[0] = base
    return out.reshape(count * groups, k)


def repeated(arrays: Any, count: int, starts: np.ndarray) -> Any:
    """``arrays`` with every data set ``count`` times (block by block) and ``starts``."""
    per_set_x = arrays.x.ndim == (3 if arrays.model.dims else 2)

    def tile(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else np.tile(a, (count,) + (1,) * (a.ndim - 1))

    return arrays._replace(
        x=tile(arrays.x) if per_set_x else arrays.x,
        y=tile(arrays.y),
        mask=tile(arrays.mask),
        sigma=tile(arrays.sigma),
        starts=starts,
    )


def best(chisqr: np.ndarray, converged: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Each data set's best row (the least χ² among its converged fits, else among
    all) and how many of its ``count`` starts reached it."""
    chi = np.reshape(chisqr, (count, -1))
    ok = np.reshape(converged, (count, -1))
    score = np.where(ok, chi, np.inf)
    none = ~ok.any(axis=0)
    score[:, none] = np.where(np.isfinite(chi[:, none]), chi[:, none], np.inf)
    pick = np.argmin(score, axis=0)
    groups = chi.shape[1]
    least = score[pick, np.arange(groups)]
    reached = (score <= least * (1 + SAME) + np.finfo(np.float64).tiny).sum(axis=0)
    return pick * groups + np.arange(groups), reached
