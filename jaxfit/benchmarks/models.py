"""W6, built-in models: spectra of two Gaussians on a linear background (8 free
parameters, 200 points), fitted as one batch through ``jaxfit.curve_fit`` with the
composite model, float32 and float64, against an lmfit ``Model.fit`` loop of the same
model from the same starts (timed on a sample: lmfit fits one spectrum at a time).
Quality: the χ² of every fit against MINPACK's ``leastsq`` (what lmfit runs) from the
same starts on every spectrum."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

POINTS = 200
TRUTH = (
    "p1_amplitude",
    "p1_center",
    "p1_sigma",
    "p2_amplitude",
    "p2_center",
    "p2_sigma",
    "bg_slope",
    "bg_intercept",
)


def _gauss(x: np.ndarray, a: Any, c: Any, s: Any) -> np.ndarray:
    return a / (s * np.sqrt(2 * np.pi)) * np.exp(-((x - c) ** 2) / (2 * s * s))


def spectra(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x`` ``(200,)``, ``Y`` ``(count, 200)`` and the shared starts ``(count, 8)``:
    the truth moved by up to 30% (centers by up to 0.3)."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 10, POINTS)
    a1, a2 = rng.uniform(1, 4, count), rng.uniform(1, 4, count)
    c1, c2 = rng.uniform(2.5, 4, count), rng.uniform(6, 7.5, count)
    s1, s2 = rng.uniform(0.4, 0.9, count), rng.uniform(0.4, 0.9, count)
    slope, intercept = rng.uniform(-0.05, 0.1, count), rng.uniform(0, 1, count)
    truth = np.stack([a1, c1, s1, a2, c2, s2, slope, intercept], 1)
    Y = (
        _gauss(x, a1[:, None], c1[:, None], s1[:, None])
        + _gauss(x, a2[:, None], c2[:, None], s2[:, None])
        + slope[:, None] * x
        + intercept[:, None]
        + rng.normal(0, 0.03, (count, POINTS))
    )
    factor = rng.uniform(0.7, 1.3, truth.shape)
    starts = truth * factor
    starts[:, [1, 4]] = truth[:, [1, 4]] + rng.uniform(-0.3, 0.3, (count, 2))
    starts[:, 6:] = 0.0
    return x, Y, starts


def _model() -> Any:
    from jaxfit.models import Gaussian, Linear

    return Gaussian("p1_") + Gaussian("p2_") + Linear("bg_")


def _lmfit_loop(x: np.ndarray, Y: np.ndarray, starts: np.ndarray) -> tuple[float, np.ndarray]:
    import lmfit

    M = lmfit.models
    model = M.GaussianModel(prefix="p1_") + M.GaussianModel(prefix="p2_") + M.LinearModel(prefix="bg_")
    chi = np.empty(len(Y))
    t0 = time.perf_counter()
    for g in range(len(Y)):
        pars = model.make_params(**dict(zip(TRUTH, map(float, starts[g]))))
        chi[g] = model.fit(Y[g], pars, x=x).chisqr
    return time.perf_counter() - t0, chi


def _leastsq_chisqr(x: np.ndarray, Y: np.ndarray, starts: np.ndarray) -> np.ndarray:
    from scipy.optimize import leastsq

    out = np.empty(len(Y))
    for g in range(len(Y)):

        def residuals(p: np.ndarray, y: np.ndarray = Y[g]) -> np.ndarray:
            return _gauss(x, *p[:3]) + _gauss(x, *p[3:6]) + p[6] * x + p[7] - y

        p = leastsq(residuals, starts[g], xtol=1e-10, ftol=1e-10)[0]
        out[g] = float(np.sum(residuals(p) ** 2))
    return out


def run(count: int = 10_000, lmfit_sample: int = 200) -> list[dict[str, Any]]:
    import jaxfit

    x, Y, starts = spectra(count)
    model = _model()
    lmfit_s, lmfit_chi = _lmfit_loop(x, Y[:lmfit_sample], starts[:lmfit_sample])
    reference = _leastsq_chisqr(x, Y, starts)
    rows = []
    for precision in ("float32", "float64"):
        y = Y.astype(precision)
        jaxfit.curve_fit(model, x, y, p0=starts, result=True)  # compile
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fit = jaxfit.curve_fit(model, x, y, p0=starts, result=True)
            times.append(time.perf_counter() - t0)
        seconds = min(times)
        worse = int((fit.chisqr > reference * 1.01 + 1e-6).sum())
        rows.append(
            {
                "precision": precision,
                "fits": count,
                "seconds": seconds,
                "fits_per_s": count / seconds,
                "lmfit_per_fit_s": lmfit_s / lmfit_sample,
                "ratio": (lmfit_s / lmfit_sample) / (seconds / count),
                "worse": worse,
                "worse_than_lmfit_sample": int((fit.chisqr[:lmfit_sample] > lmfit_chi * 1.01 + 1e-6).sum()),
                "converged": int((fit.status == jaxfit.Status.CONVERGED).sum()),
                "mean_steps": float(np.mean(fit.steps)),
            }
        )
    return rows


def main(quick: bool = False) -> int:
    from jaxfit.output.report import table

    count, sample = (500, 50) if quick else (10_000, 200)
    rows = run(count, sample)
    print(
        f"W6: {count:,} spectra of {POINTS} points, two Gaussians + a line (8 free parameters), "
        f"jaxfit.curve_fit with the built-in composite model against an lmfit Model.fit loop "
        f"(timed on {sample}), the same starts:"
    )
    print(
        table(
            ["precision", "fits", "jaxfit s", "fits/s", "lmfit ms/fit", "jaxfit/lmfit", "converged", "steps"],
            [
                [
                    r["precision"],
                    f"{r['fits']:,}",
                    f"{r['seconds']:.3f}",
                    f"{r['fits_per_s']:,.0f}",
                    f"{1e3 * r['lmfit_per_fit_s']:.2f}",
                    f"{r['ratio']:.0f}x",
                    f"{r['converged']:,}",
                    f"{r['mean_steps']:.1f}",
                ]
                for r in rows
            ],
            [False, True, True, True, True, True, True, True],
        )
    )
    for r in rows:
        print(
            f"W6 quality ({r['precision']}): {r['worse']} of {r['fits']:,} worse than MINPACK leastsq's chi-square "
            f"x 1.01 + 1e-6 (the same starts); {r['worse_than_lmfit_sample']} of the {sample} lmfit fits"
        )
    return 0
