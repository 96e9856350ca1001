"""``python -m jaxfit bench --nist``: NIST's StRD nonlinear regression problems (27, each
from NIST's two starts), fitted by ``jaxfit.curve_fit`` in float64 and by scipy's MINPACK
``least_squares(method="lm")``, scored by the certified digits reached (the log
relative error, LRE, of the worst parameter; 4 or more counts as solved)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

FOLDER = Path(__file__).with_name("nist_strd")
SOLVED = 4.0
"""Certified digits (LRE) that count as solved."""
SD_DIGITS = 3.0
"""Certified digits asked of a solved fit's standard errors."""


def _models(xp: Any) -> dict[str, Callable[..., Any]]:
    """Each problem's model ``f(x, b1, b2, ...)`` over the array module ``xp`` (numpy or
    jax.numpy), as NIST states it (Nelson's response is ``log y``)."""
    e, pi = xp.exp, math.pi

    def lanczos(x, b1, b2, b3, b4, b5, b6):
        return b1 * e(-b2 * x) + b3 * e(-b4 * x) + b5 * e(-b6 * x)

    def gauss(x, b1, b2, b3, b4, b5, b6, b7, b8):
        return b1 * e(-b2 * x) + b3 * e(-((x - b4) ** 2) / b5**2) + b6 * e(-((x - b7) ** 2) / b8**2)

    def chwirut(x, b1, b2, b3):
        return e(-b1 * x) / (b2 + b3 * x)

    def exponential(x, b1, b2):  # Misra1a, BoxBOD
        return b1 * (1 - e(-b2 * x))

    def rational3(x, b1, b2, b3, b4, b5, b6, b7):  # Hahn1, Thurber
        return (b1 + b2 * x + b3 * x**2 + b4 * x**3) / (1 + b5 * x + b6 * x**2 + b7 * x**3)

    def enso(x, b1, b2, b3, b4, b5, b6, b7, b8, b9):
        w = 2 * pi * x
        return (
            b1 + b2 * xp.cos(w / 12) + b3 * xp.sin(w / 12) + b5 * xp.cos(w / b4) + b6 * xp.sin(w / b4)
        ) + (b8 * xp.cos(w / b7) + b9 * xp.sin(w / b7))

    def nelson(x, b1, b2, b3):
        x1, x2 = x[..., 0], x[..., 1]
        return b1 - b2 * x1 * e(-b3 * x2)

    return {
        "Misra1a": exponential,
        "Chwirut2": chwirut,
        "Chwirut1": chwirut,
        "Lanczos3": lanczos,
        "Gauss1": gauss,
        "Gauss2": gauss,
        "DanWood": lambda x, b1, b2: b1 * x**b2,
        "Misra1b": lambda x, b1, b2: b1 * (1 - (1 + b2 * x / 2) ** (-2)),
        "Kirby2": lambda x, b1, b2, b3, b4, b5: (b1 + b2 * x + b3 * x**2) / (1 + b4 * x + b5 * x**2),
        "Hahn1": rational3,
        "Nelson": nelson,
        "MGH17": lambda x, b1, b2, b3, b4, b5: b1 + b2 * e(-x * b4) + b3 * e(-x * b5),
        "Lanczos1": lanczos,
        "Lanczos2": lanczos,
        "Gauss3": gauss,
        "Misra1c": lambda x, b1, b2: b1 * (1 - (1 + 2 * b2 * x) ** (-0.5)),
        "Misra1d": lambda x, b1, b2: b1 * b2 * x * ((1 + b2 * x) ** (-1)),
        "Roszman1": lambda x, b1, b2, b3, b4: b1 - b2 * x - xp.arctan(b3 / (x - b4)) / pi,
        "ENSO": enso,
        "MGH09": lambda x, b1, b2, b3, b4: b1 * (x**2 + x * b2) / (x**2 + x * b3 + b4),
        "Thurber": rational3,
        "BoxBOD": exponential,
        "Rat42": lambda x, b1, b2, b3: b1 / (1 + e(b2 - b3 * x)),
        "MGH10": lambda x, b1, b2, b3: b1 * e(b2 / (x + b3)),
        "Eckerle4": lambda x, b1, b2, b3: (b1 / b2) * e(-0.5 * ((x - b3) / b2) ** 2),
        "Rat43": lambda x, b1, b2, b3, b4: b1 / ((1 + e(b2 - b3 * x)) ** (1 / b4)),
        "Bennett5": lambda x, b1, b2, b3: b1 * (b2 + x) ** (-1 / b3),
    }


class Problem(NamedTuple):
    name: str
    x: np.ndarray
    """(n,), or (n, 2) for Nelson."""
    y: np.ndarray
    starts: np.ndarray
    """(2, k): NIST's start 1 and start 2."""
    certified: np.ndarray
    ssr: float
    sd: np.ndarray
    """NIST's certified standard deviation of each parameter."""


