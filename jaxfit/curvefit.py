"""``curve_fit``: scipy's call over NumPy arrays — one data set, or a whole batch of
them in the same call — run by the batch engine (every core, each fit stopping on its
own, one compile per model and shape), with no file round trip.

    popt, pcov = jaxfit.curve_fit(f, xdata, ydata, p0)          # as scipy.optimize.curve_fit
    popt, pcov = jaxfit.curve_fit(f, x, Y, P0)                  # Y (G, n), P0 (G, k): (G, k), (G, k, k)
    fit = jaxfit.curve_fit(f, x, Y, P0, result=True)            # a CurveFit: status, steps, errors, ...

``f(x, *params)`` is written in ``jax.numpy``, as scipy calls it (the whole ``xdata``
at once) or for one point (``x`` a scalar, or with ``xdata`` of shape ``(d, n)`` the
point's ``d`` coordinates: ``px, py = x``); jaxfit tells which from what ``f`` returns.
scipy's arguments mean what they mean in scipy (``curvefit_args``); one data set
that does not converge raises ``RuntimeError``, a batch warns once.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from jaxfit.core.status import Status
from jaxfit.curvefit_args import Arrays
from jaxfit.output.results import BatchResult

try:  # scipy's class, where scipy is installed, so that `except`/`filterwarnings` on it work
    from scipy.optimize import OptimizeWarning as _Warning
except ImportError:  # pragma: no cover - scipy is an optional extra
    _Warning = UserWarning

LM_TOLERANCE = {"float32": 1e-6, "float64": 1e-10}
"""Default ``tolerance`` (every |LM step| below it) by precision."""

IER = {
    Status.CONVERGED: 1,
    Status.MAX_STEPS: 5,
    Status.STALLED: 7,
    Status.DIVERGED: 0,
    Status.TOO_FEW_POINTS: 0,
}
"""MINPACK's ``ier`` for ``full_output``: 1 converged, 5 out of steps, 7 no further
progress possible (stalled), 0 diverged or not fitted."""

MESSAGES = {
    Status.CONVERGED: "Converged: every step fell below the tolerance at a stationary point.",
    Status.MAX_STEPS: "The maximum number of steps is exceeded (raise maxfev / max_steps).",
    Status.STALLED: "Stalled: the steps fell below the tolerance away from a stationary point (try another p0).",
    Status.DIVERGED: "Diverged: the loss, the gradient or a parameter became NaN or inf.",
    Status.TOO_FEW_POINTS: "Not fitted: fewer points than parameters.",
}


class OptimizeWarning(_Warning):
    """scipy's ``OptimizeWarning`` (a subclass of it where scipy is installed)."""


