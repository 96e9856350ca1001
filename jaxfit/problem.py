"""From a validated ``Config`` to what the engine takes: a static ``Spec`` and
arrays (NumPy, so building them compiles nothing). No pydantic past this point."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np

from jaxfit.config import BatchConfig, Config, Linspace, Normal, Uniform, Values
from jaxfit.core.engine import Problem, Spec
from jaxfit.core.model import Data, Params
from jaxfit.core.optim import Hyper, OptimizerKind
from jaxfit.core.stats import StatsSpec
from jaxfit.errors import ConfigError
from jaxfit.sweep import FIXED, HYPER_NAMES, LINSPACE, NORMAL, UNIFORM, VALUES, Plan, Tables


def spec_of(config: Config) -> Spec:
    """The static part of a config: trainable set, optimizer kind and model."""
    opt = config.train.optimizer
    return Spec(
        trainable=tuple(config.train.trainable),
        optimizer=OptimizerKind(opt.name, bool(vars(opt).get("nesterov", False))),
        model=config.core_model,
    )


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
    return x, y, config.data.sigma_of(len(y)), config.data.mask_of()


def stats_spec_of(config: Config, *, batch: bool) -> StatsSpec:
    """What the statistics pass computes: a single fit always keeps its covariance, a
    batch only when ``report.covariance`` asks."""
    return StatsSpec(config.train.absolute_sigma, covariance=not batch or config.report.covariance)


def stacked_inputs(configs: Sequence[Config]) -> tuple[Params, Problem]:
    """Initial trainable values and problems of ``configs`` (same trainable set and
    precision), each leaf stacked along a leading config axis: one NumPy array per
    leaf, however many configs (how the service batches its requests)."""
    for config in configs:
        _check_precision(config)
    dtype, spec = dtype_of(configs[0]), spec_of(configs[0])
    params = [c.params for c in configs]
    names = configs[0].names
    data = [_single_data(c) for c in configs]
    # one pytree for all: unweighted ones get sigma 1, unmasked ones every point
    weighted, masked = any(d[2] is not None for d in data), any(d[3] is not None for d in data)
    data = [
        (
            x,
            y,
            np.ones(len(y)) if s is None and weighted else s,
            np.ones(len(y), bool) if m is None and masked else m,
        )
        for x, y, s, m in data
    ]

    def column(values: list, kind: Any = dtype) -> np.ndarray:
        return np.array(values, kind)

    sigma = column([d[2] for d in data]) if weighted else None
    mask = np.array([d[3] for d in data], bool) if masked else None
    return (
        {n: column([p[n] for p in params]) for n in spec.trainable},
        Problem(
            data=Data(column([d[0] for d in data]), column([d[1] for d in data]), mask, sigma),
            frozen={n: column([p[n] for p in params]) for n in names if n not in spec.trainable},
            hyper=_stacked_hyper(configs),
        ),
    )


def _stacked_hyper(configs: Sequence[Config]) -> Hyper:
    dtype = dtype_of(configs[0])
    trains = [c.train for c in configs]
    opts = [vars(t.optimizer) for t in trains]  # each optimizer's own fields

    def column(values: list, kind: Any = dtype) -> np.ndarray:
        return np.array(values, kind)

    return Hyper(
        learning_rate=column([t.learning_rate for t in trains]),
        tolerance=column([t.tolerance for t in trains]),
        max_steps=column([t.max_steps for t in trains], np.int32),
        momentum=column([o.get("momentum", 0.0) for o in opts]),
        b1=column([o.get("b1", 0.9) for o in opts]),
        b2=column([o.get("b2", 0.999) for o in opts]),
        eps=column([o.get("eps", 1e-8) for o in opts]),
        damping=column([o.get("damping", 0.01) for o in opts]),
        ftol=column([t.ftol for t in trains]),
    )


def inputs(config: Config) -> tuple[Params, Problem]:
    """Initial trainable values and problem of one config (``stacked_inputs`` of one)."""
    return jax.tree.map(lambda a: a.reshape(a.shape[1:]), stacked_inputs([config]))


def hyper_of(config: Config) -> Hyper:
    """The config's hyperparameters as scalars of its dtype."""
    _check_precision(config)
    return jax.tree.map(lambda a: a.reshape(()), _stacked_hyper([config]))


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
    from jaxfit.datafile import padded_groups

    x, y, mask, sigma = padded_groups(config.data.table)
    if sigma is None and config.data.sigma is not None:  # one number for every point
        sigma = np.full(x.shape, config.data.sigma)
    sigma = None if sigma is None else sigma.astype(dtype)
    return Data(x.astype(dtype), y.astype(dtype), mask, sigma), np.int32(config.per_group)
