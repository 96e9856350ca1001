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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from jaxfit.core.status import Status
from jaxfit.output.atomic import write_atomic
from jaxfit.output.results import BatchResult, FitResult

if TYPE_CHECKING:
    from jaxfit.plan.plans import BatchPlan, FitPlan

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
    from jaxfit.output.student import two_sided

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
    steps_name = "Levenberg–Marquardt" if plan.spec.optimizer.name == "lm" else "gradient-descent"
    written = [
        _save(_pink(result, trace, name, model, x, y, tangents, steps_name), out / f"pink_{name}", fmt)
        for name in result.trainable
    ]
    sigma = None if data.sigma is None else np.asarray(data.sigma, float)[real]
    if plan.dims == 0:  # the data picture has one x axis
        written.append(_save(_squiggle(result, model, x, y, sigma), out / "squiggle", fmt))
    from jaxfit.core.model import SEED_MODEL

    if model != SEED_MODEL:  # any other model: the data, the fit, its band, the residuals
        one = DataSet(
            "the fit",
            x,
            y,
            sigma,
            {n: float(v) for n, v in result.params.items()},
            None if result.covariance is None else np.asarray(result.covariance, np.float64),
            int(result.dof or 0),
            result.status.label,
            float(result.redchi) if result.redchi is not None else float("nan"),
            noise=None
            if result.redchi is None
            else new_point_variance(result.redchi, plan.stats.absolute_sigma, sigma is not None),
        )
        figure = data_fit_figure(model, [one], result.trainable, result.confidence)
        written.append(_save(figure, out / "fit", fmt))
    written.append(_save(_loss(result, trace, float(plan.problem.hyper.tolerance)), out / "loss", fmt))
    return written


def _pink(
    result: FitResult,
    trace: list[dict],
    name: str,
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    tangents: int,
    steps_name: str = "gradient-descent",
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
        label=f"{steps_name} steps ({result.steps})",
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


# -- the data and the fitted curve of any model: one data set, or a grid of a batch's


class DataSet(NamedTuple):
    """One data set's real points and its fit, for a picture (float64 host arrays)."""

    label: str
    x: np.ndarray
    """``(n,)``, or ``(n, d)`` for a model of ``d`` coordinates."""
    y: np.ndarray
    sigma: np.ndarray | None
    params: dict[str, float]
    covariance: np.ndarray | None
    """Of the trainable parameters (None: no band)."""
    dof: int
    status: str
    redchi: float
    parts: Callable[[np.ndarray], dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]] | None = None
    """A composite model's parts at ``x``: each one's curve and confidence band (low, high)."""
    noise: float | None = None
    """The variance of a new point (an unweighted fit's): the prediction band's σ²."""


def curve_and_band(
    model: Any, data: DataSet, trainable: tuple[str, ...], confidence: float, x: np.ndarray
) -> tuple:
    """The fitted curve at ``x`` and the half-width of its confidence band (None
    where the covariance is unknown or infinite)."""
    import jax
    import jax.numpy as jnp

    from jaxfit.core.stats import band
    from jaxfit.output.student import two_sided

    curve = predicted(data.params, x, model)
    cov = data.covariance
    if cov is None or data.dof <= 0 or not np.isfinite(cov).all():
        return curve, None
    with jax.enable_x64(True):
        p = {n: jnp.float64(v) for n, v in data.params.items()}
        sd = band(model, p, trainable, jnp.asarray(cov, jnp.float64), jnp.asarray(x, jnp.float64))
    return curve, float(two_sided(confidence, data.dof)) * np.asarray(sd)


