"""The seed's pictures and batch diagnostics (needs the ``plot`` extra: matplotlib).

Single fit:
  ``pink_<p>.png``  SSR as a function of each trainable parameter ``p`` (the others
                    at their starting values), the gradient-descent steps on it and
                    the tangent (slope dSSR/dp) at the first steps;
  ``squiggle.png``  the data, the green squiggle and its blue and orange parts,
                    before and after the fit;
  ``loss.png``      SSR per step (log scale) and |step size| per step.
Batch:
  ``basins_<p>.png`` final vs initial value of each varied parameter;
  ``loss_hist.png``, ``steps_hist.png``, ``status.png``; ``lr_loss.png`` when the
  learning rate varies.

Figures are drawn with matplotlib's object API (no pyplot, no global state) and
written atomically.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from jaxfit.atomic import write_atomic
from jaxfit.core.status import Status
from jaxfit.results import BatchResult, FitResult

PINK, BLUE, ORANGE, GREEN = "#e377c2", "#1f77b4", "#ff7f0e", "#2ca02c"
INSTALL_HINT = 'plotting needs matplotlib: pip install "jaxfit[plot]" (or pip install matplotlib)'


class PlotError(ImportError):
    """matplotlib is missing."""


def require() -> None:
    """Raise ``PlotError`` (one line: what to install) when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotError(INSTALL_HINT) from None


def _figure(ncols: int = 1, width: float = 6.4, height: float = 4.2) -> Any:
    require()
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height), dpi=110, layout="constrained")
    axes = fig.subplots(1, ncols)
    return fig, (axes if ncols > 1 else [axes])


def _save(fig: Any, path: Path, fmt: str) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt)
    target = path.with_suffix(f".{fmt}")
    write_atomic(target, buf.getvalue())
    return target


# -- the model in float64 NumPy, for curves (independent of the fit's precision)


def _softplus(z: np.ndarray) -> np.ndarray:
    return np.logaddexp(z, 0.0)


