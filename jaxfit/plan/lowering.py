"""The lowering: a validated ``Config`` turned, once, into a plan (``jaxfit.plan.plans``):
a static ``Spec`` and arrays (NumPy, so building them compiles nothing). The front
doors (``fit``, ``fit_batch``, ``make_step``, export, the service's requests, the
command line) call it; nothing past it sees a ``Config`` or pydantic."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np

from jaxfit.config import (
    LM,
    Adam,
    BatchConfig,
    Config,
    ConfigLike,
    Linspace,
    Momentum,
    Normal,
    Uniform,
    Values,
    dump_yaml,
    load_config,
)
from jaxfit.core.engine import Problem, Spec
from jaxfit.core.model import Data, Params
from jaxfit.core.optim import Hyper, OptimizerKind
from jaxfit.core.stats import StatsSpec
from jaxfit.errors import ConfigError
from jaxfit.plan.plans import BatchPlan, FitPlan
from jaxfit.plan.sweep import FIXED, HYPER_NAMES, LINSPACE, NORMAL, UNIFORM, VALUES, Plan, Tables, tables_as
from jaxfit.run.batching import Inputs, Program

__all__ = ["ConfigLike", "config_hash", "dump_yaml", "load_config", "plan_batch", "plan_fit", "stacked"]


def spec_of(config: Config) -> Spec:
    """The static part of a config: trainable set, optimizer kind and model."""
    opt = config.train.optimizer
    return Spec(
        trainable=tuple(config.train.trainable),
        optimizer=OptimizerKind(opt.name, bool(vars(opt).get("nesterov", False))),
        model=config.core_model,
        loss=config.train.loss,
        bounded=tuple(n for n in config.train.trainable if n in config.bounds_by_set()),
    )


def bounds_of(config: Config) -> tuple[Params, Params] | None:
    """``(lower, upper)`` of the bounded parameters in the config's dtype (±inf for
    none): scalars, or ``(groups,)`` arrays for all when the starts table gives some
    per data set; None when no parameter is bounded."""
    given = config.bounds_by_set()
    if not given:
        return None
    dtype = dtype_of(config)
    shape = (config.data.groups,) if any(np.ndim(b) for pair in given.values() for b in pair) else ()
    lower = {n: np.broadcast_to(np.asarray(lo, dtype), shape).copy() for n, (lo, _) in given.items()}
    upper = {n: np.broadcast_to(np.asarray(hi, dtype), shape).copy() for n, (_, hi) in given.items()}
    return lower, upper


def dtype_of(config: Config) -> np.dtype:
    """The float dtype the fit runs in."""
    return np.dtype(config.precision)


@contextlib.contextmanager
def precision(config: Config) -> Iterator[None]:
    """Run the enclosed JAX code in the config's precision (enables x64 for float64)."""
    with jax.enable_x64(config.precision == "float64"):
        yield


def _check_precision(config: Config) -> None:
    if config.precision == "float64" and not jax.config.jax_enable_x64:
        raise ConfigError(
            "precision: float64 needs 64-bit JAX: run inside `with jax.enable_x64(True):` "
            "or set JAX_ENABLE_X64=1"
        )


def _single_data(config: Config) -> tuple[Any, Any, Any, Any]:
    if config.data.grouped:
        raise ConfigError(
            f"data.group: the data holds {config.data.groups:,} data sets, one fit each: "
            "run it as a batch (jaxfit.fit_batch, or the command line)"
        )
    x, y = config.data.arrays()
    mask = config.data.mask_of()
    return x, y, config.data.sigma_of(len(y)), None if mask is None else np.asarray(mask, bool)


def stats_spec_of(config: Config, *, batch: bool) -> StatsSpec:
    """What the statistics pass computes: a single fit always keeps its covariance, a
    batch only when ``report.covariance`` asks."""
    return StatsSpec(config.train.absolute_sigma, covariance=not batch or config.report.covariance)


def _not_global(config: Config) -> Config:
    """A config with ``shared:`` is one problem over its data sets, not fits of its own:
    refused here (one line) so that no front door fits it as independent fits."""
    if config.shared:
        raise ConfigError(
            "shared: a global fit is one problem over every data set, not a batch of fits; "
            "run it with jaxfit.fit_global(config) or python -m jaxfit --config FILE"
        )
    return config


