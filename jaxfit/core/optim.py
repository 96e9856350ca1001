"""Optimizers by name, built from traced hyperparameters.

What forces a compile is the *kind* of optimizer (``OptimizerKind``); its numeric
hyperparameters are traced arrays (``Hyper``), so they may differ per fit under
``vmap`` and changing them never recompiles.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import optax

from jaxfit.core.example import OPTIMIZERS


class OptimizerKind(NamedTuple):
    """Static (compile-time) choice of optimizer."""

    name: str = "sgd"
    nesterov: bool = False


class Hyper(NamedTuple):
    """Traced hyperparameters of one fit (scalars, or one value per fit under vmap).

    ``momentum`` is used by ``momentum``; ``b1``, ``b2``, ``eps`` by ``adam``;
    ``damping`` by ``lm`` (which has no learning rate).
    """

    learning_rate: jax.Array
    tolerance: jax.Array
    max_steps: jax.Array
    momentum: jax.Array
    b1: jax.Array
    b2: jax.Array
    eps: jax.Array
    damping: jax.Array
    """Levenberg–Marquardt's starting damping (``lm``)."""
    ftol: jax.Array | None = None
    """``lm``: also converged when an accepted step changes the loss by less than
    ``max(ftol, ftol·loss)`` (Gpufit's rule, MINPACK's ``ftol``); 0 or None: off."""
    xtol: jax.Array | None = None
    """``lm``: also converged when an accepted step is small relative to the
    parameters, ``‖δ‖ < xtol·(xtol + ‖p‖)`` (scipy's and MINPACK's ``xtol``); 0 or None: off."""
    gtol: jax.Array | None = None
    """``lm``: converged, without stepping, where the largest cosine between the
    residuals and a column of the Jacobian is at most ``gtol`` (MINPACK's ``gtol``)."""
    f_scale: jax.Array | None = None
    """The robust losses' soft margin between inliers and outliers (``core.losses``)."""


def make_optimizer(kind: OptimizerKind, hyper: Hyper) -> optax.GradientTransformation:
    """The optax transformation for ``kind`` with ``hyper``'s (traced) values."""
    if kind.name == "sgd":
        return optax.sgd(hyper.learning_rate)
    if kind.name == "momentum":
        return optax.sgd(hyper.learning_rate, momentum=hyper.momentum, nesterov=kind.nesterov)
    if kind.name == "adam":
        return optax.adam(hyper.learning_rate, b1=hyper.b1, b2=hyper.b2, eps=hyper.eps)
    raise ValueError(f"unknown optimizer {kind.name!r}; allowed: {', '.join(OPTIMIZERS)}")
