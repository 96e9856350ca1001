"""Ahead-of-time compilation with its time measured: the one place that compiles.

``executable(fn, key, args)`` lowers and compiles ``fn`` for ``args`` once per
``key`` and argument shapes/dtypes, and remembers how long compiling took.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Any

import jax
import numpy as np

_CACHE: dict[tuple, tuple[jax.stages.Compiled, float]] = {}


def signature(args: tuple) -> tuple:
    """Shapes, dtypes and structure of ``args`` (what, with the key, forces a compile)."""
    leaves, tree = jax.tree.flatten(args)
    shapes = tuple((np.shape(a), str(getattr(a, "dtype", None) or np.asarray(a).dtype)) for a in leaves)
    return str(tree), shapes, bool(jax.config.jax_enable_x64)


def executable(fn: Callable[..., Any], key: Hashable, args: tuple) -> tuple[jax.stages.Compiled, float]:
    """``(compiled, seconds)`` for the jitted ``fn`` at ``args``; seconds is 0.0 when
    already compiled in this process (a persistent-cache hit shows as a short time)."""
    full = (key, signature(args))
    if full in _CACHE:
        return _CACHE[full][0], 0.0
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    seconds = time.perf_counter() - t0
    _CACHE[full] = (compiled, seconds)
    return compiled, seconds
