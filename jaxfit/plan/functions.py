"""A user's model function from an import path: ``"module:function"`` (the module
looked up next to the config file first, then on ``sys.path``) or
``"path/to/file.py:function"``.

A config that names a function is code: loading it imports and runs that module.
The function is ``predict(x, p1, p2, ...)`` for one scalar ``x``; its parameter names
(after ``x``) are the model's, and their defaults (if any) are starting values.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path
from typing import Any

PATTERN = re.compile(r"^(?P<module>[^:]+):(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")


def resolve(spec: str, base_dir: Path | None) -> str:
    """``spec`` with a module found next to the config as its absolute file path (so
    the resolved config names the same code from any working directory)."""
    m = PATTERN.match(spec)
    if m is None:
        raise ValueError(f"{spec!r} is not an import path; expected 'module:function' or 'file.py:function'")
    module = m["module"]
    if module.endswith(".py"):
        path = Path(module) if base_dir is None else base_dir / module
        return f"{path.resolve()}:{m['name']}"
    if base_dir is not None:
        beside = base_dir / (module.replace(".", "/") + ".py")
        if beside.is_file():
            return f"{beside.resolve()}:{m['name']}"
    return spec


def _module(module: str) -> Any:
    if not module.endswith(".py"):
        return importlib.import_module(module)
    path = Path(module)
    if not path.is_file():
        raise ModuleNotFoundError(f"no file {path}")
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    name = f"jaxfit_user_{path.stem}_{digest}"
    mtime = path.stat().st_mtime_ns
    cached = sys.modules.get(name)
    if cached is not None and getattr(cached, "__jaxfit_mtime__", None) == mtime:
        return cached
    spec = importlib.util.spec_from_file_location(name, path)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded
    try:
        spec.loader.exec_module(loaded)
    except BaseException:
        del sys.modules[name]
        raise
    loaded.__jaxfit_mtime__ = mtime
    return loaded


def load_callable(resolved: str) -> Any:
    """The callable at a resolved import path; ``ValueError`` (one line) if it cannot
    be imported or is not callable."""
    m = PATTERN.match(resolved)
    if m is None:
        raise ValueError(f"{resolved!r} is not an import path; expected 'module:function'")
    try:
        module = _module(m["module"])
    except ModuleNotFoundError as err:
        raise ValueError(f"cannot import {m['module']!r}: {err}") from None
    except Exception as err:  # the user's module failed while importing
        raise ValueError(f"importing {m['module']!r} failed: {type(err).__name__}: {err}") from None
    fn = getattr(module, m["name"], None)
    if fn is None:
        raise ValueError(f"module {m['module']!r} has no attribute {m['name']!r}")
    if not callable(fn):
        raise ValueError(f"{m['name']!r} in {m['module']!r} is not callable ({type(fn).__name__})")
    return fn


def load(resolved: str) -> tuple[Any, tuple[str, ...], dict[str, float]]:
    """``(function, parameter names, defaults)`` of a resolved import path;
    ``ValueError`` (one line) if it cannot be imported or is not a model function."""
    fn = load_callable(resolved)
    m = PATTERN.match(resolved)
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        raise ValueError(f"{m['name']!r}: cannot read its signature") from None
    params = list(signature.parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if not params or any(p.kind not in positional for p in params):
        raise ValueError(
            f"{m['name']!r}: expected predict(x, p1, p2, ...) with plain positional parameters, got {signature}"
        )
    names = tuple(p.name for p in params[1:])
    if not names:
        raise ValueError(f"{m['name']!r}: takes only x; a model needs parameters after x")
    defaults = {
        p.name: float(p.default)
        for p in params[1:]
        if isinstance(p.default, (int, float)) and not isinstance(p.default, bool)
    }
    return fn, names, defaults


def source_digest(resolved: str) -> str:
    """SHA-256 of the function's module source (part of the config's hash)."""
    m = PATTERN.match(resolved)
    module = m["module"] if m else resolved
    if module.endswith(".py"):
        path = Path(module)
    else:
        found = importlib.util.find_spec(module)
        path = Path(found.origin) if found and found.origin else None
    data = path.read_bytes() if path is not None and path.is_file() else module.encode()
    return hashlib.sha256(data).hexdigest()


def named_sources(data_file: str | None, function: str | None) -> dict[str, str]:
    """SHA-256 of what a resolved config names outside itself: its data file's bytes and
    its model function's module source (empty for the seed). An edit to either must
    invalidate a run directory's config hash and a saved warm-start executable."""
    out = {}
    if data_file is not None:
        out["data.file"] = hashlib.sha256(Path(data_file).read_bytes()).hexdigest()
    if function is not None:
        out["model.function"] = source_digest(function)
    return out


