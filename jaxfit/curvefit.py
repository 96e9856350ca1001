"""``curve_fit``: scipy's call over NumPy arrays — one data set, or a whole batch of
them in the same call — run by the batch engine (every core, each fit stopping on its
own, one compile per model and shape), with no file round trip.

    popt, pcov = jaxfit.curve_fit(f, xdata, ydata, p0)          # as scipy.optimize.curve_fit
    popt, pcov = jaxfit.curve_fit(f, x, Y, P0)                  # Y (G, n), P0 (G, k): (G, k), (G, k, k)
    fit = jaxfit.curve_fit(f, x, Y, P0, full_output=True)       # a CurveFit: status, steps, errors, ...

``f(x, *params)`` is written in ``jax.numpy`` for one point: ``x`` a scalar, or with
``xdata`` of shape ``(d, n)`` the point's ``d`` coordinates (``px, py = x``).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxfit.core.status import Status
from jaxfit.results import BatchResult

LM_TOLERANCE = {"float32": 1e-6, "float64": 1e-10}
"""Default ``tolerance`` (every |LM step| below it) by precision."""


@dataclasses.dataclass(frozen=True)
class CurveFit:
    """What ``curve_fit(..., full_output=True)`` returns: for ``G`` data sets (a single
    data set: the leading axis dropped) and ``k`` parameters."""

    popt: np.ndarray
    """(G, k) final parameters."""
    pcov: np.ndarray
    """(G, k, k) covariance, as scipy's (inf where ``singular``)."""
    perr: np.ndarray
    """(G, k) standard errors, ``sqrt(diag(pcov))``."""
    status: np.ndarray
    """(G,) ``Status`` codes (int8)."""
    steps: np.ndarray
    chisqr: np.ndarray
    dof: np.ndarray
    redchi: np.ndarray
    aic: np.ndarray
    bic: np.ndarray
    rsquared: np.ndarray
    singular: np.ndarray
    at_bound: np.ndarray
    """(G, k) bool: the parameter ended on one of its bounds (its error then means little)."""
    names: tuple[str, ...]
    batch: BatchResult
    """Everything the engine returned (run facts, intervals)."""

    @property
    def converged(self) -> np.ndarray:
        return self.status == Status.CONVERGED


def parameter_names(f: Callable[..., Any], p0: np.ndarray | None) -> tuple[str, ...]:
    """The names of ``f``'s parameters after ``x`` (``p0 .. p{k-1}`` for ``f(x, *p)``)."""
    try:
        params = list(inspect.signature(f).parameters.values())[1:]
    except (TypeError, ValueError):
        params = []
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params) or not params:
        if p0 is None:
            raise ValueError("f takes *params: give p0 so that the number of parameters is known")
        return tuple(f"p{i}" for i in range(p0.shape[-1]))
    if any(p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params):
        raise ValueError(
            f"f must be f(x, p1, p2, ...) with positional parameters, got {inspect.signature(f)}"
        )
    return tuple(p.name for p in params)


def _array(value: Any, name: str) -> np.ndarray:
    try:
        return np.asarray(value)
    except ValueError:
        raise ValueError(
            f"{name}: ragged (rows of different lengths); pad the shorter data sets with NaN "
            "and pass nan_policy='omit'"
        ) from None


def _dtype(precision: str | None, y: np.ndarray) -> np.dtype:
    """The fit's dtype: ``precision``, else float32 for float32 ``ydata``, else float64."""
    if precision is not None:
        if precision not in ("float32", "float64"):
            raise ValueError(f"precision: {precision!r} is not allowed; expected 'float32' or 'float64'")
        return np.dtype(precision)
    return np.dtype(np.float32 if y.dtype == np.float32 else np.float64)


