"""Run plans: a config (or a call with arrays) lowered once into plain, frozen values
(``jaxfit.plan.lowering`` builds them). Everything that runs fits or reports them takes a
plan, never a ``Config``.

    FitPlan     one traced fit (``jaxfit.fit``, the service, a batch's best fit again)
    BatchPlan   a batch (``jaxfit.fit_batch``, ``jaxfit.curve_fit``, the command line)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from jaxfit.core.engine import Problem, Spec
from jaxfit.core.model import Data, Params
from jaxfit.core.stats import StatsSpec
from jaxfit.output.results import FitFacts
from jaxfit.run.batching import Inputs, Program, varying_of, x_shared


class FitPlan(NamedTuple):
    """One fit, lowered: what its compiled program takes and what its result reports."""

    spec: Spec
    params: Params
    """Starting values of the trainable parameters (host scalars in the fit's dtype)."""
    problem: Problem
    """Data, frozen values and hyperparameters (host arrays in the fit's dtype)."""
    start: dict[str, float]
    """Every parameter's starting value, by name, in the model's order."""
    precision: str
    stats: StatsSpec = StatsSpec()
    confidence: float = 0.95
    dims: int = 0
    """Coordinates per data point (0: one scalar x)."""
    intervals: str = "linear"
    """``linear`` or ``profile`` (``report.intervals``)."""

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.precision)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.start)

    @property
    def facts(self) -> FitFacts:
        """What its result reports besides the compiled outputs."""
        bounds = ()
        if self.problem.bounds is not None:
            lower, upper = self.problem.bounds
            bounds = tuple((n, float(lower[n]), float(upper[n])) for n in lower)
        return FitFacts(self.spec.trainable, self.start, self.precision, self.confidence, bounds)


class BatchPlan(NamedTuple):
    """A batch lowered once, from a ``Config`` (``lowering.plan_batch``) or from arrays
    (``jaxfit.curve_fit``): everything running it and assembling its results needs."""

    program: Program
    """The static part: spec, sweep plan, statistics."""
    inputs: Inputs
    """The traced part, as host arrays in the fit's dtype."""
    fits: int
    names: tuple[str, ...]
    """The model's parameter names."""
    base: dict[str, float]
    """Every parameter's and per-fit hyperparameter's value where a batch does not vary it."""
    precision: str
    labels: np.ndarray | None = None
    """With several data sets: each one's label."""
    per_group: int = 1
    devices: int | None = None
    block_size: int | None = None
    covariance: bool = False
    """Keep each fit's covariance."""
    confidence: float = 0.95
    dims: int = 0

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.precision)

    @property
    def trainable(self) -> tuple[str, ...]:
        return self.program.spec.trainable

    def varying(self) -> tuple[str, ...]:
        """The quantities that differ between fits (``run.batching.varying_of``)."""
        return varying_of(self.program, self.inputs)


def fit_of(plan: BatchPlan, init: dict[str, np.ndarray], hyper: dict[str, np.ndarray], index: int) -> FitPlan:
    """Fit ``index`` of a batch as a single fit (to run it again with its trace):
    its starting values ``init`` and per-fit hyperparameters ``hyper`` (a result's
    columns), on its own data set with the padding left out."""
    data, bounds = plan.inputs.data, plan.inputs.bounds
    group = index // plan.per_group
    if bounds is not None and np.ndim(next(iter(bounds[0].values()))) > 0:  # per data set
        bounds = jax.tree.map(lambda a: a[group], bounds)
    if plan.inputs.per_group is not None:  # that fit's own data set, its real points
        x = data.x if x_shared(data, plan.program.spec.model) else data.x[group]
        data = jax.tree.map(lambda a: a[group], data._replace(x=None))._replace(x=x)
        if data.mask is not None:
            real = np.asarray(data.mask)
            data = Data(data.x[real], data.y[real], None, None if data.sigma is None else data.sigma[real])
    dtype, trainable = plan.dtype, plan.trainable
    start = {n: float(init[n][index]) for n in plan.names}
    common = plan.inputs.common._replace(**{k: np.asarray(v[index], v.dtype) for k, v in hyper.items()})
    frozen = {n: np.asarray(v, dtype) for n, v in start.items() if n not in trainable}
    return FitPlan(
        spec=plan.program.spec,
        params={n: np.asarray(start[n], dtype) for n in trainable},
        problem=Problem(data, frozen, common, bounds),
        start=start,
        precision=plan.precision,
        stats=StatsSpec(plan.program.stats.absolute_sigma if plan.program.stats else False),
        confidence=plan.confidence,
        dims=plan.dims,
    )
