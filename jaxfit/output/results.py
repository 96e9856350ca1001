"""Results of fits as host-side values, ready for tables and JSON."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import numpy as np

from jaxfit.core.stats import information
from jaxfit.core.status import Status
from jaxfit.output.student import two_sided


class FitFacts(NamedTuple):
    """What a fit's result reports besides its compiled outputs (``FitPlan.facts``)."""

    trainable: tuple[str, ...]
    start: dict[str, float]
    """Every parameter's starting value, in the model's order."""
    precision: str
    confidence: float = 0.95
    bounds: tuple[tuple[str, float, float], ...] = ()
    """``(name, lower, upper)`` of each bounded parameter."""


@dataclasses.dataclass(frozen=True)
class FitResult:
    """One finished fit.

    ``trace_*`` arrays have one row per recorded step (step ``k`` is row ``k - 1``):
    parameter values, loss (SSR) and gradient *before* that step's update, and the
    step size it applied. At most ``trace_limit`` steps are recorded; ``trace_complete``
    says whether every step taken is there.
    """

    params: dict[str, float]
    """Final values of all seven parameters."""
    init: dict[str, float]
    """Starting values of all seven parameters."""
    trainable: tuple[str, ...]
    loss: float
    """SSR at the final parameters."""
    init_loss: float
    """SSR at the starting parameters."""
    steps: int
    status: Status
    trace_params: dict[str, np.ndarray]
    trace_loss: np.ndarray
    trace_grad: dict[str, np.ndarray]
    trace_step_size: dict[str, np.ndarray]
    precision: str = "float32"
    compile_s: float = 0.0
    run_s: float = 0.0
    stderr: dict[str, float] = dataclasses.field(default_factory=dict)
    """Standard error of each trainable parameter (inf where ``singular``)."""
    covariance: np.ndarray | None = None
    """``(k, k)``, rows and columns in the order of ``trainable`` (scipy's ``pcov``)."""
    chisqr: float = math.nan
    """χ²: the SSR of the weighted residuals ``(y - f)/σ`` (the SSR without σ)."""
    dof: int = 0
    """Degrees of freedom: points minus trainable parameters."""
    redchi: float = math.nan
    aic: float = math.nan
    bic: float = math.nan
    rsquared: float = math.nan
    singular: bool = False
    """J was rank-deficient (or dof ≤ 0): the standard errors are infinite, not meaningful."""
    confidence: float = 0.95
    """Level of ``intervals``."""
    profile: dict[str, tuple[float, float]] | None = None
    """The profile-likelihood intervals (``report.intervals: profile``), else None."""
    at_bound: dict[str, bool] = dataclasses.field(default_factory=dict)
    """For each bounded parameter: it ended on one of its bounds (its standard error,
    from the unconstrained curvature, then means little)."""

    @property
    def correlation(self) -> np.ndarray | None:
        """``C_ij / (σ_i σ_j)`` (NaN where ``singular``)."""
        return None if self.covariance is None else correlation(self.covariance)

    @property
    def intervals(self) -> dict[str, tuple[float, float]]:
        """Each trainable parameter's ``confidence`` interval: the ``profile`` where
        computed, else ``value ± t·stderr`` with Student's t at ``dof`` degrees of
        freedom."""
        if self.profile is not None:
            return self.profile
        t = float(two_sided(self.confidence, self.dof)) if self.dof > 0 else math.inf
        return {
            n: (self.params[n] - t * self.stderr[n], self.params[n] + t * self.stderr[n]) for n in self.stderr
        }

    def statistics(self) -> dict[str, Any]:
        """The fit's statistics, JSON-ready (covariance and correlation as nested lists)."""
        corr = self.correlation
        return {
            "stderr": self.stderr,
            "intervals": {n: list(v) for n, v in self.intervals.items()},
            "interval_method": "linear" if self.profile is None else "profile",
            "confidence": self.confidence,
            "chisqr": self.chisqr,
            "dof": self.dof,
            "redchi": self.redchi,
            "aic": self.aic,
            "bic": self.bic,
            "rsquared": self.rsquared,
            "singular": self.singular,
            **({"at_bound": self.at_bound} if self.at_bound else {}),  # only with bounds
            "covariance": None if self.covariance is None else self.covariance.tolist(),
            "correlation": None if corr is None else corr.tolist(),
        }

    @property
    def trace_complete(self) -> bool:
        """True when the trace holds every step taken."""
        return len(self.trace_loss) >= self.steps

    def trace_rows(self) -> list[dict[str, Any]]:
        """The trace as a list of dicts: ``step`` (1-based), ``params``, ``grad``,
        ``step_size`` (by trainable name) and ``loss``."""
        rows = min(self.steps, len(self.trace_loss))
        names = self.trainable

        def columns(by_name: dict[str, np.ndarray]) -> dict[str, list[float]]:
            return {n: by_name[n][:rows].tolist() for n in names}

        params, grad, size = (
            columns(self.trace_params),
            columns(self.trace_grad),
            columns(self.trace_step_size),
        )
        loss = self.trace_loss[:rows].tolist()
        return [
            {
                "step": k + 1,
                "params": {n: params[n][k] for n in names},
                "grad": {n: grad[n][k] for n in names},
                "step_size": {n: size[n][k] for n in names},
                "loss": loss[k],
            }
            for k in range(rows)
        ]

    def to_dict(self, trace: bool = True) -> dict[str, Any]:
        """JSON-ready summary: params, loss, steps, status and (unless ``trace=False``)
        the step-by-step trace, with whether it is thinned."""
        return {
            "params": self.params,
            "init": self.init,
            "trainable": list(self.trainable),
            "loss": self.loss,
            "init_loss": self.init_loss,
            "steps": self.steps,
            "status": self.status.label,
            "precision": self.precision,
            "compile_s": self.compile_s,
            "run_s": self.run_s,
            "trace_complete": self.trace_complete,
            "trace_steps": min(self.steps, len(self.trace_loss)),
            **self.statistics(),
            **({"trace": self.trace_rows()} if trace else {}),
        }