def plan_fit(config: ConfigLike) -> FitPlan:
    """Lower one fit (a config, a path or a dict) into a ``FitPlan``."""
    config = _not_global(load_config(config))
    with precision(config):
        params, problem = inputs(config)
    return FitPlan(
        spec=spec_of(config),
        params=params,
        problem=problem,
        start=dict(config.params),
        precision=config.precision,
        stats=stats_spec_of(config, batch=False),
        confidence=config.report.confidence,
        dims=config.data.dims,
        intervals=config.report.intervals,
    )


def plan_batch(config: ConfigLike, *, statistics: bool = True) -> BatchPlan:
    """Lower a config's batch (one fit if it has none) into a ``BatchPlan``."""
    config = _not_global(load_config(config))
    plan, tables = plan_of(config)
    dtype = dtype_of(config)
    data, per_group = batch_data(config)
    with precision(config):
        hyper = hyper_of(config)
    given = config.start_values
    starts = None if given is None else {n: np.asarray(v, dtype) for n, v in given.items()}
    statistics = statistics and config.report.statistics
    stats = stats_spec_of(config, batch=True) if statistics else None
    return BatchPlan(
        program=Program(spec_of(config), plan, stats),
        inputs=Inputs(tables_as(tables, dtype), hyper, data, per_group, starts, bounds_of(config)),
        fits=config.fits,
        names=config.names,
        base={**config.params, **config.train.model_dump(include=set(HYPER_NAMES))},
        precision=config.precision,
        labels=np.asarray(config.data.table.labels) if config.data.grouped else None,
        per_group=config.per_group,
        devices=config.devices,
        block_size=config.block_size,
        covariance=bool(statistics and config.report.covariance),
        confidence=config.report.confidence,
        dims=config.data.dims,
    )


RESULTS_AFFECTING = {"devices", "block_size"}
"""Config fields that never change results (excluded from the config hash)."""


def config_hash(config: Config) -> str:
    """SHA-256 of the resolved config, less the fields that cannot change results, and
    of what it names: the data file's bytes and the model function's module source."""
    import hashlib
    import json

    from jaxfit.plan.functions import named_sources

    h = hashlib.sha256(
        json.dumps(config.model_dump(mode="json", exclude=RESULTS_AFFECTING), sort_keys=True).encode()
    )
    sources = named_sources(config.data.file, config.model.function)
    if sources:  # the seed's hash is the config's alone
        h.update(json.dumps(sources, sort_keys=True).encode())
    return h.hexdigest()


def stacked(plans: Sequence[FitPlan]) -> tuple[Params, Problem]:
    """Initial trainable values and problems of fit plans (same spec and precision),
    each leaf stacked along a leading axis: one NumPy array per leaf, however many
    plans (how the service batches its requests). Unweighted data get sigma 1 and
    unmasked data every point where others have them."""
    weighted = any(p.problem.data.sigma is not None for p in plans)
    masked = any(p.problem.data.mask is not None for p in plans)

    def filled(plan: FitPlan) -> tuple[Params, Problem]:
        data = plan.problem.data
        n, dtype = len(data.y), plan.dtype
        if weighted and data.sigma is None:
            data = data._replace(sigma=np.ones(n, dtype))
        if masked and data.mask is None:
            data = data._replace(mask=np.ones(n, bool))
        return plan.params, plan.problem._replace(data=data)

    return jax.tree.map(lambda *leaves: np.stack(leaves), *(filled(p) for p in plans))


OPTIMIZER_DEFAULTS = {
    name: field.default
    for schema in (Momentum, Adam, LM)
    for name, field in schema.model_fields.items()
    if name in Hyper._fields
}
"""Each optimizer field's default, from the schema (an optimizer ignores the others' fields)."""


def hyper_of(config: Config) -> Hyper:
    """The config's hyperparameters as scalars of its dtype."""
    _check_precision(config)
    dtype, train = dtype_of(config), config.train
    given = vars(train.optimizer)  # the optimizer's own fields

    def scalar(value: float, kind: Any = dtype) -> np.ndarray:
        return np.asarray(value, kind)

    return Hyper(
        learning_rate=scalar(train.learning_rate),
        tolerance=scalar(train.tolerance),
        max_steps=scalar(train.max_steps, np.int32),
        **{f: scalar(given.get(f, default)) for f, default in OPTIMIZER_DEFAULTS.items()},
        ftol=scalar(train.ftol),
        f_scale=scalar(train.f_scale),
        # off: left out of the program (None), as a Hyper without them
        xtol=scalar(train.xtol) if train.xtol else None,
        gtol=scalar(train.gtol) if train.gtol else None,
    )