@dataclasses.dataclass(frozen=True)
class CurveFit:
    """What ``curve_fit(..., result=True)`` returns: for ``G`` data sets (a single
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
    model: str = "f"
    """The model's name (for reports)."""
    function: Any = None
    """The model as the engine calls it (``core.model.Function``), for pictures."""
    source: Any = None
    """The built-in or composite model fitted (``jaxfit.models``), else None."""
    p0: np.ndarray | None = None
    """(G, k) each fit's start."""
    reached: np.ndarray | None = None
    """(G,) with many starts: how many of a data set's starts reached its best χ²."""
    problem: Any = None
    """What was fitted (``Problem``: data, bounds, options), for profile and bootstrap."""

    @functools.cached_property
    def _quantities(self) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
        if self.source is None:
            return self.names, np.atleast_2d(self.popt), np.atleast_2d(self.perr)
        from jaxfit.models.fitting import quantities

        return quantities(self.source, self.popt, self.pcov)

    def _by_name(self, table: np.ndarray) -> dict[str, np.ndarray]:
        names = self._quantities[0]
        return {n: table[0, i] if self.single else table[:, i] for i, n in enumerate(names)}

    @property
    def values(self) -> dict[str, np.ndarray]:
        """Every parameter's value by name — with a built-in model the tied and fixed
        ones and the derived quantities (``p1_fwhm``, ``ec50`` …) too."""
        return self._by_name(self._quantities[1])

    @property
    def errors(self) -> dict[str, np.ndarray]:
        """The standard errors of ``values``: a tied or derived quantity's from the
        free parameters' covariance (``sqrt(∇q·pcov·∇qᵀ)``), a fixed one's 0."""
        return self._by_name(self._quantities[2])

    @property
    def converged(self) -> np.ndarray:
        return self.status == Status.CONVERGED

    @property
    def single(self) -> bool:
        return self.popt.ndim == 1

    def _row(self, g: int | None) -> int:
        if self.single:
            if g not in (None, 0):
                raise IndexError("a fit of one data set has only row 0")
            return 0
        if g is None:
            raise ValueError(f"this result holds {len(self.popt)} fits: give the row, e.g. report(0)")
        return int(g)

    def intervals(self, confidence: float = 0.95, method: str = "linear") -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)``, shaped as ``popt``. ``"linear"``: ``popt ± t·perr`` with
        Student's t at each fit's dof (inf where the dof or the covariance allow none);
        ``"profile"``: where the χ² profile crosses the level (``profile``);
        ``"bootstrap"``: the bootstrap-t of 1,000 residual resamplings (``bootstrap``)."""

        if method == "profile":
            got = self.profile(confidence)
            return got.low, got.high
        if method == "bootstrap":
            return self.bootstrap().intervals(confidence)
        if method != "linear":
            raise ValueError(f"method: {method!r} is not allowed; expected linear, profile or bootstrap")
        if not 0 < confidence < 1:
            raise ValueError(f"confidence: must be in (0, 1), got {confidence}")
        t = self._student(confidence)[..., None]
        return self.popt - t * self.perr, self.popt + t * self.perr

    def _student(self, confidence: float) -> np.ndarray:
        """Student's t of a two-sided ``confidence`` interval at each fit's dof (inf
        where the dof allow none)."""
        from jaxfit.output.student import two_sided

        dof = np.asarray(self.dof)
        return np.where(dof > 0, two_sided(confidence, np.maximum(dof, 1)), np.inf)

    def profile(self, confidence: float = 0.95) -> Any:
        """Profile-likelihood intervals of every parameter of every fit (lmfit's
        ``conf_interval``: each side where the least χ² with the parameter pinned rises
        by the F-test's level, or by ``z²`` with ``absolute_sigma``), all at once; a
        ``jaxfit.run.profile.Intervals`` (``low``, ``high`` and why each side is what it is)."""
        from jaxfit.run import profile

        got = profile.profile(
            self._problem("profile"),
            np.atleast_2d(self.popt),
            np.atleast_2d(self.perr),
            np.atleast_1d(self.chisqr),
            np.atleast_1d(self.dof),
            confidence,
        )
        return (
            got._replace(**{f: getattr(got, f)[0] for f in ("low", "high", "why_low", "why_high")})
            if self.single
            else got
        )

    def profile_curve(self, name: str, values: Any, g: int | None = None) -> np.ndarray:
        """The rise of the least χ² over the fit's, ``χ²ₚ − χ²``, with parameter ``name``
        pinned at each of ``values`` (data set ``g``): the curve a profile interval
        reads its ends from."""
        from jaxfit.run import profile

        if name not in self.names:
            raise ValueError(
                f"name: {name!r} is not a fitted parameter; expected one of {', '.join(self.names)}"
            )
        row = self._row(g)
        values = np.atleast_1d(np.asarray(values, np.float64))
        chi = profile.curve(
            self._problem("profile_curve"), np.atleast_2d(self.popt), row, self.names.index(name), values
        )
        return chi - float(np.atleast_1d(self.chisqr)[row])

    def value_intervals(self, confidence: float = 0.95, method: str = "linear") -> dict[str, tuple]:
        """``{name: (low, high)}`` for every value of ``values`` — with a built-in model
        its tied and derived quantities too (``ec50``, ``p1_fwhm`` …): ``"linear"`` from
        ``errors``; ``"profile"`` and ``"bootstrap"`` (as ``intervals``) for the free
        parameters, carried through each quantity that depends on one of them
        (``ec50 = 10^logec50``, monotone); a quantity of several — the bootstrap's
        percentiles of it, the profile's NaN."""

        names, values, errors = self._quantities
        if method == "linear":
            t = np.atleast_1d(self._student(confidence))[:, None]
            low, high = values - t * errors, values + t * errors
        elif method in ("profile", "bootstrap"):
            low, high = self._carried(method, confidence)
        else:
            raise ValueError(f"method: {method!r} is not allowed; expected linear, profile or bootstrap")
        return {
            n: (low[0, j], high[0, j]) if self.single else (low[:, j], high[:, j])
            for j, n in enumerate(names)
        }

    def _values_of(self, popt: np.ndarray) -> np.ndarray:
        from jaxfit.models.fitting import values_of

        return values_of(self.source, popt)

    def _carried(self, method: str, confidence: float) -> tuple[np.ndarray, np.ndarray]:
        """Every value's interval: a free parameter's own; a tied or derived one that
        depends on one free parameter, that parameter's interval carried through it;
        any other from the bootstrap's percentiles (NaN with the profile)."""
        boot = self.bootstrap() if method == "bootstrap" else None
        own = boot.intervals(confidence) if boot is not None else self.intervals(confidence, "profile")
        plow, phigh = np.atleast_2d(own[0]), np.atleast_2d(own[1])
        if self.source is None:
            return plow, phigh
        from jaxfit.models.fitting import depends_on

        popt = np.atleast_2d(self.popt)
        owner = depends_on(self.source, popt)  # (m,): the one free parameter, or -1
        low, high = np.full((len(popt), len(owner)), np.nan), np.full((len(popt), len(owner)), np.nan)
        if boot is not None and (owner < 0).any():
            tail = 100 * (1 - confidence) / 2
            low, high = np.nanpercentile(self._values_of(boot.samples), [tail, 100 - tail], axis=0)
        for j, c in enumerate(owner):
            if c < 0:
                continue
            ends = []
            for side in (plow, phigh):
                moved = popt.copy()
                moved[:, c] = side[:, c]
                ends.append(self._values_of(moved)[:, j])
            low[:, j], high[:, j] = np.minimum(*ends), np.maximum(*ends)
        return low, high

    def bootstrap(self, replicates: int = 1000, seed: int = 0, kind: str = "residual") -> Any:
        """``replicates`` resampled copies of every data set (``"residual"`` or
        ``"pairs"``), all refitted from ``popt`` as one batch (seeded); a
        ``jaxfit.run.bootstrap.Bootstrap``: its ``intervals(confidence)`` (percentiles),
        ``covariance()`` and the ``samples``."""
        from jaxfit.run import bootstrap

        return bootstrap.bootstrap(
            self._problem("bootstrap"),
            np.atleast_2d(self.popt),
            np.atleast_2d(self.perr),
            replicates,
            seed,
            kind,
            self.single,
        )

    def _problem(self, what: str) -> Problem:
        if self.problem is None:
            raise ValueError(f"{what}: this result does not hold its data (only curve_fit's do)")
        return self.problem

    def status_of(self, g: int | None = None) -> Status:
        """Fit ``g``'s status as a named ``Status`` (prints its name)."""
        return Status(int(np.atleast_1d(self.status)[self._row(g)]))

    def report(
        self, g: int | None = None, confidence: float = 0.95, min_correl: float = 0.1, method: str = "linear"
    ) -> str:
        """Fit ``g`` (the only one of a single data set) in lmfit's ``fit_report``
        layout: statistics, values ± standard errors (relative) with their starts,
        intervals at ``confidence`` (``method``: Student's t ``"linear"``, ``"profile"``
        or ``"bootstrap"``, as ``intervals``), correlations of at least ``min_correl``,
        and the status in words."""
        from jaxfit.output.report import fit_report

        row = self._row(g)

        def at(a: np.ndarray) -> np.ndarray:
            return a if self.single else a[row]

        low, high = self.intervals(confidence, method)
        init = np.atleast_2d(self.p0)[row]
        facts = {
            "steps": int(at(self.steps)),
            "points": int(at(self.dof)) + len(self.names),
            **{f: float(at(getattr(self, f))) for f in ("chisqr", "redchi", "aic", "bic", "rsquared")},
            "status": self.status_of(g).label,
        }
        return fit_report(
            self.model,
            self.names,
            at(self.popt),
            at(self.perr),
            init,
            facts,
            at(self.pcov),
            (at(low), at(high)),
            confidence,
            min_correl,
            {
                "linear": "Student's t",
                "profile": "profile likelihood, F-test",
                "bootstrap": "bootstrap-t, 1,000 resamplings",
            }[method],
        )

    def band(
        self,
        xdata: Any,
        g: int | None = None,
        kind: str = "confidence",
        confidence: float = 0.95,
        sigma: Any = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(curve, low, high)`` of data set ``g`` at ``xdata`` (as the call's, one data
        set's): the ``"confidence"`` band of the fitted curve (``t·√(g C gᵀ)``, ``g`` its
        gradient by autodiff) or the ``"prediction"`` band of a new point
        (``t·√(g C gᵀ + σ²)``: ``σ²`` the reduced χ² of an unweighted fit, 1 with
        ``absolute_sigma``, else the new points' ``sigma`` you give, scaled as the fit's)."""
        import jax
        import jax.numpy as jnp

        from jaxfit.core.stats import band
        from jaxfit.output.student import two_sided

        if kind not in ("confidence", "prediction"):
            raise ValueError(f"kind: {kind!r} is not allowed; expected confidence or prediction")
        if not 0 < confidence < 1:
            raise ValueError(f"confidence: must be in (0, 1), got {confidence}")
        if self.function is None:
            raise ValueError("band: not for a fit whose sigma was a covariance matrix (its model saw L⁻¹ f)")
        row = self._row(g)
        k = len(self.names)
        popt, pcov = np.atleast_2d(self.popt)[row], np.reshape(self.pcov, (-1, k, k))[row]
        dof, redchi = int(np.atleast_1d(self.dof)[row]), float(np.atleast_1d(self.redchi)[row])
        x = np.asarray(xdata, np.float64)
        x = x.T if self.function.dims and x.ndim == 2 else x  # (d, m) -> a point per row
        with jax.enable_x64(True):
            p = {n: jnp.float64(v) for n, v in zip(self.names, popt)}
            curve = np.asarray(self.function(p, jnp.asarray(x)))
            sd = np.asarray(band(self.function, p, self.names, jnp.asarray(pcov), jnp.asarray(x)))
        var = sd**2
        if kind == "prediction":
            absolute = self.problem is not None and self.problem.options.absolute_sigma
            weighted = self.problem is not None and self.problem.arrays.sigma is not None
            if weighted and sigma is None:
                raise ValueError("sigma: a weighted fit's prediction band needs the new points' sigma")
            scale = 1.0 if absolute else redchi
            var = var + (scale if sigma is None else scale * np.asarray(sigma, np.float64) ** 2)
        t = float(two_sided(confidence, dof)) if dof > 0 else np.inf
        half = t * np.sqrt(var)
        return curve, curve - half, curve + half

    def components(self, xdata: Any, g: int | None = None, confidence: float = 0.95) -> dict[str, tuple]:
        """A built-in or composite model's parts at ``xdata`` for data set ``g``: by
        prefix (or shape name), each part's ``(curve, low, high)``, its confidence band
        from the covariance by autodiff (Student's t of the fit's dof; inf where the
        covariance is)."""
        from jaxfit.models.fitting import component_bands
        from jaxfit.output.student import two_sided

        if self.source is None:
            raise ValueError(
                "components: only a fit of a built-in or composite model (jaxfit.models) has parts"
            )
        row = self._row(g)
        popt, pcov = (
            np.atleast_2d(self.popt)[row],
            np.reshape(self.pcov, (-1, len(self.names), len(self.names)))[row],
        )
        dof = int(np.atleast_1d(self.dof)[row])
        t = float(two_sided(confidence, dof)) if dof > 0 else np.inf
        bands = component_bands(self.source, np.asarray(xdata, np.float64), popt, pcov)
        return {name: (curve, curve - t * sd, curve + t * sd) for name, (curve, sd) in bands.items()}

    def plot(
        self,
        xdata: Any,
        ydata: Any,
        rows: Any = None,
        *,
        sigma: Any = None,
        count: int = 6,
        how: str = "worst",
        confidence: float = 0.95,
        path: str | None = None,
    ) -> Any:
        """A matplotlib figure of the data (the call's ``xdata``, ``ydata`` and
        ``sigma``), the fitted curve with its confidence band and the residuals below:
        the one data set, or the batch's ``rows`` (default: the ``count`` ``"worst"``
        by reduced χ², or a seeded ``"random"`` sample); a model of two coordinates as
        images. Saved to ``path`` when given (needs matplotlib)."""
        from jaxfit.output import plots

        if self.function is None:
            raise ValueError("plot: not for a fit whose sigma was a covariance matrix (its model saw L⁻¹ f)")
        y = np.atleast_2d(np.asarray(ydata, np.float64))
        if rows is None:
            rows = [0] if self.single else plots.pick_sets(np.atleast_1d(self.redchi), count, how)
        x = np.asarray(xdata, np.float64)
        per_set = x.ndim == 3 or (
            x.ndim == 2 and not self.single and x.shape[0] == y.shape[0] and not self.function.dims
        )
        s = None if sigma is None else np.broadcast_to(np.asarray(sigma, np.float64), y.shape)
        popt, pcov = np.atleast_2d(self.popt), np.reshape(self.pcov, (-1, len(self.names), len(self.names)))
        sets = []
        for g in map(int, np.atleast_1d(rows)):
            xg = x[g] if per_set else x
            xg = xg.T if xg.ndim == 2 else xg  # (d, n) -> a point per row
            real = np.isfinite(y[g]) & np.isfinite(xg).reshape(len(y[g]), -1).all(axis=1)
            label = "the fit" if self.single else f"data set {g}"
            sets.append(
                plots.DataSet(
                    label,
                    xg[real],
                    y[g][real],
                    None if s is None else s[g][real],
                    dict(zip(self.names, map(float, popt[g]))),
                    pcov[g],
                    int(np.atleast_1d(self.dof)[g]),
                    Status(int(np.atleast_1d(self.status)[g])).label,
                    float(np.atleast_1d(self.redchi)[g]),
                    noise=None
                    if self.problem is None
                    else plots.new_point_variance(
                        float(np.atleast_1d(self.redchi)[g]),
                        self.problem.options.absolute_sigma,
                        self.problem.arrays.sigma is not None,
                    ),
                    parts=None
                    if self.source is None or self.function.dims
                    else functools.partial(
                        self.components, g=None if self.single else g, confidence=confidence
                    ),
                )
            )
        fig = plots.data_fit_figure(self.function, sets, self.names, confidence)
        if path is not None:
            fig.savefig(path)
        return fig

    def to_pandas(self) -> Any:
        """One row per data set: each parameter and its standard error, the status (by
        name), steps and the goodness of fit (needs pandas: ``pip install pandas``)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_pandas needs pandas: pip install pandas") from None
        popt, perr = np.atleast_2d(self.popt), np.atleast_2d(self.perr)
        columns: dict[str, Any] = {}
        for i, n in enumerate(self.names):
            columns[n], columns[f"{n}_stderr"] = popt[:, i], perr[:, i]
        columns["status"] = [Status(int(s)).label for s in np.atleast_1d(self.status)]
        for f in ("steps", "chisqr", "dof", "redchi", "aic", "bic", "rsquared"):
            columns[f] = np.atleast_1d(getattr(self, f))
        return pd.DataFrame(columns)

    def __repr__(self) -> str:
        status = np.atleast_1d(self.status)
        counts = ", ".join(f"{int((status == s).sum())} {s.label}" for s in Status if (status == s).any())
        shape = "1 data set" if self.single else f"{len(status):,} data sets"
        return f"CurveFit({shape} x {len(self.names)} parameters ({', '.join(self.names)}): {counts}; {self.popt.dtype})"


def plan_arrays(
    arrays: Arrays,
    *,
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
    """A ``plans.BatchPlan`` of one LM fit per data set (row of ``arrays.y``), with
    the ``bounds`` ``(lower, upper)`` ``(G, k)``."""
    from jaxfit.core.engine import Spec
    from jaxfit.core.model import Data
    from jaxfit.core.optim import Hyper, OptimizerKind
    from jaxfit.core.stats import StatsSpec
    from jaxfit.plan.plans import BatchPlan
    from jaxfit.plan.sweep import HYPER_NAMES, fixed_plan
    from jaxfit.run.batching import Inputs, Program

    names, dtype, starts = arrays.names, arrays.dtype, arrays.starts
    base = {**dict(zip(names, map(float, starts[0]))), "learning_rate": 1.0, "tolerance": tolerance}
    base["max_steps"] = max_steps
    plan, tables = fixed_plan(names, base)
    bounded = () if bounds is None else tuple(n for i, n in enumerate(names) if _is_bounded(bounds, i))
    spec = Spec(names, OptimizerKind("lm"), arrays.model, loss, bounded)
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
        np.asarray(arrays.x, dtype),
        np.asarray(arrays.y, dtype),
        None if arrays.mask is None else np.asarray(arrays.mask),
        None if arrays.sigma is None else np.asarray(arrays.sigma, dtype),
    )
    groups = arrays.y.shape[0]
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


def _bound_pair(bounds: Any) -> tuple[Any, Any]:
    """``(lower, upper)`` from scipy's two forms: a pair, or a ``Bounds`` object."""
    if hasattr(bounds, "lb") and hasattr(bounds, "ub"):
        return bounds.lb, bounds.ub
    try:
        lower, upper = bounds
    except (TypeError, ValueError):
        raise ValueError(
            "bounds: expected (lower, upper), each a number, (k,) or (G, k), or a Bounds"
        ) from None
    return lower, upper


def _checked_bounds(
    bounds: Any, starts: np.ndarray, names: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray] | None:
    """scipy's ``bounds``, each side a scalar, ``(k,)`` or ``(G, k)``, as two
    ``(G, k)`` arrays (None: unbounded); ``ValueError`` for a bad or infeasible one."""
    lower, upper = _bound_pair(bounds)
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
            f"Initial guess is outside of provided bounds: p0: {names[i]} = {starts[g, i]:g}{where} "
            f"is outside [{lower[g, i]:g}, {upper[g, i]:g}]"
        )
    if np.isinf(lower).all() and np.isinf(upper).all():
        return None
    return lower, upper