def _shapes(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, int]:
    """``x`` as ``(G, n)`` or ``(G, n, d)`` for ``y`` of shape ``(G, n)`` — or ``(n,)``
    / ``(n, d)`` when every data set shares it (not copied per set) — and ``d`` (0: scalar x)."""
    groups, n = y.shape
    if x.shape == (n,) and groups > 1:
        return x, 0
    if x.shape == (n,):
        return x[None], 0
    if x.shape == (groups, n):
        return x, 0
    if x.ndim == 2 and x.shape[1] == n:  # (d, n): several x columns, shared
        return (x.T if groups > 1 else x.T[None]), x.shape[0]
    if x.ndim == 3 and x.shape[0] in (1, groups) and x.shape[2] == n:  # (G or 1, d, n)
        return np.broadcast_to(np.swapaxes(x, 1, 2), (groups, n, x.shape[1])), x.shape[1]
    raise ValueError(
        f"xdata: shape {x.shape} does not match ydata's {y.shape}; expected ({n},), ({groups}, {n}), "
        f"(d, {n}) or ({groups}, d, {n})"
    )


def _per_set(value: np.ndarray | None, groups: int, width: int, name: str, what: str) -> np.ndarray | None:
    if value is None:
        return None
    if value.shape == (width,):
        return np.broadcast_to(value, (groups, width))
    if value.shape == (groups, width):
        return value
    raise ValueError(f"{name}: shape {value.shape}; expected ({width},) or ({groups}, {width}) ({what})")


