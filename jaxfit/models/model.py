"""Models built from the library: a line shape with a ``prefix`` (``Shape``), sums,
differences, products and quotients of them (``Composite``), each parameter's hints
(bounds, start, ``vary``, a tie ``expr``) — and the ``Plan`` that turns a model into
what the fitter trains: a function of the free parameters only, the tied and fixed
ones computed inside it (so they are never trained, and their errors follow from the
covariance of the free ones).

A model is an immutable value: equal models are equal (and hash alike), so a fit
compiles once per model however often it is rebuilt.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import operator
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxfit.models.expr import Expression, evaluation_order
from jaxfit.models.library import ALIASES, BUILTINS, OPTIONS, Builtin, Hint

BACKGROUNDS = frozenset({"constant", "linear", "parabolic", "polynomial", "exponential", "powerlaw"})
"""Shapes guessed last in a sum, from what the peaks leave."""
_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
MAX_DEGREE = 7


def _hint(value: Any) -> Hint:
    """A hint from a number (the start), a dict of ``Hint`` fields, or a ``Hint``."""
    if isinstance(value, Hint):
        return value
    if isinstance(value, Mapping):
        unknown = set(value) - set(Hint._fields)
        if unknown:
            raise ValueError(f"unknown hint field {sorted(unknown)[0]!r}; allowed: {', '.join(Hint._fields)}")
        return Hint(**value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Hint(value=float(value))
    raise ValueError(
        f"a parameter hint is a number (its start) or a dict of {', '.join(Hint._fields)}; got {value!r}"
    )


class Model:
    """What every model offers (``Shape`` and ``Composite`` implement it)."""

    overrides: tuple[tuple[str, Hint], ...]
    dims: int

    # --- structure ------------------------------------------------------------
    def shapes(self) -> tuple[Shape, ...]:
        raise NotImplementedError

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(n for s in self.shapes() for n in s.own_names)

    @property
    def hints(self) -> dict[str, Hint]:
        """Each parameter's hint: the library's, then the user's changes over it."""
        out = {n: Hint() for n in self.param_names}
        for s in self.shapes():
            out.update({s.prefix + k: h for k, h in s.builtin.hints.items()})
        for name, change in self.overrides:
            out[name] = change
        return out

    def derived(self) -> dict[str, Callable[[Mapping[str, Any]], Any]]:
        """Derived quantities (``p1_fwhm``, ``ec50`` …) as functions of all parameters."""
        out = {}
        for s in self.shapes():
            for k, fn in s.builtin.derived.items():
                out[s.prefix + k] = functools.partial(_on_own, fn, s)
        return out

    def defaults(self) -> dict[str, float]:
        return {s.prefix + k: v for s in self.shapes() for k, v in s.defaults().items()}

    # --- building -------------------------------------------------------------
    def with_params(self, **changes: Any) -> Model:
        """This model with parameter hints changed: ``p2_sigma={"expr": "p1_sigma"}``,
        ``bg_slope={"value": 0, "vary": False}``, ``p1_center={"min": 0, "max": 10}``, or
        a number (the start)."""
        known = self.param_names
        new = dict(self.overrides)
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"params: no parameter {name!r}; the model has {', '.join(known)}")
            new[name] = _hint(value)
        out = dataclasses.replace(self, overrides=tuple(new.items()))
        plan(out)  # ties checked now (unknown names, cycles), not at the fit
        return out

    def _combine(self, other: Model, op: str) -> Composite:
        if not isinstance(other, Model):
            return NotImplemented
        clash = set(self.param_names) & set(other.param_names)
        if clash:
            raise ValueError(
                f"{self.label} {op} {other.label}: both have {', '.join(sorted(clash))}; give each part a prefix"
            )
        if self.dims != other.dims:
            raise ValueError(f"{self.label} {op} {other.label}: a 1-D and a 2-D model cannot be combined")
        return Composite(self, other, op, self.overrides + other.overrides)

    def __add__(self, other: Model) -> Composite:
        return self._combine(other, "+")

    def __sub__(self, other: Model) -> Composite:
        return self._combine(other, "-")

    def __mul__(self, other: Model) -> Composite:
        return self._combine(other, "*")

    def __truediv__(self, other: Model) -> Composite:
        return self._combine(other, "/")

    # --- evaluating -----------------------------------------------------------
    @property
    def label(self) -> str:
        raise NotImplementedError

    def evaluate(self, x: Any, values: Mapping[str, Any]) -> Any:
        """The model at ``x`` for every parameter's value (tied ones included)."""
        raise NotImplementedError

    def eval(self, x: Any, params: Mapping[str, Any] | None = None, **values: Any) -> jax.Array:
        """The model at ``x`` (``(n,)``, or ``(2, n)`` for 2-D) for the free parameters'
        values (tied and fixed ones follow)."""
        return plan(self).expand_and(x, {**(params or {}), **values}, self.evaluate)

    def eval_components(
        self, x: Any, params: Mapping[str, Any] | None = None, **values: Any
    ) -> dict[str, jax.Array]:
        """Each part's curve at ``x``, by its prefix (or its shape's name)."""
        p = plan(self)
        full = p.expand({**(params or {}), **values})
        return {s.prefix or s.name: s.evaluate(x, full) for s in self.shapes()}

    # --- starts -----------------------------------------------------------------
    def guess(self, x: jax.Array, y: jax.Array, mask: jax.Array) -> dict[str, jax.Array]:
        """Starting values from one data set (``jax.numpy``, vmappable): ``x`` ``(n,)``
        or ``(n, 2)``, ``y`` and ``mask`` ``(n,)``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        ties = ", ".join(f"{n}={h}" for n, h in self.overrides)
        return f"<Model {self.label}{' with ' + ties if ties else ''}>"


def _on_own(fn: Callable[[dict], Any], shape: Shape, values: Mapping[str, Any]) -> Any:
    return fn({k: values[shape.prefix + k] for k in shape.builtin.params})


@dataclasses.dataclass(frozen=True, repr=False)
class Shape(Model):
    """One built-in line shape, its parameters named ``prefix + name``."""

    name: str
    prefix: str = ""
    options: tuple[tuple[str, Any], ...] = ()
    overrides: tuple[tuple[str, Hint], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", ALIASES.get(self.name, self.name))
        if self.name != "polynomial" and self.name not in BUILTINS:
            raise ValueError(f"unknown model {self.name!r}; the built-ins are {', '.join(names())}")
        allowed = OPTIONS.get(self.name, {})
        for key, value in self.options:
            if key not in allowed:
                raise ValueError(
                    f"{self.name}: no option {key!r}"
                    + (f"; allowed: {', '.join(allowed)}" if allowed else "")
                )
            if value not in allowed[key]:
                raise ValueError(
                    f"{self.name}: {key}={value!r} is not allowed; expected one of {', '.join(allowed[key])}"
                )
        if self.prefix and not self.prefix.isidentifier():
            raise ValueError(
                f"{self.name}: prefix {self.prefix!r} must be a Python name (letters, digits, _)"
            )

    @property
    def builtin(self) -> Builtin:
        if self.name == "polynomial":
            return _polynomial(dict(self.options).get("degree", 2))
        return BUILTINS[self.name]

    @property
    def dims(self) -> int:  # type: ignore[override]
        return self.builtin.dims

    @property
    def own_names(self) -> tuple[str, ...]:
        return tuple(self.prefix + p for p in self.builtin.params)

    def shapes(self) -> tuple[Shape, ...]:
        return (self,)

    def defaults(self) -> dict[str, float]:
        return self.builtin.defaults()

    @property
    def label(self) -> str:
        args = [self.prefix] if self.prefix else []
        args += [f"{k}={v}" for k, v in self.options]
        return f"{self.name}({', '.join(args)})"

    def evaluate(self, x: Any, values: Mapping[str, Any]) -> Any:
        own = {k: values[self.prefix + k] for k in self.builtin.params}
        opts = {k: v for k, v in self.options if k != "degree"}
        return self.builtin.shape(x, **own, **opts)

    def guess(self, x: jax.Array, y: jax.Array, mask: jax.Array, local: bool = False) -> dict[str, jax.Array]:
        rule = self.builtin.guess
        if rule is None:
            return {}
        found = rule(x, y, mask, local=True) if local and getattr(rule, "peak", False) else rule(x, y, mask)
        return {
            self.prefix + k: jnp.asarray(v, y.dtype) for k, v in found.items() if k in self.builtin.params
        }


@dataclasses.dataclass(frozen=True, repr=False)
class Composite(Model):
    """``left op right`` (op one of + − × ÷), evaluated pointwise."""

    left: Model
    right: Model
    op: str
    overrides: tuple[tuple[str, Hint], ...] = ()

    @property
    def dims(self) -> int:  # type: ignore[override]
        return self.left.dims

    def shapes(self) -> tuple[Shape, ...]:
        return self.left.shapes() + self.right.shapes()

    @property
    def label(self) -> str:
        def wrapped(m: Model) -> str:
            return (
                f"({m.label})" if isinstance(m, Composite) and m.op in "+-" and self.op in "*/" else m.label
            )

        return f"{wrapped(self.left)} {self.op} {wrapped(self.right)}"

    def evaluate(self, x: Any, values: Mapping[str, Any]) -> Any:
        return _OPS[self.op](self.left.evaluate(x, values), self.right.evaluate(x, values))

    def terms(self) -> tuple[Shape, ...] | None:
        """The shapes of a pure sum (None: the model has − × or ÷)."""
        if self.op != "+":
            return None
        parts = []
        for side in (self.left, self.right):
            sub = side.terms() if isinstance(side, Composite) else side.shapes()
            if sub is None:
                return None
            parts.extend(sub)
        return tuple(parts)

    def guess(self, x: jax.Array, y: jax.Array, mask: jax.Array) -> dict[str, jax.Array]:
        """A sum is guessed part by part: peaks in order, each from what the earlier
        ones leave (the highest point and the points joined to it above half
        maximum), then the backgrounds from the rest."""
        terms = self.terms()
        if terms is None:
            raise ValueError(
                f"{self.label}: only a sum of models can be guessed; give its starts (p0, or params in a config)"
            )
        order = sorted(terms, key=lambda s: s.name in BACKGROUNDS)
        filled = {**self.defaults(), **{n: h.value for n, h in self.hints.items() if h.value is not None}}
        filled = {k: jnp.asarray(v, y.dtype) for k, v in filled.items()}
        out: dict[str, jax.Array] = {}
        rest = y
        for s in order:
            found = s.guess(x, rest, mask, local=True)
            out.update(found)
            values = plan(self).tie({**filled, **out})
            rest = rest - jnp.where(mask, s.evaluate(_points(x, s.dims), values), 0)
        return out


def _points(x: jax.Array, dims: int) -> jax.Array:
    """Engine layout (``(n,)`` or ``(n, d)``) to the shapes' (``(n,)`` or ``(d, n)``)."""
    return x.T if dims else x


