"""W7, intervals beyond the linear approximation, on decay curves ``a·exp(−k·x) + c``
(20 points, float64): profile-likelihood intervals at 1σ and 2σ of 1,000 fits × 3
parameters against an lmfit ``conf_interval`` loop of the same fits (timed on a
sample, their bounds compared); a bootstrap of B = 1,000 residual resamplings of
1,000 fits (a million refits) in one call; and the coverage of the truth by the 95%
linear, profile and bootstrap intervals over 2,000 data sets."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

TRUTH = np.array([2.0, 0.7, 0.3])
NAMES = ("a", "k", "c")
P0 = [1.0, 0.5, 0.0]


def curves(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 5, 20)
    return x, TRUTH[0] * np.exp(-TRUTH[1] * x) + TRUTH[2] + rng.normal(0, 0.05, (count, x.size))


def _decay(x: Any, a: Any, k: Any, c: Any) -> Any:
    import jax.numpy as jnp

    return a * jnp.exp(-k * x) + c


def _fit(x: np.ndarray, Y: np.ndarray) -> Any:
    import jaxfit

    return jaxfit.curve_fit(_decay, x, Y, p0=P0, result=True, precision="float64")


def _lmfit_loop(x: np.ndarray, Y: np.ndarray, sigmas: tuple[float, ...]) -> tuple[float, list[dict]]:
    import lmfit

    model = lmfit.Model(lambda x, a, k, c: a * np.exp(-k * x) + c)
    out = []
    t0 = time.perf_counter()
    for y in Y:
        r = model.fit(y, x=x, a=P0[0], k=P0[1], c=P0[2])
        out.append(r.conf_interval(sigmas=sigmas))
    return time.perf_counter() - t0, out


def _levels(sigmas: tuple[float, ...]) -> list[float]:
    from math import erf, sqrt

    return [erf(s / sqrt(2)) for s in sigmas]


def speed(count: int, sample: int) -> dict[str, Any]:
    x, Y = curves(count, 0)
    sigmas = (1.0, 2.0)
    fit = _fit(x, Y)
    fit.profile(0.5)  # compile
    t0 = time.perf_counter()
    got = [fit.profile(p) for p in _levels(sigmas)]
    seconds = time.perf_counter() - t0
    lmfit_s, ci = _lmfit_loop(x, Y[:sample], sigmas)
    worst = 0.0
    for g, one in enumerate(ci):
        for j, n in enumerate(NAMES):
            rows = one[n]
            for level, profile in zip(_levels(sigmas), got):
                lo = next(v for q, v in rows[: len(sigmas)] if abs(q - level) < 1e-9)
                hi = next(v for q, v in rows[len(sigmas) + 1 :] if abs(q - level) < 1e-9)
                worst = max(worst, abs(profile.low[g, j] / lo - 1), abs(profile.high[g, j] / hi - 1))
    found = sum(int((p.why_low == 0).sum() + (p.why_high == 0).sum()) for p in got)
    per_fit = lmfit_s / sample
    return {
        "fits": count,
        "seconds": seconds,
        "lmfit_per_fit_s": per_fit,
        "ratio": per_fit / (seconds / count),
        "worst_rel": worst,
        "sample": sample,
        "found": found,
        "sides": 2 * 2 * 3 * count,
    }


def bootstrap_time(count: int, replicates: int) -> dict[str, Any]:
    x, Y = curves(count, 1)
    fit = _fit(x, Y)
    fit.bootstrap(replicates=2)  # compile the fits' program for small batches
    t0 = time.perf_counter()
    boot = fit.bootstrap(replicates=replicates)
    seconds = time.perf_counter() - t0
    return {
        "fits": count,
        "replicates": replicates,
        "seconds": seconds,
        "refits_per_s": count * replicates / seconds,
        "converged": int(boot.converged.sum()),
    }


def coverage(count: int, replicates: int) -> dict[str, np.ndarray]:
    x, Y = curves(count, 2)
    fit = _fit(x, Y)
    out = {}
    boot = fit.bootstrap(replicates=replicates, seed=3)
    for method, (low, high) in (
        ("linear", fit.intervals(0.95)),
        ("profile", fit.intervals(0.95, method="profile")),
        ("bootstrap-t", boot.intervals(0.95)),
        ("bootstrap percentile", boot.intervals(0.95, "percentile")),
    ):
        out[method] = ((low <= TRUTH) & (high >= TRUTH)).mean(axis=0)
    return out


def main(quick: bool = False) -> int:
    count, sample, boot_fits, boot_b, cover_n, cover_b = (
        (200, 5, 100, 200, 200, 200) if quick else (1_000, 20, 1_000, 1_000, 2_000, 1_000)
    )
    s = speed(count, sample)
    print(
        f"W7 profile intervals (decay, 20 points, float64): 1σ and 2σ of {s['fits']:,} fits × 3 parameters "
        f"in {s['seconds']:.3f} s; lmfit conf_interval {1e3 * s['lmfit_per_fit_s']:.1f} ms per fit "
        f"(timed on {s['sample']}): **{s['ratio']:.0f}x**; {s['found']:,} of {s['sides']:,} sides found; "
        f"largest relative difference from lmfit's bounds {s['worst_rel']:.1e}"
    )
    b = bootstrap_time(boot_fits, boot_b)
    print(
        f"W7 bootstrap: B = {b['replicates']:,} residual resamplings of {b['fits']:,} fits "
        f"({b['fits'] * b['replicates']:,} refits) in {b['seconds']:.2f} s = {b['refits_per_s']:,.0f} refits/s, "
        f"{b['converged']:,} converged"
    )
    c = coverage(cover_n, cover_b)
    print(f"W7 coverage of the truth by 95% intervals over {cover_n:,} data sets (B = {cover_b:,}):")
    for method, covered in c.items():
        print(f"  {method:20s} " + "  ".join(f"{n} {100 * v:.1f}%" for n, v in zip(NAMES, covered)))
    return 0