def plan_arrays(
    f: Callable[..., Any],
    names: tuple[str, ...],
    x: np.ndarray,
    y: np.ndarray,
    mask: np.ndarray | None,
    sigma: np.ndarray | None,
    starts: np.ndarray,
    *,
    dims: int,
    dtype: np.dtype,
    absolute_sigma: bool,
    tolerance: float,
    max_steps: int,
    ftol: float = 0.0,
    xtol: float = 0.0,
    gtol: float = 0.0,
    loss: str = "ssr",
    f_scale: float = 1.0,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> Any:
    """A ``plans.BatchPlan`` of one LM fit per data set (row of ``y``), from checked
    arrays: ``x`` ``(G, n[, d])``, ``y``/``mask``/``sigma`` ``(G, n)``, ``starts`` and
    the ``bounds`` ``(lower, upper)`` ``(G, k)``."""
    from jaxfit.chunks import Inputs, Program
    from jaxfit.core.engine import Spec
    from jaxfit.core.model import Data, Function
    from jaxfit.core.optim import Hyper, OptimizerKind
    from jaxfit.core.stats import StatsSpec
    from jaxfit.plans import BatchPlan
    from jaxfit.sweep import HYPER_NAMES, fixed_plan

    base = {**dict(zip(names, map(float, starts[0]))), "learning_rate": 1.0, "tolerance": tolerance}
    base["max_steps"] = max_steps
    plan, tables = fixed_plan(names, base)
    label = getattr(f, "__qualname__", repr(f))
    bounded = () if bounds is None else tuple(n for i, n in enumerate(names) if _is_bounded(bounds, i))
    spec = Spec(names, OptimizerKind("lm"), Function(f, names, label, dims), loss, bounded)
    box = None
    if bounded:
        box = tuple({n: np.asarray(b[:, names.index(n)], dtype) for n in bounded} for b in bounds)

    def scalar(v: float, kind: Any = dtype) -> np.ndarray:
        return np.asarray(v, kind)

    hyper = Hyper(
        learning_rate=scalar(1.0),
        tolerance=scalar(tolerance),
        max_steps=scalar(max_steps, np.int32),
        momentum=scalar(0.0),
        b1=scalar(0.9),
        b2=scalar(0.999),
        eps=scalar(1e-8),
        damping=scalar(0.01),
        ftol=scalar(ftol),
        f_scale=scalar(f_scale),
        xtol=scalar(xtol) if xtol else None,
        gtol=scalar(gtol) if gtol else None,
    )
    data = Data(
        np.asarray(x, dtype),
        np.asarray(y, dtype),
        None if mask is None else np.asarray(mask),
        None if sigma is None else np.asarray(sigma, dtype),
    )
    groups = y.shape[0]
    return BatchPlan(
        program=Program(spec, plan, StatsSpec(absolute_sigma, covariance=True)),
        inputs=Inputs(
            tables._replace(coef=tables.coef.astype(dtype), values=tables.values.astype(dtype)),
            hyper,
            data,
            np.int32(1),
            {n: np.asarray(starts[:, i], dtype) for i, n in enumerate(names)},
            box,
        ),
        fits=groups,
        names=names,
        base={n: base[n] for n in (*names, *HYPER_NAMES)},
        precision=dtype.name,
        labels=np.arange(groups),
        covariance=True,
    )


def _is_bounded(bounds: tuple[np.ndarray, np.ndarray], i: int) -> bool:
    return bool(np.isfinite(bounds[0][:, i]).any() or np.isfinite(bounds[1][:, i]).any())


def _checked_bounds(
    bounds: Any, starts: np.ndarray, names: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray] | None:
    """scipy's ``bounds=(lower, upper)``, each a scalar, ``(k,)`` or ``(G, k)``, as two
    ``(G, k)`` arrays (None: unbounded); ``ValueError`` for a bad or infeasible one."""
    try:
        lower, upper = bounds
    except (TypeError, ValueError):
        raise ValueError("bounds: expected (lower, upper), each a number, (k,) or (G, k)") from None
    groups, k = starts.shape

    def shaped(value: Any, side: str) -> np.ndarray:
        b = np.asarray(value, np.float64)
        if b.ndim == 0 or b.shape == (k,) or b.shape == (groups, k):
            return np.broadcast_to(b, (groups, k))
        raise ValueError(
            f"bounds: the {side} bounds have shape {b.shape}; expected a number, ({k},) or ({groups}, {k})"
        )

    lower, upper = shaped(lower, "lower"), shaped(upper, "upper")
    if np.isnan(lower).any() or np.isnan(upper).any():
        raise ValueError("bounds: NaN is not a bound (use -inf or inf for none)")
    if (lower >= upper).any():
        g, i = np.argwhere(lower >= upper)[0]
        raise ValueError(f"bounds: {names[i]}: lower {lower[g, i]:g} must be below upper {upper[g, i]:g}")
    outside = (starts < lower) | (starts > upper)
    if outside.any():
        g, i = np.argwhere(outside)[0]
        where = f" (data set {g})" if groups > 1 else ""
        raise ValueError(
            f"p0: {names[i]} = {starts[g, i]:g}{where} is outside its bounds [{lower[g, i]:g}, {upper[g, i]:g}]"
        )
    if np.isinf(lower).all() and np.isinf(upper).all():
        return None
    return lower, upper


def _checked_loss(loss: str, f_scale: float, y: np.ndarray, sigma: np.ndarray | None) -> str:
    """scipy's loss name (``linear`` is ``ssr``) or ``poisson``, checked against the data."""
    from jaxfit.core.losses import LOSSES

    kind = "ssr" if loss == "linear" else loss
    if kind not in LOSSES:
        raise ValueError(f"loss: {loss!r} is not allowed; expected one of linear, {', '.join(LOSSES[1:])}")
    if not (np.isfinite(f_scale) and f_scale > 0):
        raise ValueError(f"f_scale: must be > 0, got {f_scale}")
    if kind == "poisson":
        if sigma is not None:
            raise ValueError("sigma: a Poisson fit weighs each count by the model itself; give no sigma")
        if (y[np.isfinite(y)] < 0).any():
            raise ValueError("ydata: counts must be >= 0 for loss='poisson'")
    return kind


def _check_positive(
    f: Callable[..., Any], x: np.ndarray, mask: np.ndarray | None, starts: np.ndarray, dims: int
) -> None:
    """``loss='poisson'``: the model must be positive at ``p0`` on every real point."""
    import jax

    from jaxfit.core.model import Function

    model = Function(f, tuple(f"p{i}" for i in range(starts.shape[1])), dims=dims)
    if x.ndim == (2 if dims else 1):  # shared by every data set
        x = np.broadcast_to(x, (len(starts), *x.shape))
    with jax.enable_x64(starts.dtype == np.float64):
        m = jax.vmap(lambda x, p: model({f"p{i}": p[i] for i in range(len(p))}, x))(
            np.where(mask[..., None] if dims else mask, x, 0) if mask is not None else x, starts
        )
    bad = ~(np.asarray(m) > 0) & (True if mask is None else mask)
    if bad.any():
        g, i = np.argwhere(bad)[0]
        raise ValueError(
            f"p0: the model is {float(m[g, i]):g} at point {i} of data set {g}; loss='poisson' needs it > 0"
        )


def _checked_arrays(
    f: Callable[..., Any], xdata: Any, ydata: Any, p0: Any, sigma: Any, nan_policy: str, precision: str | None
) -> tuple:
    """``curve_fit``'s arrays checked and shaped per data set: ``(x, y, mask, sigma,
    starts, names, dims, dtype)`` (``plan_arrays``' inputs); ``ValueError`` otherwise."""
    x, y = _array(xdata, "xdata"), _array(ydata, "ydata")
    p0 = None if p0 is None else _array(p0, "p0")
    sigma = None if sigma is None else _array(sigma, "sigma")
    single = y.ndim == 1
    if y.ndim not in (1, 2) or y.shape[-1] == 0:
        raise ValueError(f"ydata: shape {y.shape}; expected (n,) or (G, n) with n > 0")
    dtype = _dtype(precision, y)
    y = y.reshape(1, -1) if single else y
    groups, n = y.shape
    x, dims = _shapes(x, y)
    names = parameter_names(f, p0)
    k = len(names)
    starts = _per_set(
        np.ones(k) if p0 is None else p0, groups, k, "p0", f"{k} parameters: {', '.join(names)}"
    )
    sigma = _per_set(sigma, groups, n, "sigma", f"{n} points")
    if not np.isfinite(starts).all():
        raise ValueError("p0: every starting value must be finite")
    if sigma is not None and not (sigma[np.isfinite(sigma)] > 0).all():
        raise ValueError("sigma: every value must be > 0")
    finite = np.isfinite(y) & (np.isfinite(x).all(axis=-1) if dims else np.isfinite(x))
    if sigma is not None:
        finite &= np.isfinite(sigma)
    mask = None
    if not finite.all():
        if nan_policy == "raise":
            g, i = np.argwhere(~finite)[0]
            raise ValueError(
                f"data set {g}, point {i}: not a finite number (pass nan_policy='omit' to leave such points out)"
            )
        mask = finite
    return x, y, mask, sigma, starts, names, dims, dtype


def curve_fit(
    f: Callable[..., Any],
    xdata: Any,
    ydata: Any,
    p0: Any = None,
    sigma: Any = None,
    absolute_sigma: bool = False,
    check_finite: bool | None = None,
    bounds: Any = (-np.inf, np.inf),
    method: str | None = None,
    *,
    loss: str = "linear",
    f_scale: float = 1.0,
    full_output: bool = False,
    nan_policy: str = "raise",
    precision: str | None = None,
    tolerance: float | None = None,
    ftol: float = 0.0,
    xtol: float = 0.0,
    gtol: float = 0.0,
    max_steps: int = 200,
    devices: int | None = None,
    block_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray] | CurveFit:
    """Fit ``f(x, *params)`` to ``ydata`` by Levenberg–Marquardt, as scipy's ``curve_fit``.

    Args:
        f: the model for one point, in ``jax.numpy`` (scalar ``x``, or ``d`` coordinates).
        xdata: ``(n,)`` (shared), ``(G, n)`` (per data set), ``(d, n)`` (d coordinates,
            shared) or ``(G, d, n)``.
        ydata: ``(n,)`` for one data set, ``(G, n)`` for ``G`` of them.
        p0: starting values, ``(k,)`` or ``(G, k)`` (default: ones, as scipy).
        sigma: each point's standard deviation, ``(n,)`` or ``(G, n)``.
        absolute_sigma: scipy's meaning (the covariance is not scaled by the reduced χ²).
        check_finite: scipy's; non-finite data are refused unless ``nan_policy="omit"``.
        bounds: ``(lower, upper)`` as scipy's: each a number, ``(k,)`` or ``(G, k)``;
            ``±inf`` for none. Steps are projected into the box (a parameter on a bound
            its gradient pushes against is held there); ``p0`` must lie inside.
        method: ``"lm"`` (or None).
        loss: ``"linear"`` (least squares), scipy's robust ``"soft_l1"``, ``"huber"``,
            ``"cauchy"``, ``"arctan"`` (with ``f_scale``), or ``"poisson"``: the Poisson
            deviance for counts (maximum likelihood; ``ydata >= 0``, the model > 0 at
            ``p0``; covariance the inverse Fisher information).
        f_scale: the robust losses' soft margin between inliers and outliers.
        full_output: return a ``CurveFit`` (status, steps, errors, statistics) instead.
        nan_policy: ``"raise"`` refuses a non-finite value; ``"omit"`` drops those points
            (ragged data sets: pad with NaN); a data set left with fewer points than
            parameters is not fitted (status ``TOO_FEW_POINTS``).
        precision: ``"float32"`` or ``"float64"`` (default: float32 for float32
            ``ydata``, else float64 as scipy).
        tolerance: stop when every |LM step| falls below it (default by precision).
        ftol: also stop when an accepted step changes χ² by less than
            ``max(ftol, ftol·χ²)`` (Gpufit's rule; 0: off).
        xtol: also stop when an accepted step has ``‖δ‖ < xtol·(xtol + ‖p‖)`` (0: off).
        gtol: also stop where every Jacobian column is within ``gtol`` of orthogonal
            to the residuals (MINPACK's; 0: off).
        max_steps: at most this many LM steps per fit.
        devices, block_size: as ``fit_batch``.

    Returns:
        ``(popt, pcov)``: ``(k,)`` and ``(k, k)`` for one data set, ``(G, k)`` and
        ``(G, k, k)`` for a batch; or a ``CurveFit`` with ``full_output``.

    Raises:
        ValueError: one line naming the argument, when a shape or a value is wrong.
    """
    for name, value in (("ftol", ftol), ("xtol", xtol), ("gtol", gtol)):
        if not 0 <= value < 1:
            raise ValueError(f"{name}: must be in [0, 1), got {value}")
    if method not in (None, "lm"):
        raise ValueError(f"method: {method!r} is not available; jaxfit.curve_fit runs 'lm'")
    if nan_policy not in ("raise", "omit"):
        raise ValueError(f"nan_policy: {nan_policy!r} is not allowed; expected 'raise' or 'omit'")
    x, y, mask, sigma, starts, names, dims, dtype = _checked_arrays(
        f, xdata, ydata, p0, sigma, nan_policy, precision
    )
    single = np.ndim(ydata) == 1
    kind = _checked_loss(loss, f_scale, y, sigma)
    box = _checked_bounds(bounds, starts, names)
    if kind == "poisson":
        _check_positive(f, x, mask, starts.astype(dtype), dims)
    from jaxfit.batch import run_batch

    plan = plan_arrays(
        f,
        names,
        x,
        y,
        mask,
        sigma,
        starts,
        dims=dims,
        dtype=dtype,
        absolute_sigma=absolute_sigma,
        tolerance=LM_TOLERANCE[dtype.name] if tolerance is None else tolerance,
        max_steps=max_steps,
        ftol=ftol,
        xtol=xtol,
        gtol=gtol,
        loss=kind,
        f_scale=f_scale,
        bounds=box,
    )
    result = run_batch(plan, devices=devices, block_size=block_size)
    return _returned(result, names, single, full_output)


def _returned(
    result: BatchResult, names: tuple[str, ...], single: bool, full_output: bool
) -> tuple[np.ndarray, np.ndarray] | CurveFit:
    """What ``curve_fit`` returns for the batch's ``result``: ``(popt, pcov)`` or a
    ``CurveFit`` (the leading axis dropped for a single data set)."""
    popt = np.stack([result.params[n] for n in names], axis=-1)
    pcov = result.covariance
    if not full_output:
        return (popt[0], pcov[0]) if single else (popt, pcov)
    none = np.zeros(result.fits, bool)
    out = CurveFit(
        popt=popt,
        pcov=pcov,
        perr=np.stack([result.stderr[n] for n in names], axis=-1),
        status=result.status,
        steps=result.steps,
        chisqr=result.chisqr,
        dof=result.dof,
        redchi=result.redchi,
        aic=result.aic,
        bic=result.bic,
        rsquared=result.rsquared,
        singular=result.singular,
        at_bound=np.stack([result.at_bound.get(n, none) for n in names], axis=-1),
        names=names,
        batch=result,
    )
    if not single:
        return out
    per_set = [f.name for f in dataclasses.fields(out) if f.name not in ("names", "batch")]
    return dataclasses.replace(out, **{name: getattr(out, name)[0] for name in per_set})