def _draw_set(
    top: Any, bottom: Any, model: Any, data: DataSet, trainable: tuple[str, ...], confidence: float
) -> None:
    """The data with the fitted curve and its band above, the residuals below."""
    order = np.argsort(data.x)
    dense = np.linspace(data.x.min(), data.x.max(), 200) if data.x.size > 1 else data.x
    finite = all(np.isfinite(v) for v in data.params.values())
    if finite:
        curve, half = curve_and_band(model, data, trainable, confidence, dense)
        top.plot(dense, curve, color=GREEN, lw=2, label="fit")
        if half is not None:
            top.fill_between(
                dense,
                curve - half,
                curve + half,
                color=GREEN,
                alpha=0.25,
                lw=0,
                label=f"{100 * confidence:g}% confidence band",
            )
            if data.noise is not None and data.dof > 0:
                from jaxfit.output.student import two_sided

                t = float(two_sided(confidence, data.dof))
                wide = np.sqrt(half**2 + t * t * data.noise)
                top.plot(
                    dense,
                    curve - wide,
                    ":",
                    color=GREEN,
                    lw=1,
                    label=f"{100 * confidence:g}% prediction band",
                )
                top.plot(dense, curve + wide, ":", color=GREEN, lw=1)
        if data.parts is not None:
            _draw_parts(top, data, dense)
    if data.sigma is None:
        top.plot(data.x, data.y, "o", color="k", ms=3, label="data")
    else:
        top.errorbar(data.x, data.y, yerr=data.sigma, fmt="o", color="k", ms=3, lw=0.8, label="data ± σ")
    top.set_title(f"{data.label}: {data.status}, χ²ᵣ {data.redchi:.3g}", fontsize=9)
    top.tick_params(labelbottom=False, labelsize=7)
    if finite:
        r = data.y - predicted(data.params, data.x, model)
        if data.sigma is not None:
            r = r / data.sigma
        bottom.axhline(0, color="gray", lw=0.8)
        bottom.plot(data.x[order], r[order], "o", color=PINK, ms=3)
    bottom.set_ylabel("(y − f)/σ" if data.sigma is not None else "y − f", fontsize=8)
    bottom.tick_params(labelsize=7)


def _draw_parts(top: Any, data: DataSet, dense: np.ndarray) -> None:
    """Each part of a composite model, dashed, with its own confidence band."""
    colours = ("C0", "C1", "C4", "C5", "C6", "C7", "C8", "C9")  # not the fit's green
    for k, (name, (curve, low, high)) in enumerate(data.parts(dense).items()):
        colour = colours[k % len(colours)]
        top.plot(dense, curve, "--", color=colour, lw=1.2, label=name.rstrip("_"))
        if np.isfinite(low).all() and np.isfinite(high).all():
            top.fill_between(dense, low, high, color=colour, alpha=0.2, lw=0)


def _draw_image(axes: Any, fig: Any, model: Any, data: DataSet) -> None:
    """A model of two coordinates: data, model and residual, each point coloured."""
    model_values = predicted(data.params, data.x, model)
    panels = (("data", data.y), ("model", model_values), ("residual", data.y - model_values))
    for ax, (name, values) in zip(axes, panels):
        span = float(np.max(np.abs(values))) or 1.0
        colours = (
            {"cmap": "coolwarm", "vmin": -span, "vmax": span} if name == "residual" else {"cmap": "viridis"}
        )
        dots = ax.scatter(data.x[:, 0], data.x[:, 1], c=values, s=60, marker="s", **colours)
        fig.colorbar(dots, ax=ax, shrink=0.8)
        ax.set_title(f"{data.label}: {name}", fontsize=9)
        ax.set_aspect("equal")


