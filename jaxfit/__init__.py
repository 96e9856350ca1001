"""jaxfit: JIT-compiled gradient-descent fits of a tiny softplus network.

The public API (everything in ``__all__``) loads lazily, so ``import jaxfit`` is
cheap and the command line can configure JAX before JAX starts.

Example:
    >>> import jaxfit
    >>> result = jaxfit.fit("configs/b3.yaml")
    >>> result.status.label, result.steps, round(result.params["b3"], 3)
    ('converged', 10, 2.609)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "ConfigError": "jaxfit.config",
    "Config": "jaxfit.config",
    "load_config": "jaxfit.config",
    "Status": "jaxfit.status",
    "fit": "jaxfit.fitting",
    "make_step": "jaxfit.fitting",
    "make_state": "jaxfit.fitting",
    "make_problem": "jaxfit.fitting",
    "fit_batch": "jaxfit.runner",
    "FitResult": "jaxfit.results",
    "load_exported": "jaxfit.exported",
    "export_config": "jaxfit.exported",
    "BatchResult": "jaxfit.results",
    "FitState": "jaxfit.engine",
    "Problem": "jaxfit.engine",
    "Spec": "jaxfit.engine",
    "Hyper": "jaxfit.optim",
    "Data": "jaxfit.model",
    "predict": "jaxfit.model",
    "ssr": "jaxfit.model",
    "PARAM_NAMES": "jaxfit.seed",
    "SEED_PARAMS": "jaxfit.seed",
}

__all__ = [
    "BatchResult",
    "Config",
    "ConfigError",
    "Data",
    "FitResult",
    "FitState",
    "Hyper",
    "PARAM_NAMES",
    "Problem",
    "SEED_PARAMS",
    "Spec",
    "Status",
    "fit",
    "export_config",
    "fit_batch",
    "load_config",
    "load_exported",
    "make_problem",
    "make_state",
    "make_step",
    "predict",
    "ssr",
]

if TYPE_CHECKING:
    from jaxfit.config import Config, ConfigError, load_config
    from jaxfit.engine import FitState, Problem, Spec
    from jaxfit.exported import export_config, load_exported
    from jaxfit.fitting import fit, make_problem, make_state, make_step
    from jaxfit.model import Data, predict, ssr
    from jaxfit.optim import Hyper
    from jaxfit.results import BatchResult, FitResult
    from jaxfit.runner import fit_batch
    from jaxfit.seed import PARAM_NAMES, SEED_PARAMS
    from jaxfit.status import Status


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'jaxfit' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