@functools.lru_cache(maxsize=16)
def _polynomial(degree: int) -> Builtin:
    if not (isinstance(degree, int) and 0 <= degree <= MAX_DEGREE):
        raise ValueError(f"polynomial: degree must be an integer in [0, {MAX_DEGREE}], got {degree!r}")
    from jaxfit.models import guesses

    names = [f"c{i}" for i in range(degree + 1)]

    def shape(x: Any, *c: Any) -> Any:
        out = jnp.zeros_like(jnp.asarray(x, jnp.result_type(x, float))) + c[-1]
        for coeff in reversed(c[:-1]):
            out = out * x + coeff
        return out

    shape.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("x", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=0.0) for n in names]
    )
    return Builtin(shape, {}, guesses.polynomial(degree), {}, about=f"c0 + c1·x + … + c{degree}·x^{degree}")


def names() -> list[str]:
    return [*BUILTINS, "polynomial"]


class Plan(NamedTuple):
    """What a fit trains and how every parameter follows from it."""

    model: Model
    free: tuple[str, ...]
    fixed: dict[str, float]
    tied: tuple[tuple[str, Expression], ...]
    """In evaluation order."""

    def tie(self, values: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(values)
        for name, expression in self.tied:
            out[name] = expression(out)
        return out

    def expand(self, free: Mapping[str, Any]) -> dict[str, Any]:
        """Every parameter's value from the free ones' (fixed from their hints)."""
        missing = [n for n in self.free if n not in free]
        if missing:
            raise ValueError(f"{self.model.label}: no value for {', '.join(missing)}")
        return self.tie({**self.fixed, **{n: free[n] for n in self.free}})

    def expand_and(self, x: Any, free: Mapping[str, Any], then: Callable[[Any, dict], Any]) -> Any:
        return then(jnp.asarray(x), self.expand(free))

    def quantity_names(self) -> tuple[str, ...]:
        return (*self.model.param_names, *self.model.derived())

    def quantities(self, free: jax.Array) -> jax.Array:
        """Every parameter and derived quantity from the free ones' vector."""
        values = self.expand(dict(zip(self.free, free)))
        derived = [fn(values) for fn in self.model.derived().values()]
        return jnp.stack([jnp.asarray(values[n], free.dtype) for n in self.model.param_names] + derived)


@functools.lru_cache(maxsize=256)
def plan(model: Model) -> Plan:
    """The model's plan (cached: one per model value); ``ValueError`` for a tie that
    names an unknown parameter or forms a cycle."""
    hints, known = model.hints, model.param_names
    defaults = model.defaults()
    exprs = {n: Expression(h.expr, known) for n, h in hints.items() if h.expr is not None}
    for name, e in exprs.items():
        if name in e.names:
            raise ValueError(f"expr: {name} = {e.text!r} refers to itself")
    order = evaluation_order(exprs)
    fixed = {
        n: float(defaults[n] if h.value is None else h.value)
        for n, h in hints.items()
        if not h.vary and n not in exprs
    }
    free = tuple(n for n in known if n not in exprs and n not in fixed)
    if not free:
        raise ValueError(f"{model.label}: every parameter is fixed or tied; nothing to fit")
    return Plan(model, free, fixed, tuple((n, exprs[n]) for n in order))


@functools.lru_cache(maxsize=256)
def fit_function(model: Model) -> Callable[..., Any]:
    """``f(x, *free)`` for the fitter (named by the free parameters; ``x`` a point,
    or the whole data set ``(n,)`` / ``(2, n)``)."""
    p = plan(model)

    def f(x: Any, *free: Any) -> Any:
        return model.evaluate(x, p.expand(dict(zip(p.free, free))))

    f.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("x", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in p.free]
    )
    f.__name__ = f.__qualname__ = model.label
    return f