def read(path: Path) -> Problem:
    """One StRD file: data, both starts, certified values and residual sum of squares."""
    lines = path.read_text().splitlines()
    rows = [re.match(r"\s*b\d+\s*=\s*(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", line) for line in lines]
    params = np.array([[float(v) for v in m.groups()] for m in rows if m])
    ssr = float(next(line.split(":")[1] for line in lines if line.startswith("Residual Sum of Squares")))
    first = [i for i, line in enumerate(lines) if line.startswith("Data:")][-1] + 1
    data = np.array([[float(v) for v in line.split()] for line in lines[first:] if line.strip()])
    y, x = data[:, 0], data[:, 1:]
    if path.stem == "Nelson":
        y = np.log(y)
    x = x[:, 0] if x.shape[1] == 1 else x
    return Problem(path.stem, x, y, params[:, :2].T, params[:, 2], ssr, params[:, 3])


def problems() -> list[Problem]:
    order = list(_models(np))
    return sorted((read(p) for p in FOLDER.glob("*.dat")), key=lambda p: order.index(p.name))


def lre(got: np.ndarray, certified: np.ndarray) -> float:
    """Certified digits of the worst parameter: ``-log10(|got - c| / |c|)``, capped at 11."""
    if not np.all(np.isfinite(got)):
        return 0.0
    rel = np.abs(got - certified) / np.abs(certified)
    return float(min(11.0, -np.log10(max(rel.max(), 1e-11))))


def run(max_steps: int = 10_000) -> list[dict[str, Any]]:
    """Every problem from both starts, by jaxfit and by scipy's MINPACK."""
    import jax
    import jax.numpy as jnp
    from scipy.optimize import least_squares

    from jaxfit.curvefit import curve_fit

    rows = []
    numpy_models, jax_models = _models(np), _models(jnp)
    for p in problems():
        f = jax_models[p.name]
        # (G, d, n) for several coordinates: (d, n) would read as one x per data set when d = G
        xdata = np.broadcast_to(p.x.T, (2, *p.x.T.shape)) if p.x.ndim == 2 else p.x
        with jax.enable_x64(True):
            fit = curve_fit(
                f,
                xdata,
                np.stack([p.y, p.y]),
                p.starts,
                precision="float64",
                tolerance=1e-300,
                xtol=1e-15,
                gtol=1e-15,
                max_steps=max_steps,
                result=True,
            )
        for s in range(2):
            g = numpy_models[p.name]
            ref = least_squares(
                lambda b, g=g, p=p: g(p.x, *b) - p.y,
                p.starts[s],
                method="lm",
                xtol=1e-15,
                ftol=1e-15,
                gtol=1e-15,
                max_nfev=100_000,
            )
            rows.append(
                {
                    "problem": p.name,
                    "start": s + 1,
                    "jaxfit": lre(fit.popt[s], p.certified),
                    "sd": lre(fit.perr[s], p.sd),
                    "steps": int(fit.steps[s]),
                    "status": int(fit.status[s]),
                    "minpack": lre(ref.x, p.certified),
                }
            )
    return rows


def main() -> int:
    from jaxfit.output.report import table

    rows = run()
    print("NIST StRD nonlinear regression, float64, certified digits (LRE) of the worst parameter:")
    print(
        table(
            ["problem", "start", "jaxfit lm", "its SD", "steps", "scipy MINPACK lm"],
            [
                [
                    r["problem"],
                    r["start"],
                    f"{r['jaxfit']:.1f}",
                    f"{r['sd']:.1f}",
                    r["steps"],
                    f"{r['minpack']:.1f}",
                ]
                for r in rows
            ],
            [False, True, True, True, True, True],
        )
    )
    ours = sum(r["jaxfit"] >= SOLVED for r in rows)
    theirs = sum(r["minpack"] >= SOLVED for r in rows)
    print(
        f"solved to {SOLVED:g} certified digits: jaxfit {ours} of {len(rows)}, MINPACK {theirs} of {len(rows)}"
    )
    missed = [f"{r['problem']} start {r['start']}" for r in rows if r["jaxfit"] < SOLVED]
    print("jaxfit misses: " + (", ".join(missed) if missed else "none"))
    solved = [r for r in rows if r["jaxfit"] >= SOLVED]
    sds = sum(r["sd"] >= SD_DIGITS for r in solved)
    print(
        f"standard errors to {SD_DIGITS:g} certified digits: {sds} of the {len(solved)} solved problem-starts"
    )
    short = [f"{r['problem']} start {r['start']} ({r['sd']:.1f})" for r in solved if r["sd"] < SD_DIGITS]
    print("short: " + (", ".join(short) if short else "none"))
    from jaxfit.core.status import Status

    ends = {Status(r["status"]).label for r in rows}
    print(
        "ended: "
        + ", ".join(f"{sum(Status(r['status']).label == e for r in rows)} {e}" for e in sorted(ends))
    )
    return 0
