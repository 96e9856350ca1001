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

from jaxfit.run import caches

_CACHE: collections.OrderedDict[tuple, tuple[jax.stages.Compiled, float]] = collections.OrderedDict()
LIMIT = 64
"""Executables kept (least recently used first out): a loop of batches, the service
and a CLI run reuse them; ``jaxfit.clear_caches()`` releases them all."""

COMPILER_OPTIONS = {
    # The fit loops are short elementwise programs over a block of fits, bound by the
    # passes each iteration makes over the block: copy insertion that sees through the
    # loop's regions (fewer copies of the carry per iteration). Other backends ignore it.
    "xla_cpu_copy_insertion_use_region_analysis": True,
}
WIDE = {"xla_cpu_prefer_vector_width": 512}
"""Full-width vectors (AVX-512 where the CPU has it; XLA prefers 256 bits): ~15–20% less
time per fit-step on CPU (W1, W2 of ``python -m jaxfit bench``). Not for a program
that computes ``atan``: at this width XLA:CPU (jax 0.10) computes it wrongly inside
loops (NIST's Roszman1 and the arctan loss went to wrong answers;
``tests/test_bounds_losses.py`` catches it), so such programs compile without it."""


class Program:
    """``jax.jit(fn)`` compiled with jaxfit's options: ``WIDE`` unless the program
    computes ``atan`` (decided once per argument signature, from its StableHLO). Every
    program of one model is compiled alike, so a fit gives the same bits in whichever
    program it runs. Call it, or ``lower`` it, as a jitted function."""

    def __init__(self, fn: Callable[..., Any], **kwargs: Any):
        self._fn = fn
        self._plain = jax.jit(fn, **kwargs)
        self._wide = jax.jit(fn, compiler_options={**COMPILER_OPTIONS, **WIDE}, **kwargs)
        self._narrow = jax.jit(fn, compiler_options=COMPILER_OPTIONS, **kwargs)
        self._choice: dict[tuple, Any] = {}

    def _for(self, args: tuple) -> Any:
        key = signature(args)
        if key not in self._choice:
            uses_atan = _uses(jax.make_jaxpr(self._fn)(*args).jaxpr, "atan")
            self._choice[key] = self._narrow if uses_atan else self._wide
        return self._choice[key]

    def lower(self, *args: Any) -> Any:
        return self._for(args).lower(*args)

    def compile(self, *args: Any) -> jax.stages.Compiled:
        """Traced once (the choice of options reads the same trace that is lowered)."""
        traced = self._plain.trace(*args)
        wide = not _uses(traced.jaxpr.jaxpr, "atan")
        self._choice[signature(args)] = self._wide if wide else self._narrow
        options = {**COMPILER_OPTIONS, **WIDE} if wide else COMPILER_OPTIONS
        return traced.lower().compile(compiler_options=options)

    def __call__(self, *args: Any) -> Any:
        return self._for(args)(*args)


def _uses(jaxpr: Any, primitive: str) -> bool:
    """Whether ``jaxpr`` (nested ones included: loops, conditionals, maps) applies ``primitive``."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == primitive:
            return True
        for value in eqn.params.values():
            for inner in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(inner, "jaxpr", inner)  # a ClosedJaxpr's
                if hasattr(inner, "eqns") and _uses(inner, primitive):
                    return True
    return False


def jit(fn: Callable[..., Any], **kwargs: Any) -> Program:
    """``fn`` jitted as jaxfit compiles its programs (``Program``)."""
    return Program(fn, **kwargs)


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
    caches.enable_by_default()
    t0 = time.perf_counter()
    compiled = fn.compile(*args) if isinstance(fn, Program) else fn.lower(*args).compile()
    seconds = time.perf_counter() - t0
    _CACHE[full] = (compiled, seconds)
    while len(_CACHE) > LIMIT:
        _CACHE.popitem(last=False)
    return compiled, seconds