def _feasible_starts(bounds: Any, arrays: Arrays, given: bool) -> Arrays:
    """Without ``p0``, scipy starts a bounded fit inside the box: at the middle of a
    finite interval, one past a finite bound of a half-open one, else at 1."""
    if given:
        return arrays
    lower, upper = (
        np.broadcast_to(np.asarray(b, np.float64), arrays.starts.shape) for b in _bound_pair(bounds)
    )
    starts = arrays.starts.copy()
    both = np.isfinite(lower) & np.isfinite(upper)
    starts[both] = 0.5 * (lower[both] + upper[both])
    low_only = np.isfinite(lower) & ~np.isfinite(upper)
    starts[low_only] = lower[low_only] + 1
    high_only = ~np.isfinite(lower) & np.isfinite(upper)
    starts[high_only] = upper[high_only] - 1
    return arrays._replace(starts=starts)


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


def _check_positive(arrays: Arrays) -> None:
    """``loss='poisson'``: the model must be positive at ``p0`` on every real point."""
    import jax

    x, mask, starts, model = arrays.x, arrays.mask, arrays.starts.astype(arrays.dtype), arrays.model
    if x.ndim == (2 if model.dims else 1):  # shared by every data set
        x = np.broadcast_to(x, (len(starts), *x.shape))
    if mask is not None:
        x = np.where(mask[..., None] if model.dims else mask, x, 0)
    with jax.enable_x64(starts.dtype == np.float64):
        m = jax.vmap(lambda x, p: model(dict(zip(arrays.names, p)), x))(x, starts)
    bad = ~(np.asarray(m) > 0) & (True if mask is None else mask)
    if bad.any():
        g, i = np.argwhere(bad)[0]
        raise ValueError(
            f"p0: the model is {float(m[g, i]):g} at point {i} of data set {g}; loss='poisson' needs it > 0"
        )


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
    jac: Any = None,
    *,
    full_output: bool = False,
    nan_policy: str | None = None,
    result: bool = False,
    loss: str = "linear",
    f_scale: float = 1.0,
    precision: str | None = None,
    tolerance: float | None = None,
    ftol: float = 0.0,
    xtol: float = 0.0,
    gtol: float = 0.0,
    max_steps: int | None = None,
    devices: int | None = None,
    block_size: int | None = None,
    starts: int = 1,
    seed: int = 0,
    shared: Any = None,
    **kwargs: Any,
) -> Any:
    """Fit ``f(x, *params)`` to ``ydata`` by Levenberg–Marquardt, as scipy's ``curve_fit``.

    Every argument scipy takes means what it means in scipy (or is refused with one
    line that names the alternative); jaxfit's own follow ``nan_policy``.

    Args:
        f: the model in ``jax.numpy``: ``f(xdata, *p)`` for the whole data set as scipy
            calls it, or for one point (scalar ``x``, or ``d`` coordinates).
        xdata: one data set: anything ``f`` takes, the points last (``(n,)``, ``(d, n)``,
            ...; None if ``f`` ignores it). A batch: ``(n,)``/``(d, n)`` shared, or
            ``(G, n)``/``(G, d, n)`` per data set.
        ydata: ``(n,)`` (or a number, broadcast to ``f``'s length) for one data set,
            ``(G, n)`` for ``G`` of them.
        p0: starting values, ``(k,)`` (or a number) or ``(G, k)`` (default: ones, as
            scipy; with bounds, inside them).
        sigma: a number, each point's standard deviation ``(n,)`` / ``(G, n)``, or one
            data set's covariance ``(n, n)`` (its residuals whitened by the Cholesky factor).
        absolute_sigma: scipy's meaning (the covariance is not scaled by the reduced χ²).
        check_finite, nan_policy: scipy's: non-finite data raise ``ValueError`` unless
            ``nan_policy="omit"`` leaves those points out (ragged data sets: pad with
            NaN); ``"propagate"`` is refused. A data set left with fewer points than
            parameters is not fitted (``TOO_FEW_POINTS``).
        bounds: ``(lower, upper)`` or a ``scipy.optimize.Bounds``, each side a number,
            ``(k,)`` or ``(G, k)``; steps are projected into the box (a parameter on a
            bound its gradient pushes against is held there).
        method: ``"lm"`` (no bounds), ``"trf"``, ``"dogbox"`` or None: all run jaxfit's
            projected LM (the same minimum, not the same path as scipy's).
        jac: a callable ``jac(xdata, *p) -> (n, k)`` is used for the derivatives;
            ``"2-point"``, ``"3-point"``, ``"cs"`` and None use exact autodiff.
        full_output: scipy's ``(popt, pcov, infodict, mesg, ier)``.
        result: return a ``CurveFit`` (each fit's status, steps, errors, statistics).
        loss, f_scale: scipy's ``least_squares`` losses (``"linear"``, ``"soft_l1"``,
            ``"huber"``, ``"cauchy"``, ``"arctan"``), or ``"poisson"``: the Poisson
            deviance for counts (maximum likelihood; the model > 0 at ``p0``).
        precision: ``"float32"`` or ``"float64"`` (default: float32 for float32
            ``ydata``, else float64 as scipy).
        tolerance: stop when every |LM step| falls below it at a stationary point
            (default by precision).
        ftol, xtol, gtol: also stop on a relative change of χ² below ``ftol`` (Gpufit's
            rule), a step below ``xtol·(xtol + ‖p‖)``, or MINPACK's ``gtol`` (0: off).
        max_steps: at most this many LM steps per fit (scipy's ``maxfev`` / ``max_nfev``
            mean the same here; default 200).
        devices, block_size: as ``fit_batch``.
        starts, seed: ``K > 1`` starts per data set — its own (``p0`` or the guess),
            then ``K − 1`` from a Latin hypercube around it (``jaxfit.run.multistart``,
            seeded) —, all ``K·G`` fits in one batch; each data set keeps its best
            (``CurveFit.reached``: how many starts reached it).
        shared: names of parameters common to every data set (a global fit: one
            problem, the others local to each set, solved by the Schur complement;
            ``jaxfit.run.globalfit``); returns a ``GlobalFit``. The shared start is the
            median of its ``p0`` column. ``block_size`` then streams the data sets
            from host memory in chunks of that many, a pass over them at each step.

    Returns:
        ``(popt, pcov)``: ``(k,)`` and ``(k, k)`` for one data set, ``(G, k)`` and
        ``(G, k, k)`` for a batch; scipy's 5-tuple with ``full_output``; a ``CurveFit``
        with ``result``.

    Raises:
        ValueError, TypeError: one line naming the argument, when a shape or a value is
            wrong, or ``f`` cannot be traced by JAX.
        RuntimeError: one data set whose fit did not converge ("Optimal parameters not found").

    Warns:
        OptimizeWarning: a covariance that cannot be estimated (one data set); how many
            fits of a batch did not converge.
    """
    from jaxfit import curvefit_args as args

    source, f, given = _built_in(f, p0)
    p0 = given if source is None else _model_fitting().array_p0(source, p0)
    max_steps = args.solver_options(max_steps, kwargs)
    args.checked_rules(ftol, xtol, gtol, starts)
    args.checked_nan_policy(nan_policy)
    user_jac = args.checked_jac(jac)
    single = args.array(ydata, "ydata").ndim <= 1
    checked = args.single_arrays if single else args.batch_arrays
    arrays = checked(args.Call(f, xdata, ydata, p0, sigma, user_jac, check_finite, nan_policy, precision))
    if source is not None:
        fitting = _model_fitting()
        bounds = fitting.merged_bounds(source, bounds, len(arrays.starts))
        first = fitting.starts(source, arrays, given)
        arrays = arrays._replace(starts=first if p0 is not None else fitting.inside(first, bounds))
    arrays = _feasible_starts(bounds, arrays, p0 is not None or source is not None)
    box = _checked_bounds(bounds, arrays.starts, arrays.names)
    args.checked_method(method, box is not None)
    given = Options(
        absolute_sigma, tolerance, max_steps, ftol, xtol, gtol, loss, f_scale, devices, block_size
    )
    if shared is not None:
        return _global(arrays, box, shared, single, starts, given)
    fitted, fitted_box = arrays, box  # the data sets as given (the batch may hold each several times)
    if starts > 1:
        arrays, box = _many_starts(arrays, box, int(starts), seed)
    kind = _checked_loss(loss, f_scale, arrays.y, arrays.sigma)
    if kind == "poisson":
        _check_positive(arrays)
    tolerance = LM_TOLERANCE[arrays.dtype.name] if tolerance is None else tolerance
    options = given._replace(tolerance=tolerance, loss=kind)
    whitened = sigma is not None and np.ndim(sigma) == 2 and single  # the model sees L⁻¹ f
    fit = solve(arrays, box, options, getattr(f, "__name__", "f"), whitened)
    fit = dataclasses.replace(fit, source=source)
    if starts > 1:
        from jaxfit.run.multistart import best

        fit = _rows(fit, *best(fit.chisqr, fit.converged, int(starts)))
    fit = dataclasses.replace(fit, problem=Problem(fitted, fitted_box, options))
    _raise_or_warn(fit, single, quiet=result)
    if result:
        return _first(fit) if single else fit
    if full_output:
        return _full_output(fit, fitted, single)
    return (fit.popt[0], fit.pcov[0]) if single else (fit.popt, fit.pcov)