def data_fit_figure(
    model: Any, sets: list[DataSet], trainable: tuple[str, ...], confidence: float, title: str = ""
) -> Any:
    """One figure of ``sets``: for each, the data with the fitted curve and its band,
    residuals below (in a grid, up to 4 across); a model of two coordinates gets
    images of the data, the model and the residual, one row per data set."""
    require()
    from matplotlib.figure import Figure

    dims = sets[0].x.shape[1] if sets[0].x.ndim == 2 else 0
    if dims == 2:
        fig = Figure(figsize=(12, 4.0 * len(sets)), dpi=110, layout="constrained")
        rows = fig.subplots(len(sets), 3, squeeze=False)
        for axes, data in zip(rows, sets):
            _draw_image(axes, fig, model, data)
    else:
        cols = min(4, len(sets))
        rows = -(-len(sets) // cols)
        fig = Figure(
            figsize=(4.2 * cols if len(sets) > 1 else 6.4, 4.4 * rows), dpi=110, layout="constrained"
        )
        grid = fig.add_gridspec(rows, cols)
        for k, data in enumerate(sets):
            cell = grid[k // cols, k % cols].subgridspec(2, 1, height_ratios=(3, 1), hspace=0.05)
            top = fig.add_subplot(cell[0])
            bottom = fig.add_subplot(cell[1], sharex=top)
            _draw_set(top, bottom, model, data, trainable, confidence)
            if k == 0:
                top.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def pick_sets(redchi: np.ndarray, count: int, how: str, seed: int = 0) -> np.ndarray:
    """Which of the data sets to draw: the ``count`` ``worst`` by reduced χ² (NaN,
    a fit that failed, first), or a ``random`` sample of them (seeded), in order."""
    n = len(redchi)
    count = min(count, n)
    if how == "worst":
        key = np.where(np.isfinite(redchi), redchi, np.inf)
        return np.argsort(-key, kind="stable")[:count]
    return np.sort(np.random.default_rng(seed).choice(n, count, replace=False))


def _covariance(
    plan: BatchPlan, params: dict[str, float], x: np.ndarray, y: np.ndarray, sigma: Any
) -> np.ndarray:
    """A drawn fit's covariance when the batch kept only standard errors: its
    statistics again at its final values (the batch's own formulas), in float64."""
    import jax
    import jax.numpy as jnp

    from jaxfit.core.model import Data
    from jaxfit.core.stats import StatsSpec, statistics

    spec = plan.program.spec
    with jax.enable_x64(True):
        p = {n: jnp.float64(v) for n, v in params.items()}
        stats = statistics(
            spec.model,
            spec.trainable,
            {n: p[n] for n in spec.trainable},
            {n: v for n, v in p.items() if n not in spec.trainable},
            Data(jnp.asarray(x), jnp.asarray(y), None, None if sigma is None else jnp.asarray(sigma)),
            StatsSpec(plan.program.stats.absolute_sigma, covariance=True),
            spec.loss,
            jnp.float64(plan.inputs.common.f_scale),
        )
        return np.asarray(stats.covariance)


def new_point_variance(redchi: float, absolute_sigma: bool, weighted: bool) -> float | None:
    """σ² of a new point for the prediction band: the residuals' variance (reduced χ²)
    of an unweighted fit, 1 with ``absolute_sigma``; None for a weighted fit (its new
    points' σ are not known)."""
    if weighted:
        return None
    return 1.0 if absolute_sigma else float(redchi)


def batch_sets(plan: BatchPlan, result: BatchResult, fits: np.ndarray) -> list[DataSet]:
    """The data sets of ``fits`` (indices into the batch) with their fits, real points only."""
    from jaxfit.run.batching import x_shared

    data, names = plan.inputs.data, plan.names
    shared = x_shared(data, plan.program.spec.model)
    out = []
    for i in map(int, fits):
        g = i // plan.per_group
        real = np.ones(np.shape(data.y)[1], bool) if data.mask is None else np.asarray(data.mask[g])
        x = np.asarray(data.x if shared else data.x[g], np.float64)[real]
        y = np.asarray(data.y[g], np.float64)[real]
        sigma = None if data.sigma is None else np.asarray(data.sigma[g], np.float64)[real]
        params = {n: float(result.params[n][i]) for n in names}
        finite = all(np.isfinite(v) for v in params.values())
        if result.covariance is not None:
            cov = np.asarray(result.covariance[i], np.float64)
        else:
            cov = _covariance(plan, params, x, y, sigma) if finite else None
        out.append(
            DataSet(
                str(plan.labels[g]) if plan.labels is not None else f"fit {i}",
                x,
                y,
                sigma,
                params,
                cov,
                int(result.dof[i]) if result.dof is not None else 0,
                Status(int(result.status[i])).label,
                float(result.redchi[i]) if result.redchi is not None else float("nan"),
                noise=None
                if result.redchi is None
                else new_point_variance(
                    result.redchi[i], plan.program.stats.absolute_sigma, sigma is not None
                ),
            )
        )
    return out


def fits_plots(
    plan: BatchPlan, result: BatchResult, out: Path, fmt: str = "png", count: int = 6
) -> list[Path]:
    """A batch of data sets (grouped data): ``fits_worst`` (the ``count`` worst by
    reduced χ²) and ``fits_random`` (``count`` drawn at random, seeded): each data set
    with its best fit, the confidence band and the residuals."""
    best = np.asarray(result.group_best())
    redchi = result.redchi[best] if result.redchi is not None else result.loss[best]
    written = []
    for how, title in (("worst", "the worst fits by reduced χ²"), ("random", "a random sample")):
        chosen = best[pick_sets(np.asarray(redchi, np.float64), count, how)]
        fig = data_fit_figure(
            plan.program.spec.model,
            batch_sets(plan, result, chosen),
            plan.trainable,
            plan.confidence,
            f"{len(chosen)} of {len(best):,} data sets: {title}",
        )
        written.append(_save(fig, out / f"fits_{how}", fmt))
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
