"""Serialised compiled fits (``jax.export``): run them elsewhere without re-tracing.

``export_config(config, path)`` writes one file (a zip) holding, for the config's
trainable set, optimizer and precision:

- ``init(params, problem) -> state``  the state before the first step;
- ``step(state, problem) -> state``   one gradient-descent step;
- ``fit_many(init, hyper, data) -> results`` a vmapped batch of whole fits, for any
  number of fits (a symbolic batch dimension);

each lowered for CPU and CUDA, plus the resolved config. ``load_exported(path)``
gives them back as an ``ExportedFit``; calling them runs the serialised StableHLO
and never traces the model.

Serialised functions take and return plain dicts of arrays (optimizer state as a
list of arrays), since only built-in containers survive serialisation.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxfit.core.engine import FitState, Problem, Spec, opt_state_tree, state_from_dict, state_to_dict
from jaxfit.core.engine import init_state as _init_state
from jaxfit.core.engine import run as _run
from jaxfit.core.engine import step as _step
from jaxfit.core.model import Data
from jaxfit.core.optim import Hyper
from jaxfit.errors import ExportError
from jaxfit.plan import lowering
from jaxfit.plan.plans import FitPlan
from jaxfit.run.aot import jit

PLATFORMS = ("cpu", "cuda")
FORMAT = 1


def _problem_dict(problem: Problem) -> dict[str, Any]:
    return {
        "data": {"x": problem.data.x, "y": problem.data.y},
        "frozen": dict(problem.frozen),
        "hyper": problem.hyper._asdict(),
    }


def _problem_from_dict(d: Mapping[str, Any]) -> Problem:
    return Problem(Data(d["data"]["x"], d["data"]["y"]), dict(d["frozen"]), Hyper(**d["hyper"]))


def _functions(spec: Spec, opt_tree: Any) -> dict[str, Any]:
    def init(params: dict, problem: dict) -> dict:
        return state_to_dict(_init_state(spec, params, _problem_from_dict(problem)))

    def step(state: dict, problem: dict) -> dict:
        return state_to_dict(_step(spec, state_from_dict(state, opt_tree), _problem_from_dict(problem)))

    def fit_many(params: dict, hyper: dict, data: dict) -> dict:
        def one(p: dict, h: dict) -> FitState:
            problem = Problem(
                Data(data["x"], data["y"]),
                {n: p[n] for n in spec.model.names if n not in spec.trainable},
                Hyper(**h),
            )
            return _run(spec, _init_state(spec, {n: p[n] for n in spec.trainable}, problem), problem)

        final = jax.vmap(one)(params, hyper)
        return {"params": final.params, "loss": final.loss, "steps": final.step, "status": final.status}

    return {"init": init, "step": step, "fit_many": fit_many}


def export_config(config: lowering.ConfigLike, path: Path) -> int:
    """Write the exported functions of ``config`` to ``path``; returns the file size."""
    config = lowering.load_config(config)
    plan = lowering.plan_fit(config)
    spec, dtype = plan.spec, plan.dtype
    with jax.enable_x64(plan.precision == "float64"):
        problem = _problem_dict(plan.problem)
        params = {n: jnp.zeros((), dtype) for n in spec.trainable}
        opt_tree = opt_state_tree(spec, dtype)
        fns = _functions(spec, opt_tree)
        state = jax.eval_shape(fns["init"], params, problem)
        (n,) = jax.export.symbolic_shape("n")

        def batch(x: Any) -> jax.ShapeDtypeStruct:
            return jax.ShapeDtypeStruct((n, *jnp.shape(x)), jnp.result_type(x))

        specs = {
            "init": (params, problem),
            "step": (state, problem),
            "fit_many": (
                {p: batch(jnp.zeros((), dtype)) for p in spec.model.names},
                jax.tree.map(batch, problem["hyper"]),
                problem["data"],
            ),
        }
        try:
            blobs = {
                name: jax.export.export(jax.jit(fn), platforms=PLATFORMS)(*specs[name]).serialize()
                for name, fn in fns.items()
            }
        except ImportError as err:  # jax.export serialises with flatbuffers
            raise ExportError(
                f"export needs the flatbuffers package: pip install flatbuffers ({err})"
            ) from None
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        manifest = {
            "format": FORMAT,
            "config": config.model_dump(mode="json"),
            "jax": jax.__version__,
            "platforms": list(PLATFORMS),
        }
        z.writestr("manifest.json", json.dumps(manifest, indent=2))
        for name, blob in blobs.items():
            z.writestr(f"{name}.bin", bytes(blob))
    from jaxfit.output.atomic import write_atomic

    write_atomic(Path(path), buf.getvalue())
    return len(buf.getvalue())


class ExportedFit:
    """Serialised fits loaded back: ``init``, ``step`` and ``fit_many`` run without tracing the model."""

    def __init__(self, plan: FitPlan, functions: dict[str, jax.export.Exported]):
        self.plan = plan
        self.spec = plan.spec
        # compiled as jaxfit compiles its own programs (``aot.jit``)
        self._fns = {name: jit(fn.call) for name, fn in functions.items()}
        self._opt_tree = opt_state_tree(self.spec, plan.dtype)

    def problem(self) -> Problem:
        """The config's data, frozen values and hyperparameters."""
        return self.plan.problem

    def init(self, problem: Problem, params: Mapping[str, Any] | None = None) -> FitState:
        """The state before the first step (default: the config's starting values)."""
        start, dtype = self.plan.start, self.plan.dtype
        params = {
            n: jnp.asarray(start[n] if params is None else params[n], dtype) for n in self.spec.trainable
        }
        return state_from_dict(self._fns["init"](params, _problem_dict(problem)), self._opt_tree)

    def step(self, state: FitState, problem: Problem) -> FitState:
        """One step, exactly as ``jaxfit.make_step(config)`` takes it."""
        return state_from_dict(
            self._fns["step"](state_to_dict(state), _problem_dict(problem)), self._opt_tree
        )

    def fit_many(self, init: Mapping[str, Any], learning_rate: Any = None) -> dict[str, np.ndarray]:
        """Whole fits from per-fit starting values ``init`` (name -> (n,) array; names
        left out take the config's value). Returns final trainable params, loss, steps, status."""
        dtype, start = self.plan.dtype, self.plan.start
        n = len(next(iter(init.values())))
        names = self.spec.model.names
        params = {p: jnp.broadcast_to(jnp.asarray(init.get(p, start[p]), dtype), (n,)) for p in names}
        given = self.plan.problem.hyper._asdict()  # a field left out (None) stays out
        hyper = {k: None if v is None else jnp.broadcast_to(v, (n,)) for k, v in given.items()}
        if learning_rate is not None:
            hyper["learning_rate"] = jnp.broadcast_to(jnp.asarray(learning_rate, dtype), (n,))
        data = _problem_dict(self.problem())["data"]
        return jax.device_get(self._fns["fit_many"](params, hyper, data))


def load_exported(path: str | Path) -> ExportedFit:
    """Load a file written by ``export_config`` / ``python -m jaxfit export``.

    For ``precision: float64`` exports, call it (and the functions) with 64-bit JAX
    enabled (``with jax.enable_x64(True):``).
    """
    try:
        with zipfile.ZipFile(path) as z:
            manifest = json.loads(z.read("manifest.json"))
            blobs = {name: z.read(f"{name}.bin") for name in ("init", "step", "fit_many")}
    except (OSError, KeyError, zipfile.BadZipFile, ValueError) as err:
        raise ExportError(f"{path}: not a jaxfit export ({err})") from None
    if manifest.get("format") != FORMAT:
        raise ExportError(
            f"{path}: export format {manifest.get('format')} is not supported (expected {FORMAT})"
        )
    plan = lowering.plan_fit(manifest["config"])
    return ExportedFit(plan, {k: jax.export.deserialize(bytearray(v)) for k, v in blobs.items()})
