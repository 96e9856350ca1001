"""The bootstrap of every fit of a batch at once: ``B`` resampled copies of each data
set, all ``B × G`` refitted from the fit's own parameters as one batch; percentile
intervals and the bootstrap covariance.

``"residual"`` resampling keeps each point's ``x`` and fitted value and adds a weighted
residual drawn (with replacement) from the data set's own, centred and scaled by
``√(n/(n − k))`` (their spread is the noise's less the fit's share); ``"pairs"`` draws
whole points ``(x, y, σ)``. Seeded: the same call gives the same replicates.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

KINDS = ("residual", "pairs")


class Bootstrap(NamedTuple):
    """``samples`` ``(B, G, k)``: each replicate's refit (NaN where it did not
    converge); ``replicates`` ``B``; ``converged`` ``(G,)`` how many of each data set's
    did."""

    samples: np.ndarray
    errors: np.ndarray
    """``(B, G, k)``: each refit's standard errors (for studentized intervals)."""
    popt: np.ndarray
    perr: np.ndarray
    converged: np.ndarray
    kind: str
    seed: int
    single: bool

    @property
    def replicates(self) -> int:
        return self.samples.shape[0]

    def _shaped(self, a: np.ndarray) -> np.ndarray:
        return a[0] if self.single else a

    def intervals(
        self, confidence: float = 0.95, method: str = "studentized"
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)``, shaped as ``popt``. ``"studentized"`` (the bootstrap-t, the
        default): ``popt − q·perr`` with ``q`` the percentiles of each replicate's
        ``(θ* − θ̂)/se*`` (its own error bar, from the refit at no extra cost);
        ``"percentile"``: the ``(1 ∓ confidence)/2`` percentiles of the replicates
        (narrower with few points: it ignores that the noise is estimated)."""
        if not 0 < confidence < 1:
            raise ValueError(f"confidence: must be in (0, 1), got {confidence}")
        tail = 100 * (1 - confidence) / 2
        if method == "percentile":
            low, high = np.nanpercentile(self.samples, [tail, 100 - tail], axis=0)
        elif method == "studentized":
            with np.errstate(divide="ignore", invalid="ignore"):
                t = (self.samples - self.popt) / self.errors
            t = np.where(np.isfinite(t), t, np.nan)
            q_low, q_high = np.nanpercentile(t, [tail, 100 - tail], axis=0)
            low, high = self.popt - q_high * self.perr, self.popt - q_low * self.perr
        else:
            raise ValueError(f"method: {method!r} is not allowed; expected percentile or studentized")
        return self._shaped(low), self._shaped(high)

    def covariance(self) -> np.ndarray:
        """The replicates' covariance ``(G, k, k)`` (``(k, k)`` for one data set)."""
        d = self.samples - np.nanmean(self.samples, axis=0)
        ok = np.isfinite(d).all(axis=-1, keepdims=True)
        d = np.where(ok, d, 0.0)
        n = np.maximum(ok.sum(axis=0)[..., None] - 1, 1)
        return self._shaped(np.einsum("bgk,bgl->gkl", d, d) / n)

    def of(self, fn: Any) -> np.ndarray:
        """``fn`` (``popt (…, k) -> (…, m)``, e.g. derived quantities) on every replicate."""
        return fn(self.samples)


