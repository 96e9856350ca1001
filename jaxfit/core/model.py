"""Models: the network family (the seed's network is one member) and a user's pure
JAX function. One contract for both: a model predicts one ``y`` per ``x``.

The network with ``H`` hidden nodes (StatQuest's numbering, generalised)::

    predicted(x) = sum_i w(H+i) * act(w_i * x + b_i) + b(H+1)       i = 1..H

For ``H = 2`` and softplus this is the seed's network, op for op::

    predicted(x) = w3 * softplus(w1*x + b1)     # "blue" curve (top node)
                 + w4 * softplus(w2*x + b2)     # "orange" curve (bottom node)
                 + b3                           # moves the "green squiggle"

A ``Function`` model is ``predict(x, p1, p2, ...)`` for one scalar ``x`` (scipy's
``curve_fit`` convention); it is vmapped over the data points.

Parameters are a pytree: a dict from name to a scalar array (or, under ``vmap``, one
value per fit). A model (``Network`` or ``Function``) is static: hashable, part of the
compile key. Every function here is pure and works under ``jit``, ``grad`` and ``vmap``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Union

import jax
import jax.numpy as jnp

from jaxfit.core.example import PARAM_NAMES, SEED_PARAMS, SEED_X, SEED_Y
from jaxfit.core.names import network_names

__all__ = [
    "PARAM_NAMES",
    "SEED_MODEL",
    "SEED_PARAMS",
    "SEED_X",
    "SEED_Y",
    "Data",
    "Function",
    "Model",
    "Network",
    "Params",
    "predict",
    "residuals",
    "ssr",
]

SMALL_DATA = 8
"""Data sets up to this size are summed term by term (see ``ssr``)."""

Params = dict[str, jax.Array]


class Data(NamedTuple):
    """Observations ``x`` and ``y``, both shape ``(n,)``; ``mask`` (bool, ``(n,)``)
    marks the real points of a padded data set (None: every point is real);
    ``sigma`` (``(n,)``, > 0) is each point's standard deviation: residuals are
    divided by it (None: unweighted, as if every sigma were 1)."""

    x: jax.Array
    y: jax.Array
    mask: jax.Array | None = None
    sigma: jax.Array | None = None


@jax.custom_jvp
def softplus(z: jax.Array) -> jax.Array:
    """``log(1 + e^z) = max(z, 0) + log1p(e^-|z|)``, stable for large ``|z|``."""
    return jnp.maximum(z, 0) + jnp.log1p(jnp.exp(-jnp.abs(z)))


@softplus.defjvp
def _softplus_jvp(primals: tuple[jax.Array], tangents: tuple[jax.Array]) -> tuple[jax.Array, jax.Array]:
    # the derivative is the sigmoid, from the same exp(-|z|): one exp per evaluation
    (z,), (dz,) = primals, tangents
    e = jnp.exp(-jnp.abs(z))
    sigmoid = jnp.where(z >= 0, 1.0, e) / (1.0 + e)
    return jnp.maximum(z, 0) + jnp.log1p(e), sigmoid * dz


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "softplus": softplus,
    "relu": jax.nn.relu,  # derivative 0 at 0 (JAX's convention)
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
}


class Network(NamedTuple):
    """One input, ``hidden`` nodes of ``activation``, one output (static)."""

    hidden: int = 2
    activation: str = "softplus"

    @property
    def names(self) -> tuple[str, ...]:
        return network_names(self.hidden)

    def node(self, params: Params, i: int, x: jax.Array) -> jax.Array:
        """Hidden node ``i``'s contribution (1-based): ``w(H+i) * act(w_i * x + b_i)``."""
        act = ACTIVATIONS[self.activation]
        return params[f"w{self.hidden + i}"] * act(params[f"w{i}"] * x + params[f"b{i}"])

    def __call__(self, params: Params, x: jax.Array) -> jax.Array:
        total = self.node(params, 1, x)
        for i in range(2, self.hidden + 1):
            total = total + self.node(params, i, x)
        return total + params[f"b{self.hidden + 1}"]


class Function(NamedTuple):
    """A user's ``predict(x, *params) -> y`` (static). Per point (``layout`` None): ``x``
    is one scalar, or with ``dims = d > 0`` one point's ``d`` coordinates (shape
    ``(d,)``: ``px, py = x``), and arrays of points have them on their last axis. For
    the whole data set (``layout`` a shape, scipy's convention): ``predict`` takes every
    point's ``x`` at once, shaped ``layout + (n,)``, and returns ``(n,)``; arrays of
    points then hold ``(n,)`` or ``(n, dims)`` with ``dims = prod(layout)``."""

    predict: Callable[..., jax.Array]
    names: tuple[str, ...]
    label: str = ""
    """Where it came from, e.g. ``"decay_model:predict"``."""
    dims: int = 0
    layout: tuple[int, ...] | None = None

    def __call__(self, params: Params, x: jax.Array) -> jax.Array:
        args, predict = [params[n] for n in self.names], self.predict
        if self.layout is not None:  # every point at once: x is (n,) or (n, dims)
            n = jnp.shape(x)[0]
            whole = jnp.reshape(jnp.moveaxis(x, -1, 0), (*self.layout, n)) if self.dims else x
            return jnp.broadcast_to(jnp.asarray(predict(whole, *args)), (n,))
        point = jnp.shape(x)[:-1] if self.dims else jnp.shape(x)
        if point == ():
            return jnp.asarray(predict(x, *args))
        flat = jnp.reshape(x, (-1, self.dims)) if self.dims else jnp.ravel(x)
        return jax.vmap(lambda xi: jnp.asarray(predict(xi, *args)))(flat).reshape(point)