def _global(arrays: Arrays, box: Any, shared: Any, single: bool, starts: int, given: Options) -> Any:
    """``shared=``: the data sets as one problem (``jaxfit.run.globalfit``), with the call's
    options as given (``loss`` scipy's name, ``tolerance`` None unless set); it stops by
    ``ftol`` and ``xtol`` (0: its own, 1e-6 in float32, 1e-12 in float64)."""
    from jaxfit.run.globalfit import global_fit

    if single:
        raise ValueError("shared: a global fit needs several data sets (ydata of shape (G, n))")
    if starts > 1:
        raise ValueError("shared: many starts are not supported in a global fit yet")
    if given.tolerance is not None or given.gtol:
        raise ValueError("shared: a global fit stops by ftol and xtol; tolerance and gtol do not apply")
    names = [shared] if isinstance(shared, str) else list(shared)
    kind = _checked_loss(given.loss, given.f_scale, arrays.y, arrays.sigma)
    if kind == "poisson":
        _check_positive(arrays)
    return global_fit(
        arrays,
        names,
        given.absolute_sigma,
        given.max_steps,
        box,
        (kind, float(given.f_scale)),
        given.ftol or None,
        given.xtol or None,
        devices=given.devices,
        chunk=given.block_size,
    )


class Options(NamedTuple):
    """How a call fits (its solver and statistics options)."""

    absolute_sigma: bool
    tolerance: float
    max_steps: int
    ftol: float
    xtol: float
    gtol: float
    loss: str
    f_scale: float
    devices: int | None
    block_size: int | None


