"""The pictures of a fit (the seed's, for the seed) and batch diagnostics (needs the ``plot`` extra: matplotlib).

Single fit:
  ``pink_<p>.png``  SSR as a function of each trainable parameter ``p`` (the others
                    at their starting values), the gradient-descent steps on it and
                    the tangent (slope dSSR/dp) at the first steps;
  ``squiggle.png``  the data and the fitted curve, before and after the fit: for
                    the seed, the green squiggle with its blue and orange parts; for
                    a network, each hidden node's part; for a function, the curve;
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
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxfit.atomic import write_atomic
from jaxfit.core.status import Status
from jaxfit.results import BatchResult, FitResult

if TYPE_CHECKING:
    from jaxfit.plans import FitPlan

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


# -- curves of the config's model, in float64 (independent of the fit's precision)


def _curves(model: Any, params: dict[str, float], name: str, values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Predictions at ``x`` with ``name`` set to each of ``values``: ``(len(values), len(x))``."""
    import jax
    import jax.numpy as jnp

    from jaxfit.core.model import predict

    with jax.enable_x64(True):
        p = {n: jnp.float64(v) for n, v in params.items()}
        xs = jnp.asarray(x, jnp.float64)
        one = jax.jit(jax.vmap(lambda v: predict({**p, name: v}, xs, model)))
        return np.asarray(one(jnp.asarray(values, jnp.float64)))


def predicted(params: dict[str, float], x: np.ndarray, model: Any = None) -> np.ndarray:
    """The model's prediction at ``x`` (default: the seed's network), in float64."""
    import jax
    import jax.numpy as jnp

    from jaxfit.core.model import SEED_MODEL, predict

    with jax.enable_x64(True):
        p = {n: jnp.float64(v) for n, v in params.items()}
        return np.asarray(predict(p, jnp.asarray(x, jnp.float64), model or SEED_MODEL))


def ssr_along(
    params: dict[str, float], name: str, values: np.ndarray, x: np.ndarray, y: np.ndarray, model: Any = None
) -> np.ndarray:
    """SSR with parameter ``name`` set to each of ``values`` (the others from ``params``): the pink curve."""
    from jaxfit.core.model import SEED_MODEL

    curves = _curves(model or SEED_MODEL, params, name, np.asarray(values, float), x)
    return np.sum((np.asarray(y, float) - curves) ** 2, axis=1)


def _slope(model: Any, params: dict[str, float], name: str, at: float, x: np.ndarray, y: np.ndarray) -> float:
    h = 1e-6 * max(1.0, abs(at))
    f = ssr_along(params, name, np.array([at - h, at + h]), x, y, model)
    return float((f[1] - f[0]) / (2 * h))


def confidence_band(result: FitResult, x: np.ndarray, model: Any = None) -> np.ndarray | None:
    """Half-width of the fitted curve's ``result.confidence`` band at ``x``:
    ``t·√(g C gᵀ)``, ``g = ∂f/∂p`` by autodiff (None where the errors are not defined)."""
    if result.singular or result.covariance is None or result.dof <= 0:
        return None
    import jax
    import jax.numpy as jnp

    from jaxfit.core.model import SEED_MODEL
    from jaxfit.core.stats import band
    from jaxfit.student import two_sided

    with jax.enable_x64(True):
        p = {n: jnp.float64(v) for n, v in result.params.items()}
        sd = band(
            model or SEED_MODEL,
            p,
            result.trainable,
            jnp.asarray(result.covariance),
            jnp.asarray(x, jnp.float64),
        )
        return float(two_sided(result.confidence, result.dof)) * np.asarray(sd)