def fit_result(
    facts: FitFacts, outputs: dict[str, Any], compile_s: float = 0.0, run_s: float = 0.0
) -> FitResult:
    """A ``FitResult`` from a fit's facts (``FitPlan.facts``) and the named outputs
    of a compiled fit (``params.P`` of every parameter, the frozen ones read back from
    the device, ``loss``, ``init_loss``, ``steps``, ``status``,
    ``trace.loss``, ``trace.params.P``, ``trace.grad.P``, ``trace.step_size.P``)."""
    trainable, start = facts.trainable, {n: float(v) for n, v in facts.start.items()}
    steps = int(outputs["steps"])
    rows = min(steps, len(outputs["trace.loss"]))

    def trace(kind: str) -> dict[str, np.ndarray]:
        return {n: np.asarray(outputs[f"trace.{kind}.{n}"][:rows]) for n in trainable}

    def number(name: str) -> float:
        return float(outputs[f"stats.{name}"])

    return FitResult(
        params={n: _final(outputs[f"params.{n}"], start[n], n in trainable) for n in start},
        init=start,
        trainable=trainable,
        loss=float(outputs["loss"]),
        init_loss=float(outputs["init_loss"]),
        steps=steps,
        status=Status(int(outputs["status"])),
        trace_params=trace("params"),
        trace_loss=np.asarray(outputs["trace.loss"][:rows]),
        trace_grad=trace("grad"),
        trace_step_size=trace("step_size"),
        precision=facts.precision,
        compile_s=compile_s,
        run_s=run_s,
        stderr={n: float(outputs[f"stats.stderr.{n}"]) for n in trainable},
        covariance=np.asarray(outputs["stats.covariance"], np.float64),
        chisqr=number("chisqr"),
        dof=int(outputs["stats.dof"]),
        redchi=number("redchi"),
        aic=number("aic"),
        bic=number("bic"),
        rsquared=number("rsquared"),
        singular=bool(outputs["stats.singular"]),
        confidence=facts.confidence,
        at_bound={n: bool(not lo < float(outputs[f"params.{n}"]) < hi) for n, lo, hi in facts.bounds},
    )