class Problem(NamedTuple):
    """What a call fitted — its data sets as given, their bounds and the options — for
    the intervals that refit (profile, bootstrap)."""

    arrays: Arrays
    bounds: tuple[np.ndarray, np.ndarray] | None
    options: Options


def solve(
    arrays: Arrays,
    box: tuple[np.ndarray, np.ndarray] | None,
    options: Options,
    label: str = "f",
    whitened: bool = False,
) -> CurveFit:
    """Every data set of ``arrays`` fitted from its start, as one batch."""
    from jaxfit import curvefit_args as args
    from jaxfit.run.batch import run_batch

    o = options
    plan = plan_arrays(
        args.padded(arrays),
        absolute_sigma=o.absolute_sigma,
        tolerance=o.tolerance,
        max_steps=o.max_steps,
        ftol=o.ftol,
        xtol=o.xtol,
        gtol=o.gtol,
        loss=o.loss,
        f_scale=o.f_scale,
        bounds=box,
    )
    batch = run_batch(plan, devices=o.devices, block_size=o.block_size)
    return _curve_fit_result(batch, arrays.names, label, None if whitened else arrays.model)


def _many_starts(
    arrays: Arrays, box: tuple[np.ndarray, np.ndarray] | None, count: int, seed: int
) -> tuple[Arrays, tuple[np.ndarray, np.ndarray] | None]:
    """Every data set ``count`` times, each copy from its own start."""
    from jaxfit.run import multistart

    spread = multistart.spread(arrays.starts, arrays.names, arrays.x, arrays.model.dims, box, count, seed)
    tiled = None if box is None else tuple(np.tile(b, (count, 1)) for b in box)
    return multistart.repeated(arrays, count, spread), tiled