def inputs(config: Config) -> tuple[Params, Problem]:
    """Initial trainable values and problem of one config (host arrays in its dtype)."""
    hyper = hyper_of(config)  # checks the precision
    dtype, trainable = dtype_of(config), spec_of(config).trainable
    x, y, sigma, mask = _single_data(config)
    data = Data(
        np.asarray(x, dtype),
        np.asarray(y, dtype),
        None if mask is None else np.asarray(mask, bool),
        None if sigma is None else np.asarray(sigma, dtype),
    )
    values = {n: np.asarray(v, dtype) for n, v in config.params.items()}
    frozen = {n: v for n, v in values.items() if n not in trainable}
    return {n: values[n] for n in trainable}, Problem(data, frozen, hyper, bounds_of(config))


def problem_of(config: Config) -> Problem:
    """Data, frozen parameter values and hyperparameters of a config, as arrays.

    For ``precision: float64``, call it with 64-bit JAX enabled (``precision(config)``).
    """
    return inputs(config)[1]


def initial_params(config: Config) -> Params:
    """Starting values of the trainable parameters, by name."""
    return inputs(config)[0]


def _kind(spec: object) -> str:
    for kind, cls in ((LINSPACE, Linspace), (VALUES, Values), (NORMAL, Normal), (UNIFORM, Uniform)):
        if isinstance(spec, cls):
            return kind
    return FIXED


def plan_of(config: Config) -> tuple[Plan, Tables]:
    """The plan and tables of a config's batch (a batch of one if it has none)."""
    batch = config.batch or BatchConfig()
    base = {**config.params, **config.train.model_dump(include=set(HYPER_NAMES))}
    kinds, coef, tables_values, sizes = [], [], [], []
    names = config.names
    quantities = names + HYPER_NAMES
    for q in quantities:
        spec = batch.init.get(q) if q in names else getattr(batch, q)
        if isinstance(spec, list):
            spec = Values(values=[float(v) for v in spec])
        kind = _kind(spec)
        kinds.append(kind)
        row, values, size = [base[q], 0.0, 0.0], [], 1
        if kind == LINSPACE:
            row, size = list(spec.linspace), spec.linspace[2]
        elif kind == VALUES:
            values, size = spec.values, len(spec.values)
        elif kind == NORMAL:
            row = [spec.normal.mean, spec.normal.std, 0.0]
        elif kind == UNIFORM:
            row = [spec.uniform.low, spec.uniform.high, 0.0]
        coef.append(row)
        tables_values.append(values)
        sizes.append(size)
    capacity = 8
    while capacity < max(len(v) for v in tables_values):
        capacity *= 2
    padded = np.zeros((len(quantities), capacity), np.float64)
    for i, v in enumerate(tables_values):
        padded[i, : len(v)] = v
    strides = np.ones(len(quantities), np.int64)
    for i in range(len(quantities) - 2, -1, -1):
        strides[i] = strides[i + 1] * sizes[i + 1]
    tables = Tables(
        coef=np.asarray(coef, np.float64),
        values=padded,
        size=np.asarray(sizes, np.int32),
        stride=strides.clip(max=2**31 - 1).astype(np.int32),
        count=np.asarray(batch.count, np.int32),
        seed=np.asarray(batch.seed, np.uint32),
    )
    return Plan(tuple(kinds), capacity, names, counted=batch.count > 1), tables


def batch_data(config: Config) -> tuple[Data, np.ndarray | None]:
    """A batch's data in the config's dtype, and the fits per data set: one data set
    for every fit (None), or one per group, padded to a shared length with a mask."""
    dtype = dtype_of(config)
    if not config.data.grouped:
        x, y, sigma, mask = _single_data(config)
        sigma = None if sigma is None else np.asarray(sigma, dtype)
        return Data(np.asarray(x, dtype), np.asarray(y, dtype), mask, sigma), None
    x, y, mask, sigma = config.data.padded()
    if sigma is None and config.data.sigma is not None:  # one number for every point
        sigma = np.full(x.shape, config.data.sigma)
    sigma = None if sigma is None else sigma.astype(dtype)
    return Data(x.astype(dtype), y.astype(dtype), mask, sigma), np.int32(config.per_group)