def _final(device: Any, start: float, trained: bool) -> float:
    """A parameter's final value: a trained one as the device computed it; a frozen one
    as the config gave it, if the device held exactly that value in the fit's dtype,
    else what the device held (so a frozen value that moved can never hide)."""
    value = np.asarray(device)
    if not trained and value == value.dtype.type(start):
        return start
    return float(value)


def correlation(covariance: np.ndarray) -> np.ndarray:
    """Correlation matrices ``C_ij / (σ_i σ_j)`` of covariances ``(..., k, k)``
    (NaN where a variance is not finite and positive)."""
    c = np.asarray(covariance, np.float64)
    d = np.sqrt(np.diagonal(c, axis1=-2, axis2=-1))
    ok = np.isfinite(d) & (d > 0)
    d = np.where(ok, d, np.nan)
    with np.errstate(invalid="ignore"):
        return c / (d[..., :, None] * d[..., None, :])


def per_fit(per_set: Any, fits: int, per_group: int) -> np.ndarray:
    """A value per data set as one per fit (fit ``i`` fitted data set ``i //
    per_group``); one value for every data set (0-d, or a single row) as a read-only
    view."""
    per_set = np.asarray(per_set)
    if per_set.size == 1:
        return np.broadcast_to(per_set.reshape(()), (fits,))
    return per_set[np.arange(fits) // per_group]


class DataSets(NamedTuple):
    """What a batch's statistics need of its data sets (one entry each, or one for a
    batch whose fits share one data set)."""

    points: np.ndarray
    """Real points (NaN and padding left out)."""
    total: np.ndarray
    """``Σ w (y − ȳ)²`` over the real points, ``w = 1/σ²`` (1 without σ), ȳ the
    w-weighted mean: the denominator of R² (float64)."""

    @classmethod
    def of(cls, y: Any, sigma: Any = None, mask: Any = None) -> DataSets:
        """From a batch's data (points on the last axis; data sets on the first, or none)."""
        y = np.atleast_2d(np.asarray(y, np.float64))
        real = np.ones(y.shape, bool) if mask is None else np.broadcast_to(np.asarray(mask, bool), y.shape)
        w = real.astype(np.float64)
        if sigma is not None:
            w = w / np.where(real, np.broadcast_to(np.asarray(sigma, np.float64), y.shape), 1) ** 2
        y = np.where(real, y, 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = np.sum(w * y, axis=-1, keepdims=True) / np.sum(w, axis=-1, keepdims=True)
        return cls(np.sum(real, axis=-1), np.sum(w * (y - mean) ** 2, axis=-1))


@dataclasses.dataclass
class BatchResult:
    """Per-fit arrays of a batch (index ``i`` is fit ``i``) plus run facts.

    Quantities that do not vary across fits are stored as read-only broadcast views,
    so they cost no memory.
    """

    params: dict[str, np.ndarray]
    """Final values of every parameter of the model, by name."""
    init: dict[str, np.ndarray]
    """Starting values of every parameter of the model, by name."""
    loss: np.ndarray
    steps: np.ndarray
    status: np.ndarray
    """``Status`` codes (int8)."""
    learning_rate: np.ndarray
    tolerance: np.ndarray
    max_steps: np.ndarray
    trainable: tuple[str, ...]
    devices: int = 1
    device_kind: str = ""
    block_size: int = 0
    compile_s: float = 0.0
    run_s: float = 0.0
    precision: str = "float32"
    group: np.ndarray | None = None
    """With grouped data: each fit's data-set label (None: every fit had the same data)."""
    stderr: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    """Standard error of each trainable parameter, per fit (inf where ``singular``)."""
    data: Any = None
    """The data the batch fitted (host arrays ``y``, ``sigma``, ``mask``: data sets on
    the first axis, or none; points on the last), for the statistics that follow from
    each fit's loss and its data set (``data_sets``)."""
    per_group: int = 1
    """Fits per data set: fit ``i`` fitted data set ``i // per_group``."""
    singular: np.ndarray | None = None
    """bool per fit: JᵀJ singular (or dof ≤ 0); its standard errors are infinite."""
    covariance: np.ndarray | None = None
    """``(fits, k, k)`` when ``report.covariance`` asked for it (else None)."""
    confidence: float = 0.95
    loss_kind: str = "ssr"
    """The loss minimised (``ssr``: least squares, ``loss`` is then χ²)."""
    at_bound: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    """bool per fit, for each bounded parameter: it ended on one of its bounds (its
    standard error, from the unconstrained curvature, then means little)."""

    def intervals(self, confidence: float | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per fit and trainable parameter: ``(low, high)`` of ``value ± t·stderr``, with
        Student's t at each fit's dof (default level: ``self.confidence``)."""
        t = two_sided(self.confidence if confidence is None else confidence, self.dof)
        t = np.where(self.dof > 0, t, np.inf)
        return {n: (self.params[n] - t * e, self.params[n] + t * e) for n, e in self.stderr.items()}

    @property
    def fits(self) -> int:
        return int(self.loss.shape[0])

    # The device gives each fit's loss, standard errors and flag; what follows from the
    # loss and its data set alone is derived here, on first use (a batch that writes
    # no report pays nothing for it)

    @functools.cached_property
    def data_sets(self) -> DataSets | None:
        """What the statistics need of each data set (None: run without statistics)."""
        if self.singular is None or self.data is None:
            return None
        return DataSets.of(self.data.y, self.data.sigma, self.data.mask)

    @property
    def chisqr(self) -> np.ndarray | None:
        """χ² per fit: the loss (for ``ssr`` the SSR of the weighted residuals ``(y -
        f)/σ``; for the other losses their value, which their statistics take for χ²)."""
        return None if self.singular is None else self.loss

    def _per_fit(self, per_set: np.ndarray) -> np.ndarray:
        return per_fit(per_set, self.fits, self.per_group)

    @functools.cached_property
    def dof(self) -> np.ndarray | None:
        """Degrees of freedom per fit: its data set's real points minus the trained
        parameters."""
        if self.data_sets is None:
            return None
        return self._per_fit((self.data_sets.points - len(self.trainable)).astype(np.int32))

    @functools.cached_property
    def rsquared(self) -> np.ndarray | None:
        """R² per fit: ``1 − χ² / Σ w (y − ȳ)²`` over its data set (ȳ the σ-weighted mean)."""
        if self.data_sets is None:
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            return (1 - self.loss / self._per_fit(self.data_sets.total)).astype(self.loss.dtype)

    @functools.cached_property
    def _information(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        if self.chisqr is None:
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            return information(self.chisqr, self.dof, len(self.trainable), np)

    @property
    def redchi(self) -> np.ndarray | None:
        """χ² / dof per fit (inf where dof ≤ 0)."""
        return None if self._information is None else self._information[0]

    @property
    def aic(self) -> np.ndarray | None:
        """Akaike's information criterion per fit: ``n·ln(χ²/n) + 2k``."""
        return None if self._information is None else self._information[1]

    @property
    def bic(self) -> np.ndarray | None:
        """The Bayesian information criterion per fit: ``n·ln(χ²/n) + k·ln(n)``."""
        return None if self._information is None else self._information[2]

    def status_counts(self) -> dict[str, int]:
        """Number of fits by status label (every status listed, zeros included)."""
        counts = np.bincount(self.status.astype(np.int64), minlength=len(Status))
        return {s.label: int(counts[s]) for s in Status if s not in (Status.RUNNING, Status.PADDING)}

    def best(self) -> int | None:
        """Index of the finite fit with the lowest loss (None if every fit diverged, or
        with grouped data: losses of different data sets do not rank fits; see
        ``group_best``)."""
        if self.group is not None:
            return None
        loss = np.where(np.isfinite(self.loss), self.loss, np.inf)
        return None if not np.isfinite(loss).any() else int(np.argmin(loss))

    def minima(self, decimals: int = 2) -> list[dict[str, Any]]:
        """Distinct end points of the converged fits, most-reached first.

        Fits whose trainable parameters agree after rounding to ``decimals`` places
        count as one minimum; each entry gives the mean parameters, the lowest loss and
        how many fits reached it.
        """
        done = np.flatnonzero(self.status == Status.CONVERGED)
        if done.size == 0 or self.group is not None:  # across data sets, end points do not compare
            return []
        values = np.stack([self.params[n][done] for n in self.trainable], axis=1).astype(np.float64)
        keys, inverse, counts = np.unique(
            np.round(values, decimals), axis=0, return_inverse=True, return_counts=True
        )
        inverse = inverse.ravel()
        loss = self.loss[done].astype(np.float64)
        sums = np.zeros_like(keys)
        np.add.at(sums, inverse, values)
        low = np.full(len(keys), np.inf)
        np.minimum.at(low, inverse, loss)
        order = np.lexsort((low, -counts))  # most-reached first, then lowest loss
        return [
            {
                "params": {n: float(sums[k, j] / counts[k]) for j, n in enumerate(self.trainable)},
                "loss": float(low[k]),
                "fits": int(counts[k]),
            }
            for k in order
        ]

    def fit_row(self, i: int) -> dict[str, Any]:
        """One fit as a dict."""
        group = {} if self.group is None else {"group": str(self.group[i])}
        return {
            "index": i,
            **group,
            "params": {n: float(v[i]) for n, v in self.params.items()},
            "init": {n: float(v[i]) for n, v in self.init.items()},
            "loss": float(self.loss[i]),
            "steps": int(self.steps[i]),
            "status": Status(int(self.status[i])).label,
            "learning_rate": float(self.learning_rate[i]),
            **self._stats_row(i),
        }

    def _stats_row(self, i: int) -> dict[str, Any]:
        if self.dof is None:  # run without statistics
            return {}
        return {
            "stderr": {n: float(v[i]) for n, v in self.stderr.items()},
            **{f: float(getattr(self, f)[i]) for f in ("chisqr", "redchi", "aic", "bic", "rsquared")},
            "dof": int(self.dof[i]),
            "singular": bool(self.singular[i]),
        }

    def group_best(self) -> list[int]:
        """With grouped data: the index of each data set's lowest-loss fit, in group order."""
        if self.group is None:
            return []
        labels, first, which = np.unique(self.group, return_index=True, return_inverse=True)
        loss = np.where(np.isfinite(self.loss), self.loss, np.inf).astype(np.float64)
        order = np.lexsort((loss, which.ravel()))  # by group, then loss
        starts = np.searchsorted(which.ravel()[order], np.arange(len(labels)))
        best = order[starts]
        return [int(i) for i in best[np.argsort(first)]]

    def summary(self, minima_limit: int = 20) -> dict[str, Any]:
        """JSON-ready summary: counts by status, best fit, distinct minima (or, with
        grouped data, the best fit of the first data sets), timing."""
        best = self.best()
        minima = self.minima()
        run_s = self.run_s
        grouped = {}
        if self.group is not None:
            per_group = self.group_best()
            grouped = {
                "groups": len(per_group),
                "per_group": [self.fit_row(i) for i in per_group[:minima_limit]],
            }
        return {
            "fits": self.fits,
            **grouped,
            "trainable": list(self.trainable),
            "status_counts": self.status_counts(),
            "best": None if best is None else self.fit_row(best),
            "minima": minima[:minima_limit],
            "minima_total": len(minima),
            "steps": {
                "mean": float(self.steps.mean()) if self.fits else 0.0,
                "max": int(self.steps.max()) if self.fits else 0,
                "total": int(self.steps.sum(dtype=np.int64)),
            },
            "devices": self.devices,
            "device_kind": self.device_kind,
            "block_size": self.block_size,
            "precision": self.precision,
            "compile_s": self.compile_s,
            "run_s": run_s,
            "fits_per_s": self.fits / run_s if run_s > 0 else None,
        }