def _built_in(f: Any, p0: Any) -> tuple[Any, Callable[..., Any], Any]:
    """``(model, f, p0)``: a ``jaxfit.models`` model becomes the function of its free
    parameters (``model`` None for a plain function)."""
    from jaxfit.models import Model, fit_function

    if isinstance(f, Model):
        return f, fit_function(f), p0
    return None, f, p0


def _model_fitting() -> Any:
    from jaxfit.models import fitting

    return fitting


def _raise_or_warn(fit: CurveFit, single: bool, quiet: bool) -> None:
    """scipy's ways of saying a fit failed: ``RuntimeError`` for one data set that did
    not converge, ``OptimizeWarning`` for a covariance that cannot be estimated; for a
    batch one warning that counts the fits that did not converge. ``quiet`` (a
    ``CurveFit`` asked for): the status says it all, nothing is raised."""
    if quiet:
        return
    if single:
        status = Status(int(fit.status[0]))
        if status != Status.CONVERGED:
            raise RuntimeError(f"Optimal parameters not found: {MESSAGES[status]}")
        if not np.isfinite(fit.pcov).all():
            warnings.warn(
                "Covariance of the parameters could not be estimated", OptimizeWarning, stacklevel=3
            )
        return
    failed = fit.status != Status.CONVERGED
    if failed.any():
        counts = ", ".join(
            f"{int((fit.status == s).sum())} {s.label}"
            for s in Status
            if (fit.status == s).any() and s != Status.CONVERGED
        )
        warnings.warn(
            f"{int(failed.sum())} of {len(failed)} fits did not converge ({counts}); "
            "pass result=True and read .status (jaxfit.Status) to see which",
            OptimizeWarning,
            stacklevel=3,
        )