def _nodes(model: Any, params: dict[str, float], x: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """A network's hidden-node contributions at ``x``, labelled (none for a function model)."""
    from jaxfit.core.model import SEED_MODEL, Network

    if not isinstance(model, Network):
        return []
    import jax

    with jax.enable_x64(True):
        p = {n: np.float64(v) for n, v in params.items()}
        curves = [np.asarray(model.node(p, i, np.asarray(x, np.float64))) for i in range(1, model.hidden + 1)]
    if model == SEED_MODEL:
        return [("blue: w3·softplus(w1·x+b1)", curves[0]), ("orange: w4·softplus(w2·x+b2)", curves[1])]
    h, act = model.hidden, model.activation
    return [(f"node {i}: w{h + i}·{act}(w{i}·x+b{i})", c) for i, c in enumerate(curves, start=1)]


def fit_plots(result: FitResult, plan: FitPlan, out: Path, fmt: str = "png", tangents: int = 3) -> list[Path]:
    """Draw the single-fit pictures of a fit (``plan``: the lowered fit) into ``out``;
    returns the files written."""
    model, data = plan.spec.model, plan.problem.data
    real = slice(None) if data.mask is None else np.asarray(data.mask)
    x, y = np.asarray(data.x, float)[real], np.asarray(data.y, float)[real]
    trace = result.trace_rows()
    written = [
        _save(_pink(result, trace, name, model, x, y, tangents), out / f"pink_{name}", fmt)
        for name in result.trainable
    ]
    sigma = None if data.sigma is None else np.asarray(data.sigma, float)[real]
    if plan.dims == 0:  # the data picture has one x axis
        written.append(_save(_squiggle(result, model, x, y, sigma), out / "squiggle", fmt))
    written.append(_save(_loss(result, trace, float(plan.problem.hyper.tolerance)), out / "loss", fmt))
    return written


def _pink(
    result: FitResult, trace: list[dict], name: str, model: Any, x: np.ndarray, y: np.ndarray, tangents: int
) -> Any:
    """SSR along ``name`` (the others at their starting values), the steps on it, and
    the tangent at the first ``tangents`` steps."""
    fig, (ax,) = _figure()
    visited = [r["params"][name] for r in trace] + [result.params[name]]
    lo, hi = min(visited), max(visited)
    pad = max(0.5, 0.25 * (hi - lo))
    grid = np.linspace(lo - pad, hi + pad, 400)
    ax.plot(
        grid,
        ssr_along(result.init, name, grid, x, y, model),
        color=PINK,
        lw=2.5,
        label="SSR (others at their starting values)",
    )
    steps = np.asarray(visited)
    ax.plot(
        steps,
        ssr_along(result.init, name, steps, x, y, model),
        "o-",
        color="k",
        ms=4,
        lw=0.8,
        label=f"gradient-descent steps ({result.steps})",
    )
    levels = ssr_along(result.init, name, steps[:tangents], x, y, model)
    for k, at in enumerate(steps[:tangents]):
        slope = _slope(model, result.init, name, float(at), x, y)
        span = np.linspace(at - 0.45, at + 0.45, 2) * 1.0
        ax.plot(
            span,
            levels[k] + slope * (span - at),
            "--",
            color="#555",
            lw=1.6,
            label="tangent: slope = dSSR/d" + name if k == 0 else None,
        )
        ax.annotate(
            f"{slope:.3g}",
            (at, levels[k]),
            textcoords="offset points",
            xytext=(6, 6),
            fontsize=8,
            color="gray",
        )
    ax.set(xlabel=name, ylabel="sum of squared residuals", title=f"The pink curve: SSR vs {name}")
    ax.legend(fontsize=8)
    return fig


def _squiggle(
    result: FitResult, model: Any, x: np.ndarray, y: np.ndarray, sigma: np.ndarray | None = None
) -> Any:
    """The data (with their σ as error bars) and the fitted curve (with each network
    node's part), before and after; after it, the curve's confidence band shaded."""
    from jaxfit.core.model import SEED_MODEL

    fig, axes = _figure(2)
    span = x.max() - x.min()
    dense = (
        np.linspace(min(x.min(), 0.0), max(x.max(), 1.0), 300)
        if span <= 1
        else np.linspace(x.min(), x.max(), 300)
    )
    seed = model == SEED_MODEL
    for ax, (label, params) in zip(axes, (("before the fit", result.init), ("after the fit", result.params))):
        for (part, curve), color in zip(_nodes(model, params, dense), [BLUE, ORANGE] + [None] * 256):
            ax.plot(dense, curve, color=color, lw=1.5, label=part)
        green = "green squiggle = blue + orange + b3" if seed else "the model's prediction"
        curve = predicted(params, dense, model)
        ax.plot(dense, curve, color=GREEN, lw=2.5, label=green)
        half = confidence_band(result, dense, model) if params is result.params else None
        if half is not None:
            level = f"{100 * result.confidence:g}% confidence band"
            ax.fill_between(dense, curve - half, curve + half, color=GREEN, alpha=0.25, lw=0, label=level)
        if sigma is None:
            ax.scatter(x, y, color="k", zorder=3, label="observed")
        else:
            ax.errorbar(x, y, yerr=sigma, fmt="o", color="k", ms=4, zorder=3, label="observed ± σ")
        sse = float(np.sum((y - predicted(params, x, model)) ** 2))
        ax.set(
            xlabel="dosage" if seed else "x",
            ylabel="efficacy" if seed else "y",
            title=f"{label} (SSR {sse:.4g})",
        )
        ax.legend(fontsize=7, loc="best")
    return fig


def _loss(result: FitResult, trace: list[dict], tolerance: float) -> Any:
    """SSR and |step size| per step, on log scales."""
    fig, (a1, a2) = _figure(2)
    k = np.arange(1, len(trace) + 1)
    a1.semilogy(k, [max(r["loss"], 1e-300) for r in trace], "o-", ms=3, color=PINK)
    a1.set(xlabel="step", ylabel="SSR before the step (log)", title="Loss per step")
    for name in result.trainable:
        a2.semilogy(k, [max(abs(r["step_size"][name]), 1e-300) for r in trace], "o-", ms=3, label=name)
    a2.axhline(tolerance, color="gray", ls="--", lw=1, label="tolerance")
    a2.set(xlabel="step", ylabel="|step size| (log)", title="Step size per step")
    a2.legend(fontsize=8)
    return fig


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
        colors = (
            (Status.CONVERGED, GREEN),
            (Status.MAX_STEPS, ORANGE),
            (Status.STALLED, "purple"),
            (Status.DIVERGED, "red"),
        )
        for code, color in colors:
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