def with_jacobian(predict: Callable[..., jax.Array], jacobian: Callable[..., jax.Array]) -> Callable:
    """``predict`` whose derivatives with respect to the parameters are the user's
    ``jacobian`` (``(n, k)``, scipy's ``jac``)."""

    @jax.custom_jvp
    def f(x: jax.Array, *p: jax.Array) -> jax.Array:
        return predict(x, *p)

    @f.defjvp
    def _(primals: tuple, tangents: tuple) -> tuple[jax.Array, jax.Array]:
        x, *p = primals
        J = jnp.asarray(jacobian(x, *p))
        y = jnp.asarray(predict(x, *p))
        dy = sum(J[..., j] * t for j, t in enumerate(tangents[1:]))
        return y, jnp.broadcast_to(dy, jnp.shape(y)).astype(y.dtype)

    return f


Model = Union[Network, Function]
SEED_MODEL = Network()
"""The seed's network: two softplus nodes."""


def blue(params: Params, x: jax.Array) -> jax.Array:
    """The seed's top node: ``w3 * softplus(w1*x + b1)``."""
    return SEED_MODEL.node(params, 1, x)


def orange(params: Params, x: jax.Array) -> jax.Array:
    """The seed's bottom node: ``w4 * softplus(w2*x + b2)``."""
    return SEED_MODEL.node(params, 2, x)


def predict(params: Params, x: jax.Array, model: Model = SEED_MODEL) -> jax.Array:
    """The model's prediction at ``x`` (any shape; the seed's green squiggle by default)."""
    return model(params, x)


def residuals(params: Params, data: Data, model: Model = SEED_MODEL) -> jax.Array:
    """``(y - predicted) / sigma`` at every point (``y - predicted`` without sigma),
    zero at padded ones. The points are the first axis (of ``y``, of the result): sums
    over them are ``sum_points``, so the same code serves one fit and (``core.lanes``) a
    block of fits on the trailing axis.

    Padded points (``mask`` False) are replaced by zeros (sigma by ones) before the
    model sees them and their residuals are zeroed, so no value there (NaN included)
    can reach the loss or its gradient.
    """
    x, y, mask, sigma = data
    if mask is not None:
        x, y = masked_x(x, mask, model), jnp.where(mask, y, 0)
        sigma = None if sigma is None else jnp.where(mask, sigma, 1)
    r = y - model(params, x)
    if sigma is not None:
        r = r / sigma
    return r if mask is None else jnp.where(mask, r, 0)


ROWS = 64
"""Data sets up to this many points are summed row by row: a chain of elementwise
adds, which XLA fuses and vectorises across the fits, on the vector lanes
(``core.lanes``, where a reduction over the major axis is not vectorised on CPU) and
under ``vmap`` (where a reduction over a few points on the minor axis is slow)."""


def sum_points(a: jax.Array) -> jax.Array:
    """The sum over the points (axis 0), in order, in ``a``'s dtype."""
    if a.shape[0] <= ROWS:
        out = a[0]
        for i in range(1, a.shape[0]):
            out = out + a[i]
        return out
    return jnp.sum(a, axis=0, dtype=a.dtype)


def masked_x(x: jax.Array, mask: jax.Array, model: Model) -> jax.Array:
    """``x`` with zeros at the padded points, where ``x`` is per point of ``mask``
    (``(n,)``, or ``(n, d)`` for a model of ``d`` coordinates; under ``core.lanes``
    ``(n, fits)`` or ``(n, fits, d)``); an ``x`` every fit shares is left as it is."""
    dims = 1 if getattr(model, "dims", 0) else 0
    if jnp.ndim(x) - dims != mask.ndim:
        return x
    return jnp.where(mask.reshape(mask.shape + (1,) * dims), x, 0)


def ssr(params: Params, data: Data, model: Model = SEED_MODEL) -> jax.Array:
    """Sum of squared (weighted) residuals ``sum_i ((y_i - predicted(x_i)) / sigma_i)^2``
    over the real points (``residuals``): the SSR, or χ² with sigma."""
    x, y, mask, sigma = data
    per_point = getattr(model, "layout", None) is None
    if mask is None and y.ndim == 1 and x.shape[0] <= SMALL_DATA and per_point:
        # One term per observation: under vmap every op then runs along the fits
        # axis, which XLA:CPU vectorises far better than many length-3 reductions.
        total = jnp.zeros((), y.dtype)
        for i in range(x.shape[0]):
            r = y[i] - model(params, x[i])
            if sigma is not None:
                r = r / sigma[i]
            total = total + r * r
        return total
    r = residuals(params, data, model)
    return sum_points(r * r)