def _untraceable(label: str, err: Exception) -> ValueError:
    """One line saying why ``label`` could not be traced (the error's first line)."""
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ValueError(f"{label} cannot be traced by JAX ({type(err).__name__}: {reason[:200]})")


def guess_starts(
    guess: Any, x: Any, y: Any, mask: Any, trainable: tuple[str, ...], label: str, precision: str = "float32"
) -> dict[str, Any]:
    """Each data set's starting values from ``guess(x, y)`` (or ``guess(x, y, mask)``),
    vmapped over the data sets' padded rows on the device, in the fit's ``precision``:
    ``{name: (groups,)}``.
    Without a mask argument the padded points repeat the data set's last real point.
    ``ValueError`` (one line) when it fails, or returns other than a dict of scalars
    named after trained parameters."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    takes_mask = len(inspect.signature(guess).parameters) >= 3
    if not takes_mask:  # fill the padding with each data set's last real point
        last = np.maximum(mask.sum(axis=1) - 1, 0)
        index = np.where(mask, np.arange(mask.shape[1]), last[:, None])
        x = np.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)
        y = np.take_along_axis(y, index, axis=1)

    def one(*args: Any) -> Any:
        return guess(*args)

    args = (x, y, mask) if takes_mask else (x, y)
    try:
        shapes = jax.eval_shape(one, *(jax.ShapeDtypeStruct(a.shape[1:], a.dtype) for a in args))
    except Exception as err:
        raise _untraceable(label, err) from None
    if not isinstance(shapes, dict) or not shapes:
        raise ValueError(f"{label} must return a dict of starting values by parameter name")
    for name, value in shapes.items():
        if name not in trainable:
            raise ValueError(
                f"{label} returned {name!r}, which is not a trained parameter ({', '.join(trainable)})"
            )
        if getattr(value, "shape", None) != ():
            raise ValueError(
                f"{label} must return one number per parameter, got shape {list(value.shape)} for {name!r}"
            )
    with jax.enable_x64(precision == "float64"):
        out = jax.jit(jax.vmap(one))(*(jnp.asarray(a) for a in args))
    values = {n: np.asarray(v, np.float64) for n, v in out.items()}
    for name, v in values.items():
        if not np.isfinite(v).all():
            raise ValueError(
                f"{label} gave a non-finite {name!r} for data set {int(np.argmin(np.isfinite(v)))}"
            )
    return values


def check_traceable(fn: Any, names: tuple[str, ...], label: str, dims: int = 0) -> None:
    """Trace ``fn`` once at scalar inputs (``x`` of ``dims`` coordinates if ``dims``): it
    must return one scalar and be pure JAX."""
    import jax
    import jax.numpy as jnp

    x = jax.ShapeDtypeStruct((dims,), jnp.float32) if dims else 0.0
    try:
        out = jax.eval_shape(lambda x, *p: jnp.asarray(fn(x, *p)), x, *([0.0] * len(names)))
    except Exception as err:
        raise _untraceable(label, err) from None
    if out.shape != ():
        raise ValueError(f"{label} must return one scalar per x, got shape {list(out.shape)}")