def _curve_fit_result(
    result: BatchResult, names: tuple[str, ...], model: str, function: Any = None
) -> CurveFit:
    """The batch's ``result`` as a ``CurveFit``."""
    none = np.zeros(result.fits, bool)
    return CurveFit(
        popt=np.stack([result.params[n] for n in names], axis=-1),
        pcov=result.covariance,
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
        p0=np.stack([np.broadcast_to(result.init[n], (result.fits,)) for n in names], axis=-1),
        names=names,
        batch=result,
        model=model,
        function=function,
    )


WHOLE = ("names", "batch", "model", "function", "source", "problem")
"""``CurveFit`` fields that are the call's, not a data set's."""


def _first(fit: CurveFit) -> CurveFit:
    """A one-data-set ``CurveFit`` with the leading axis dropped."""
    per_set = [f.name for f in dataclasses.fields(fit) if f.name not in WHOLE]
    return dataclasses.replace(fit, **{n: getattr(fit, n)[0] for n in per_set if getattr(fit, n) is not None})


def _rows(fit: CurveFit, rows: np.ndarray, reached: np.ndarray) -> CurveFit:
    """The fits at ``rows`` (each data set's best of its starts), ``reached`` set."""
    per_set = [f.name for f in dataclasses.fields(fit) if f.name not in (*WHOLE, "reached")]
    return dataclasses.replace(fit, reached=reached, **{n: getattr(fit, n)[rows] for n in per_set})


