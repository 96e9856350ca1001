"""From a validated ``Config`` to what the engine takes: a static ``Spec`` and
arrays (NumPy, so building them compiles nothing). No pydantic past this point."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax
import numpy as np

from jaxfit.config import Config, ConfigError
from jaxfit.engine import Problem, Spec
from jaxfit.model import PARAM_NAMES, Data, Params
from jaxfit.optim import Hyper, OptimizerKind


def spec_of(config: Config) -> Spec:
    """The static part of a config: trainable set and optimizer kind."""
    opt = config.train.optimizer
    return Spec(
        trainable=tuple(config.train.trainable),
        optimizer=OptimizerKind(opt.name, bool(getattr(opt, "nesterov", False))),
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


def hyper_of(config: Config) -> Hyper:
    """The config's hyperparameters as scalars of its dtype."""
    _check_precision(config)
    dtype = dtype_of(config)
    train, opt = config.train, config.train.optimizer

    def scalar(v: float) -> np.ndarray:
        return np.asarray(v, dtype)

    return Hyper(
        learning_rate=scalar(train.learning_rate),
        tolerance=scalar(train.tolerance),
        max_steps=np.asarray(train.max_steps, np.int32),
        momentum=scalar(getattr(opt, "momentum", 0.0)),
        b1=scalar(getattr(opt, "b1", 0.9)),
        b2=scalar(getattr(opt, "b2", 0.999)),
        eps=scalar(getattr(opt, "eps", 1e-8)),
    )


def make_problem(config: Config) -> Problem:
    """Data, frozen parameter values and hyperparameters of a config, as arrays.

    For ``precision: float64``, call it with 64-bit JAX enabled (``precision(config)``).
    """
    _check_precision(config)
    dtype = dtype_of(config)
    spec = spec_of(config)
    values = config.params.model_dump()
    return Problem(
        data=Data(np.asarray(config.data.x, dtype), np.asarray(config.data.y, dtype)),
        frozen={n: np.asarray(values[n], dtype) for n in PARAM_NAMES if n not in spec.trainable},
        hyper=hyper_of(config),
    )


def initial_params(config: Config) -> Params:
    """Starting values of the trainable parameters, by name."""
    _check_precision(config)
    values = config.params.model_dump()
    return {n: np.asarray(values[n], dtype_of(config)) for n in config.train.trainable}