def parts(params: dict[str, float], x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(blue, orange, green squiggle)`` at dosages ``x``."""
    blue = params["w3"] * _softplus(params["w1"] * x + params["b1"])
    orange = params["w4"] * _softplus(params["w2"] * x + params["b2"])
    return blue, orange, blue + orange + params["b3"]


def ssr_along(
    params: dict[str, float], name: str, values: np.ndarray, x: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """SSR with parameter ``name`` set to each of ``values`` (the others from ``params``): the pink curve."""
    out = np.empty(len(values))
    for i, v in enumerate(values):
        green = parts({**params, name: float(v)}, x)[2]
        out[i] = np.sum((y - green) ** 2)
    return out


def _slope(params: dict[str, float], name: str, at: float, x: np.ndarray, y: np.ndarray) -> float:
    h = 1e-6 * max(1.0, abs(at))
    f = ssr_along(params, name, np.array([at - h, at + h]), x, y)
    return float((f[1] - f[0]) / (2 * h))


def fit_plots(
    result: FitResult, config: dict[str, Any], out: Path, fmt: str = "png", tangents: int = 3
) -> list[Path]:
    """Draw the single-fit pictures into ``out`` (``config``: the resolved config as a
    plain dict); returns the files written."""
    x, y = np.asarray(config["data"]["x"], float), np.asarray(config["data"]["y"], float)
    written = []
    trace = result.trace_rows()
    for name in result.trainable:
        fig, (ax,) = _figure()
        visited = [r["params"][name] for r in trace] + [result.params[name]]
        lo, hi = min(visited), max(visited)
        pad = max(0.5, 0.25 * (hi - lo))
        grid = np.linspace(lo - pad, hi + pad, 400)
        ax.plot(
            grid,
            ssr_along(result.init, name, grid, x, y),
            color=PINK,
            lw=2.5,
            label="SSR (others at their starting values)",
        )
        steps = np.asarray(visited)
        ax.plot(
            steps,
            ssr_along(result.init, name, steps, x, y),
            "o-",
            color="k",
            ms=4,
            lw=0.8,
            label=f"gradient-descent steps ({result.steps})",
        )
        for k, at in enumerate(steps[:tangents]):
            slope = _slope(result.init, name, float(at), x, y)
            level = ssr_along(result.init, name, np.array([at]), x, y)[0]
            span = np.linspace(at - 0.45, at + 0.45, 2) * 1.0
            ax.plot(
                span,
                level + slope * (span - at),
                "--",
                color="#555",
                lw=1.6,
                label="tangent: slope = dSSR/d" + name if k == 0 else None,
            )
            ax.annotate(
                f"{slope:.3g}",
                (at, level),
                textcoords="offset points",
                xytext=(6, 6),
                fontsize=8,
                color="gray",
            )
        ax.set(xlabel=name, ylabel="sum of squared residuals", title=f"The pink curve: SSR vs {name}")
        ax.legend(fontsize=8)
        written.append(_save(fig, out / f"pink_{name}", fmt))

    fig, axes = _figure(2)
    dense = np.linspace(min(x.min(), 0.0), max(x.max(), 1.0), 300)
    for ax, (label, params) in zip(axes, (("before the fit", result.init), ("after the fit", result.params))):
        blue, orange, green = parts(params, dense)
        ax.plot(dense, blue, color=BLUE, lw=1.5, label="blue: w3·softplus(w1·x+b1)")
        ax.plot(dense, orange, color=ORANGE, lw=1.5, label="orange: w4·softplus(w2·x+b2)")
        ax.plot(dense, green, color=GREEN, lw=2.5, label="green squiggle = blue + orange + b3")
        ax.scatter(x, y, color="k", zorder=3, label="observed")
        sse = float(np.sum((y - parts(params, x)[2]) ** 2))
        ax.set(xlabel="dosage", ylabel="efficacy", title=f"{label} (SSR {sse:.4g})")
        ax.legend(fontsize=7, loc="best")
    written.append(_save(fig, out / "squiggle", fmt))

    fig, (a1, a2) = _figure(2)
    k = np.arange(1, len(trace) + 1)
    a1.semilogy(k, [max(r["loss"], 1e-300) for r in trace], "o-", ms=3, color=PINK)
    a1.set(xlabel="step", ylabel="SSR before the step (log)", title="Loss per step")
    for name in result.trainable:
        a2.semilogy(k, [max(abs(r["step_size"][name]), 1e-300) for r in trace], "o-", ms=3, label=name)
    a2.axhline(config["train"]["tolerance"], color="gray", ls="--", lw=1, label="tolerance")
    a2.set(xlabel="step", ylabel="|step size| (log)", title="Step size per step")
    a2.legend(fontsize=8)
    written.append(_save(fig, out / "loss", fmt))
    return written


def batch_plots(result: BatchResult, out: Path, fmt: str = "png", max_points: int = 50_000) -> list[Path]:
    """Draw the batch diagnostics into ``out``; returns the files written."""
    written = []
    n = result.fits
    # a fixed random subset: an evenly strided one would alias with the grid's axes
    pick = (
        np.arange(n)
        if n <= max_points
        else np.sort(np.random.default_rng(0).choice(n, max_points, replace=False))
    )
    status = result.status[pick]
    for name, init in result.init.items():
        if init.strides == (0,) or name not in result.trainable:
            continue
        fig, (ax,) = _figure()
        for code, color in ((Status.CONVERGED, GREEN), (Status.MAX_STEPS, ORANGE), (Status.DIVERGED, "red")):
            m = status == code
            if m.any():
                ax.scatter(
                    init[pick][m],
                    result.params[name][pick][m],
                    s=2,
                    color=color,
                    label=code.label,
                    rasterized=True,
                )
        ax.set(
            xlabel=f"initial {name}",
            ylabel=f"final {name}",
            title=f"Basins of attraction: final vs initial {name}"
            + (f" ({len(pick):,} of {n:,} fits)" if len(pick) < n else ""),
        )
        ax.legend(fontsize=8, markerscale=4)
        written.append(_save(fig, out / f"basins_{name}", fmt))

    finite = result.loss[np.isfinite(result.loss)]
    fig, (ax,) = _figure()
    if finite.size:
        positive = np.clip(finite.astype(np.float64), 1e-30, None)
        ax.hist(
            positive,
            bins=np.logspace(np.log10(positive.min()), np.log10(positive.max()) + 1e-9, 60),
            color=PINK,
        )
        ax.set_xscale("log")
    ax.set(xlabel="final SSR (log)", ylabel="fits", title=f"Final loss of {finite.size:,} finite fits")
    written.append(_save(fig, out / "loss_hist", fmt))

    fig, (ax,) = _figure()
    ax.hist(result.steps, bins=min(60, max(1, int(result.steps.max()) + 1)), color=BLUE)
    ax.set(xlabel="steps taken", ylabel="fits", title="Steps per fit")
    written.append(_save(fig, out / "steps_hist", fmt))

    fig, (ax,) = _figure()
    counts = result.status_counts()
    bars = ax.bar(list(counts), list(counts.values()), color=[GREEN, ORANGE, "red"])
    ax.bar_label(bars, labels=[f"{v:,}" for v in counts.values()])
    ax.set(ylabel="fits", title="Status of every fit")
    written.append(_save(fig, out / "status", fmt))

    if result.learning_rate.strides != (0,):
        fig, (ax,) = _figure()
        lr, loss = result.learning_rate[pick], result.loss[pick]
        ok = np.isfinite(loss)
        ax.scatter(lr[ok], np.clip(loss[ok], 1e-30, None), s=3, color=PINK, rasterized=True)
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="learning rate",
            ylabel="final SSR",
            title="Final loss vs learning rate",
        )
        written.append(_save(fig, out / "lr_loss", fmt))
    return written