def resampled(arrays: Any, popt: np.ndarray, replicates: int, seed: int, kind: str) -> Any:
    """``arrays`` ``B`` times (block ``b``: every data set's ``b``-th replicate)."""
    from jaxfit.curvefit import _weighted_residuals

    if kind not in KINDS:
        raise ValueError(f"kind: {kind!r} is not allowed; expected {' or '.join(KINDS)}")
    if not (isinstance(replicates, (int, np.integer)) and replicates >= 2):
        raise ValueError(f"replicates: must be an integer >= 2, got {replicates!r}")
    groups, n = arrays.y.shape
    real = np.isfinite(arrays.y) if arrays.mask is None else arrays.mask & np.isfinite(arrays.y)
    count = real.sum(axis=1)
    # each data set's real points first, by index: draw u < count, take order[u]
    order = np.argsort(~real, axis=1, kind="stable")
    rng = np.random.default_rng(seed)
    u = np.floor(rng.random((replicates, groups, n)) * count[None, :, None]).astype(np.int64)
    picked = np.take_along_axis(np.broadcast_to(order, u.shape), u, axis=-1)  # (B, G, n)
    sigma = np.ones(arrays.y.shape) if arrays.sigma is None else np.asarray(arrays.sigma, np.float64)
    tile = (replicates,) + (1,) * arrays.y.ndim
    mask = np.tile(real, tile).reshape(-1, n)
    if kind == "pairs":
        per_set = arrays.x.ndim == (3 if arrays.model.dims else 2)
        x = arrays.x if per_set else np.broadcast_to(arrays.x, (groups, *arrays.x.shape))
        index = picked if x.ndim == 2 else picked[..., None]
        x_b = np.take_along_axis(np.broadcast_to(x, (replicates, *x.shape)), index, axis=2)
        y_b = np.take_along_axis(np.broadcast_to(arrays.y, u.shape), picked, axis=-1)
        s_b = np.take_along_axis(np.broadcast_to(sigma, u.shape), picked, axis=-1)
        # a data set's real points are its first count: the rest stay masked
        mask = np.tile(np.arange(n) < count[:, None], tile).reshape(-1, n)
        x_new = x_b.reshape(-1, *x.shape[1:])
    else:
        r, _ = _weighted_residuals(arrays, popt)  # (f − y)/σ, 0 where left out
        k = popt.shape[1]
        e = np.where(real, -r, 0.0)
        e = (e - e.sum(1, keepdims=True) / count[:, None]) * np.sqrt(count / np.maximum(count - k, 1))[
            :, None
        ]
        fitted = np.where(real, arrays.y + sigma * r, 0.0)
        drawn = np.take_along_axis(np.broadcast_to(e, u.shape), picked, axis=-1)
        y_b = np.where(real, fitted + sigma * drawn, np.nan)
        s_b = np.broadcast_to(sigma, u.shape)
        per_set = arrays.x.ndim == (3 if arrays.model.dims else 2)
        x_new = np.tile(arrays.x, (replicates,) + (1,) * (arrays.x.ndim - 1)) if per_set else arrays.x
    y_new = np.where(mask, y_b.reshape(-1, n), 0.0).astype(arrays.dtype)
    return arrays._replace(
        x=x_new,
        y=y_new,
        mask=mask,
        sigma=None if arrays.sigma is None else np.asarray(s_b, arrays.dtype).reshape(-1, n),
        starts=np.tile(popt, (replicates, 1)).astype(arrays.dtype),
    )


def bootstrap(
    problem: Any,
    popt: np.ndarray,
    perr: np.ndarray,
    replicates: int = 1000,
    seed: int = 0,
    kind: str = "residual",
    single: bool = False,
) -> Bootstrap:
    """``B`` refits of every fit of ``problem`` (a ``curvefit.Problem``) from ``popt``."""
    from jaxfit.core.status import Status
    from jaxfit.curvefit import solve

    groups, k = popt.shape
    ok = np.isfinite(popt).all(axis=1)
    arrays = resampled(problem.arrays, np.where(ok[:, None], popt, 0.0), replicates, seed, kind)
    box = None if problem.bounds is None else tuple(np.tile(b, (replicates, 1)) for b in problem.bounds)
    fit = solve(arrays, box, problem.options)
    converged = (fit.status == Status.CONVERGED).reshape(replicates, groups) & ok
    samples = np.where(converged[..., None], fit.popt.reshape(replicates, groups, k), np.nan)
    errors = np.where(converged[..., None], fit.perr.reshape(replicates, groups, k), np.nan)
    return Bootstrap(samples, errors, popt, perr, converged.sum(axis=0), kind, seed, single)