def _full_output(fit: CurveFit, arrays: Arrays, single: bool) -> tuple:
    """scipy's ``(popt, pcov, infodict, mesg, ier)``: ``infodict`` with ``nfev`` (the
    model's evaluations: one per step and one at the start), ``fvec`` (the weighted
    residuals at popt) and, for one data set, ``fjac``, ``ipvt``, ``qtf`` (MINPACK's
    QR of the weighted Jacobian at popt, unpivoted)."""
    r, J = _weighted_residuals(arrays, fit.popt)
    info = {"nfev": fit.steps + 1, "fvec": r}
    ier = np.array([IER.get(Status(int(s)), 0) for s in fit.status])
    mesg = [MESSAGES.get(Status(int(s)), "") for s in fit.status]
    if not single:
        return fit.popt, fit.pcov, info, mesg, ier
    q, R = np.linalg.qr(J[0])
    k = R.shape[0]
    fjac = np.zeros((k, J.shape[1]))
    fjac[:, :k] = R.T
    info = {
        "nfev": int(info["nfev"][0]),
        "fvec": r[0],
        "fjac": fjac,
        "ipvt": np.arange(1, k + 1),
        "qtf": q.T @ r[0],
    }
    return fit.popt[0], fit.pcov[0], info, mesg[0], int(ier[0])


def _weighted_residuals(arrays: Arrays, popt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scipy's ``fvec`` (``(f − y)/σ``, 0 at left-out points) ``(G, n)`` and its Jacobian
    ``(G, n, k)`` at ``popt`` ``(G, k)``."""
    import jax

    from jaxfit.core.model import Data, residuals

    names, model = arrays.names, arrays.model
    per_set = arrays.x.ndim == (3 if model.dims else 2)

    def one(x: Any, y: Any, mask: Any, sigma: Any, p: Any) -> Any:
        def fvec(p: Any) -> Any:
            return -residuals(dict(zip(names, p)), Data(x, y, mask, sigma), model)

        return fvec(p), jax.jacfwd(fvec)(p)

    optional = [a for a in (arrays.mask, arrays.sigma) if a is not None]
    with jax.enable_x64(arrays.dtype == np.float64):

        def call(x: Any, y: Any, p: Any, *rest: Any) -> Any:
            it = iter(rest)
            mask = next(it) if arrays.mask is not None else None
            sigma = next(it) if arrays.sigma is not None else None
            return one(x, y, mask, sigma, p)

        axes = (0 if per_set else None, 0, 0, *(0 for _ in optional))
        r, J = jax.vmap(call, in_axes=axes)(arrays.x, arrays.y, popt.astype(arrays.dtype), *optional)
    return np.asarray(r, np.float64), np.asarray(J, np.float64)