def start_values(model: Model, x: np.ndarray, y: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``(G, k)`` starts of the free parameters for ``G`` data sets (``x`` shared
    ``(n,)``/``(n, d)`` or per set), guessed on the device in one call: the user's
    start where given, else the guess, else the library's start, else the shape's
    default."""
    p = plan(model)
    library = {s.prefix + k: h.value for s in model.shapes() for k, h in s.builtin.hints.items()}
    user = {n: h.value for n, h in model.overrides if h.value is not None}
    base = {**model.defaults(), **{k: v for k, v in library.items() if v is not None}}
    groups = y.shape[0]
    mask = np.isfinite(y) if mask is None else mask
    per_set = x.ndim == (3 if model.dims else 2)

    def one(x: jax.Array, y: jax.Array, mask: jax.Array) -> jax.Array:
        found = model.guess(x, jnp.where(mask, y, 0), mask)
        return jnp.stack([jnp.asarray(user.get(n, found.get(n, base[n])), y.dtype) for n in p.free])

    with jax.enable_x64(y.dtype == np.float64):
        guessed = jax.jit(jax.vmap(one, in_axes=(0 if per_set else None, 0, 0)))(x, y, mask)
    out = np.array(guessed, np.float64)  # a copy the caller may write
    return out.reshape(groups, len(p.free))


def bounds_of(model: Model) -> tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)`` ``(k,)`` of the free parameters from their hints."""
    p, hints = plan(model), model.hints
    return np.array([hints[n].min for n in p.free]), np.array([hints[n].max for n in p.free])
