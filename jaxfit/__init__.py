"""jaxfit: JIT-compiled batch fitting on JAX: gradient descent and Levenberg–Marquardt,
from the backpropagation seed to your own model and data, with error bars.

The public API (everything in ``__all__``) loads lazily, so ``import jaxfit`` is
cheap and the command line can configure JAX before JAX starts.

Every CPU core: the first use of the API that runs JAX, if JAX has not started yet,
gives JAX one
CPU device per core (XLA:CPU runs one block of fits per device at a time), so
``fit_batch`` uses the whole machine. To opt out, set ``JAX_NUM_CPU_DEVICES`` (e.g.
to 1), or ``JAXFIT_ALL_CORES=0``, or start JAX before using jaxfit: what JAX already
has is used as it is.

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
    "JaxfitError": "jaxfit.errors",
    "ConfigError": "jaxfit.errors",
    "RunDirError": "jaxfit.errors",
    "ExportError": "jaxfit.errors",
    "ResourceError": "jaxfit.errors",
    "ConfigLike": "jaxfit.config",
    "Config": "jaxfit.config",
    "load_config": "jaxfit.config",
    "Status": "jaxfit.core.status",
    "fit": "jaxfit.run.single",
    "make_step": "jaxfit.run.single",
    "make_state": "jaxfit.run.single",
    "make_problem": "jaxfit.run.single",
    "fit_batch": "jaxfit.run.batch",
    "curve_fit": "jaxfit.curvefit",
    "fit_global": "jaxfit.run.globalrun",
    "GlobalFit": "jaxfit.run.globalfit",
    "clear_caches": "jaxfit.run.caches",
    "CurveFit": "jaxfit.curvefit",
    "OptimizeWarning": "jaxfit.curvefit",
    "FitResult": "jaxfit.output.results",
    "load_exported": "jaxfit.run.export",
    "export_config": "jaxfit.run.export",
    "BatchResult": "jaxfit.output.results",
    "FitState": "jaxfit.core.engine",
    "Problem": "jaxfit.core.engine",
    "Spec": "jaxfit.core.engine",
    "Hyper": "jaxfit.core.optim",
    "Data": "jaxfit.core.model",
    "predict": "jaxfit.core.model",
    "ssr": "jaxfit.core.model",
    "PARAM_NAMES": "jaxfit.core.example",
    "SEED_PARAMS": "jaxfit.core.example",
}

__all__ = [
    "BatchResult",
    "Config",
    "CurveFit",
    "ConfigError",
    "ConfigLike",
    "ExportError",
    "JaxfitError",
    "OptimizeWarning",
    "ResourceError",
    "RunDirError",
    "Data",
    "FitResult",
    "FitState",
    "GlobalFit",
    "Hyper",
    "PARAM_NAMES",
    "Problem",
    "SEED_PARAMS",
    "Spec",
    "Status",
    "clear_caches",
    "curve_fit",
    "fit",
    "export_config",
    "fit_batch",
    "fit_global",
    "load_config",
    "load_exported",
    "make_problem",
    "make_state",
    "make_step",
    "predict",
    "ssr",
]

if TYPE_CHECKING:
    from jaxfit.config import Config, ConfigLike, load_config
    from jaxfit.core.engine import FitState, Problem, Spec
    from jaxfit.core.example import PARAM_NAMES, SEED_PARAMS
    from jaxfit.core.model import Data, predict, ssr
    from jaxfit.core.optim import Hyper
    from jaxfit.core.status import Status
    from jaxfit.curvefit import CurveFit, OptimizeWarning, curve_fit
    from jaxfit.errors import ConfigError, ExportError, JaxfitError, ResourceError, RunDirError
    from jaxfit.output.results import BatchResult, FitResult
    from jaxfit.run.batch import fit_batch
    from jaxfit.run.caches import clear_caches
    from jaxfit.run.export import export_config, load_exported
    from jaxfit.run.globalfit import GlobalFit
    from jaxfit.run.globalrun import fit_global
    from jaxfit.run.single import fit, make_problem, make_state, make_step


def use_every_core() -> bool:
    """Give JAX one CPU device per core if JAX has not started and nobody chose
    otherwise; True if it did."""
    import os

    if os.environ.get("JAX_NUM_CPU_DEVICES") or os.environ.get("JAXFIT_ALL_CORES", "1").lower() in (
        "0",
        "off",
        "false",
        "no",
    ):
        return False
    import jax

    try:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        jax.config.update("jax_num_cpu_devices", cores or 1)
    except RuntimeError:  # JAX has started: use what it has
        return False
    return True


_configured = False
_WITHOUT_JAX = {"JaxfitError", "ConfigError", "RunDirError", "ExportError", "ResourceError", "Status"}
_WITHOUT_JAX |= {"Config", "ConfigLike", "load_config", "PARAM_NAMES", "SEED_PARAMS", "clear_caches"}
"""Names whose modules import no JAX: touching them configures nothing."""


def __getattr__(name: str) -> Any:
    global _configured
    if name not in _EXPORTS:
        raise AttributeError(f"module 'jaxfit' has no attribute {name!r}")
    if not _configured and name not in _WITHOUT_JAX:
        _configured = True
        use_every_core()
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
