"""Ahead-of-time compilation with its time measured: the one place that compiles.

``executable(fn, key, args)`` lowers and compiles ``fn`` for ``args`` once per
``key`` and argument shapes/dtypes, and remembers how long compiling took.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Hashable
from typing import Any

import jax
import numpy as np

_CACHE: collections.OrderedDict[tuple, tuple[jax.stages.Compiled, float]] = collections.OrderedDict()
LIMIT = 64
"""Executables kept (least recently used first out): a loop of batches, the service
and a CLI run reuse them; ``jaxfit.clear_caches()`` releases them all."""

COMPILER_OPTIONS = {
    # The fit loops are short elementwise programs over a block of fits, bound by the
    # passes each iteration makes over the block: copy insertion that sees through the
    # loop's regions makes fewer copies of the carry per iteration. Other backends
    # ignore it. Not `xla_cpu_prefer_vector_width: 512`: with it, XLA:CPU (jax 0.10)
    # computes `atan` wrongly inside the fit loops (NIST's Roszman1 and the arctan
    # loss went to wrong answers; `tests/test_bounds_losses.py` would catch it).
    "xla_cpu_copy_insertion_use_region_analysis": True,
}


def jit(fn: Callable[..., Any], **kwargs: Any) -> Any:
    """``jax.jit`` with jaxfit's ``COMPILER_OPTIONS`` (every program jaxfit compiles
    is compiled alike, so a fit gives the same bits in whichever program it runs)."""
    return jax.jit(fn, compiler_options=COMPILER_OPTIONS, **kwargs)


def signature(args: tuple) -> tuple:
    """Shapes, dtypes and structure of ``args`` (what, with the key, forces a compile)."""
    leaves, tree = jax.tree.flatten(args)
    shapes = tuple((np.shape(a), np.dtype(getattr(a, "dtype", None) or np.asarray(a).dtype)) for a in leaves)
    return tree, shapes, bool(jax.config.jax_enable_x64)


def executable(fn: Callable[..., Any], key: Hashable, args: tuple) -> tuple[jax.stages.Compiled, float]:
    """``(compiled, seconds)`` for the jitted ``fn`` at ``args``; seconds is 0.0 when
    already compiled in this process (a persistent-cache hit shows as a short time)."""
    full = (key, signature(args))
    if full in _CACHE:
        _CACHE.move_to_end(full)
        return _CACHE[full][0], 0.0
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    seconds = time.perf_counter() - t0
    _CACHE[full] = (compiled, seconds)
    while len(_CACHE) > LIMIT:
        _CACHE.popitem(last=False)
    return compiled, seconds
