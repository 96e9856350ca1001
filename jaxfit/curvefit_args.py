"""scipy's ``curve_fit`` arguments, checked and shaped for the batch engine: each
meaning what it means in scipy, or refused with one line that names the alternative.

``Arrays`` is what comes out: every data set's points on one axis, a mask where
points were left out, the model as a ``core.model.Function`` (called per point, or
with the whole ``xdata`` as scipy calls it, whichever the function is written for).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

SOLVER_OPTIONS = {
    "maxfev": "at most this many LM steps (each evaluates the model at least once)",
    "max_nfev": "at most this many LM steps (each evaluates the model at least once)",
}
REFUSED = {
    "args": "'args' is not a supported keyword argument.",
    "kwargs": "'kwargs' is not a supported keyword argument.",
    "x_scale": "x_scale: not supported; jaxfit's LM scales each parameter by its Jacobian column (MINPACK's diag)",
    "diff_step": "diff_step: not supported; jaxfit's derivatives are exact (autodiff), with no step",
    "epsfcn": "epsfcn: not supported; jaxfit's derivatives are exact (autodiff), with no step",
    "factor": "factor: not supported; jaxfit's LM has no initial trust radius (it damps from damping=0.01)",
    "diag": "diag: not supported; jaxfit's LM scales each parameter by its Jacobian column (MINPACK's diag)",
    "col_deriv": "col_deriv: not supported; give jac(x, *p) as an (n, k) array",
    "tr_solver": "tr_solver: not supported; jaxfit solves the k x k damped normal equations directly",
    "tr_options": "tr_options: not supported; jaxfit solves the k x k damped normal equations directly",
    "jac_sparsity": "jac_sparsity: not supported; a batch of data sets is one fit each (pass ydata (G, n))",
    "verbose": "verbose: not supported; pass result=True for each fit's status and steps",
    "callback": "callback: not supported; the fit runs compiled, with no Python in its loop",
    "Dfun": "Dfun: pass jac=callable instead",
}
METHODS = ("lm", "trf", "dogbox")
JAC_SCHEMES = ("2-point", "3-point", "cs")


class Call(NamedTuple):
    """scipy's arguments of one ``curve_fit`` call that shape its arrays."""

    f: Callable[..., Any]
    xdata: Any
    ydata: Any
    p0: Any
    sigma: Any
    jac: Callable[..., Any] | None
    check_finite: bool | None
    nan_policy: str | None
    precision: str | None


class Arrays(NamedTuple):
    """One call's checked inputs: ``x`` ``(G, n[, d])`` (or shared ``(n[, d])``),
    ``y``/``mask``/``sigma`` ``(G, n)``, ``starts`` ``(G, k)``."""

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray | None
    sigma: np.ndarray | None
    starts: np.ndarray
    names: tuple[str, ...]
    model: Any
    """A ``core.model.Function``."""
    dtype: np.dtype
    single: bool


def checked_rules(ftol: float, xtol: float, gtol: float, starts: Any) -> None:
    """The stopping rules in ``[0, 1)`` and the starts per data set an integer ≥ 1."""
    for name, value in (("ftol", ftol), ("xtol", xtol), ("gtol", gtol)):
        if not 0 <= value < 1:
            raise ValueError(f"{name}: must be in [0, 1), got {value}")
    if not (isinstance(starts, (int, np.integer)) and starts >= 1):
        raise ValueError(f"starts: the number of starts per data set must be an integer >= 1, got {starts!r}")


def bucket(n: int) -> int:
    """The points a data set of ``n`` is padded to: a multiple of an eighth of the next
    power of two (10, 12, 14, 16, 20, 24, 28, 32, 40, …): four sizes an octave, at most
    a quarter more work, 28 programs for lengths 10 to 1,000."""
    if n <= 8:
        return 8
    step = (1 << (n - 1).bit_length()) // 8
    return -(-n // step) * step


def padded(arrays: Arrays) -> Arrays:
    """``arrays`` with their points padded to ``bucket(n)`` (masked out; ``x`` repeats
    each data set's last point, a value the model is known to take), so data sets of
    nearby lengths share one compiled program (a mask even where none is padded: one
    program per bucket). A model of the whole ``xdata`` at once keeps its length (its
    shape is the user's to read)."""
    if arrays.model.layout is not None:
        return arrays
    n = arrays.y.shape[1]
    extra = bucket(n) - n

    def pad(a: np.ndarray, axis: int, **how: Any) -> np.ndarray:
        widths = [(0, 0)] * a.ndim
        widths[axis] = (0, extra)
        return np.pad(a, widths, **how)

    dims = 1 if arrays.model.dims else 0
    x_axis = 1 if arrays.x.ndim == 2 + dims else 0
    mask = np.ones(arrays.y.shape, bool) if arrays.mask is None else arrays.mask
    return arrays._replace(
        x=pad(arrays.x, x_axis, mode="edge"),
        y=pad(arrays.y, 1),
        mask=pad(mask, 1),
        sigma=None if arrays.sigma is None else pad(np.asarray(arrays.sigma), 1, constant_values=1),
    )


def solver_options(max_steps: int | None, kwargs: dict[str, Any]) -> int:
    """``max_steps`` from scipy's ``maxfev`` / ``max_nfev`` (default 200); any other
    solver option scipy passes on is refused, one line each."""
    for name in kwargs:
        if name in REFUSED:
            raise ValueError(REFUSED[name])
        if name not in SOLVER_OPTIONS:
            raise TypeError(f"curve_fit() got an unexpected keyword argument {name!r}")
    given = [kwargs[n] for n in SOLVER_OPTIONS if kwargs.get(n) is not None]
    if max_steps is not None:
        given.append(max_steps)
    if len(set(given)) > 1:
        raise ValueError("max_steps, maxfev and max_nfev: give one of them")
    steps = given[0] if given else 200
    if not (isinstance(steps, (int, np.integer)) and steps >= 1):
        raise ValueError(f"max_steps: must be a whole number >= 1, got {steps!r}")
    return int(steps)


def checked_method(method: str | None, bounded: bool) -> None:
    """scipy's ``method``: 'lm' (unbounded), 'trf' or 'dogbox' (jaxfit's projected LM
    runs all three: the same minimum, not the same path)."""
    if method is not None and method not in METHODS:
        raise ValueError(f"method: {method!r} is not allowed; expected one of 'lm', 'trf', 'dogbox' or None")
    if method == "lm" and bounded:
        raise ValueError("Method 'lm' only works for unconstrained problems. Use 'trf' or 'dogbox' instead.")


def checked_jac(jac: Any) -> Callable[..., Any] | None:
    """A callable ``jac(x, *p) -> (n, k)`` is used; scipy's finite-difference schemes
    and None mean jaxfit's exact derivatives (autodiff)."""
    if jac is None or (isinstance(jac, str) and jac in JAC_SCHEMES):
        return None
    if callable(jac):
        return jac
    raise ValueError(
        f"jac: {jac!r} is not allowed; expected a callable jac(x, *p), '2-point', '3-point' or 'cs'"
    )


def parameter_names(f: Callable[..., Any], p0: np.ndarray | None) -> tuple[str, ...]:
    """The names of ``f``'s parameters after ``x`` (``p0 .. p{k-1}`` for ``f(x, *p)``)."""
    try:
        params = list(inspect.signature(f).parameters.values())[1:]
    except (TypeError, ValueError):
        params = []
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params) or not params:
        if p0 is None:
            raise ValueError("Unable to determine number of fit parameters: f takes *params, so give p0")
        return tuple(f"p{i}" for i in range(p0.shape[-1]))
    if any(p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params):
        raise ValueError(
            f"f must be f(x, p1, p2, ...) with positional parameters, got {inspect.signature(f)}"
        )
    return tuple(p.name for p in params)


def array(value: Any, name: str) -> np.ndarray:
    try:
        out = np.asarray(value)
    except ValueError:
        out = None
    if out is None or out.dtype == object:
        raise ValueError(
            f"{name}: ragged or not numbers; pad the shorter data sets with NaN and pass nan_policy='omit'"
        )
    return out


def _dtype(precision: str | None, y: np.ndarray) -> np.dtype:
    """The fit's dtype: ``precision``, else float32 for float32 ``ydata``, else float64."""
    if precision is not None:
        if precision not in ("float32", "float64"):
            raise ValueError(f"precision: {precision!r} is not allowed; expected 'float32' or 'float64'")
        return np.dtype(precision)
    return np.dtype(np.float32 if y.dtype == np.float32 else np.float64)


def untraceable(err: Exception, name: str = "f") -> TypeError:
    """One line: ``name`` could not be traced by JAX, why, and the fix."""
    text = str(err).strip()
    reason = text.splitlines()[0][:160] if text else ""
    return TypeError(
        f"{name} cannot be traced by JAX ({type(err).__name__}: {reason}); write it with jax.numpy "
        "(jnp.exp, not np.exp or math.exp) and jnp.where(cond, a, b) for an `if` on x or the parameters"
    )


def model_form(
    f: Callable[..., Any], point: tuple[int, ...], whole: tuple[int, ...], k: int, dtype: np.dtype
) -> str:
    """``"point"`` where ``f`` maps one point's ``x`` (shape ``point``) to a number,
    ``"array"`` where it maps the whole ``xdata`` (shape ``whole``, the points last)
    to one value per point (scipy's convention); a ``TypeError`` where neither traces."""
    import jax

    params = [jax.ShapeDtypeStruct((), dtype)] * k
    first: Exception | None = None
    for form, shape in (("point", point), ("array", whole)):
        try:  # in the fit's precision: JAX keeps the constants f closes over as first traced
            with jax.enable_x64(dtype == np.float64):
                out = jax.eval_shape(f, jax.ShapeDtypeStruct(shape, dtype), *params)
        except Exception as err:  # any failure to trace is the model's
            first = first or err
            continue
        out_shape = getattr(out, "shape", None)
        if form == "point" and out_shape == ():
            return form
        if form == "array" and out_shape in ((whole[-1],), ()):
            return form
        first = first or ValueError(
            f"f returns shape {out_shape} for xdata of shape {whole}; expected one value per point, ({whole[-1]},)"
        )
    if isinstance(first, ValueError):
        raise first
    raise untraceable(first) from None


def check_jacobian(jac: Callable[..., Any], whole: tuple[int, ...], k: int, dtype: np.dtype) -> None:
    """The user's ``jac(xdata, *p)`` must trace and give ``(n, k)``."""
    import jax

    params = [jax.ShapeDtypeStruct((), dtype)] * k
    try:
        with jax.enable_x64(dtype == np.float64):
            out = jax.eval_shape(jac, jax.ShapeDtypeStruct(whole, dtype), *params)
    except Exception as err:  # any failure to trace is the user's jac
        raise untraceable(err, "jac") from None
    if getattr(out, "shape", None) != (whole[-1], k):
        raise ValueError(
            f"jac: returns shape {getattr(out, 'shape', None)}; expected ({whole[-1]}, {k}) (points, parameters)"
        )


def _broadcast_y(f: Callable[..., Any], x: np.ndarray, p0: np.ndarray, dtype: np.dtype) -> int:
    """The number of points of a scalar ``ydata`` (scipy broadcasts it): the length of
    ``f(xdata, *p0)``."""
    import jax

    try:
        with jax.enable_x64(dtype == np.float64):
            out = jax.eval_shape(
                f, jax.ShapeDtypeStruct(x.shape, dtype), *([jax.ShapeDtypeStruct((), dtype)] * len(p0))
            )
    except Exception as err:
        raise untraceable(err) from None
    if len(out.shape) != 1 or out.shape[0] == 0:
        raise ValueError(f"ydata: a single number needs f(xdata, *p0) of shape (n,), got {out.shape}")
    return out.shape[0]


def checked_nan_policy(nan_policy: str | None) -> None:
    if nan_policy not in (None, "raise", "omit", "propagate"):
        raise ValueError("nan_policy must be one of {None, 'raise', 'omit'}")
    if nan_policy == "propagate":
        raise ValueError("`nan_policy='propagate'` is not supported by this function.")


def finite_points(
    x: np.ndarray, y: np.ndarray, check_finite: bool | None, nan_policy: str | None
) -> np.ndarray | None:
    """scipy's ``check_finite`` and ``nan_policy`` for one data set (``x`` with its points
    last): None where every point is finite, else which points are (for 'omit')."""
    bad_x = ~np.isfinite(x).reshape(-1, x.shape[-1]).all(axis=0) if x.size else np.zeros(y.shape, bool)
    finite = ~bad_x & np.isfinite(y)
    if finite.all():
        return None
    refuse_nonfinite(check_finite, nan_policy)
    return finite


def refuse_nonfinite(check_finite: bool | None, nan_policy: str | None) -> None:
    """Non-finite data: the one-line error of scipy's for ``nan_policy`` and
    ``check_finite``, unless ``nan_policy='omit'`` leaves those points out."""
    if nan_policy == "omit":
        return
    if nan_policy == "raise":
        raise ValueError("The input contains nan values; pass nan_policy='omit' to leave such points out")
    if check_finite is False:
        raise ValueError(
            "xdata or ydata contains NaN or inf, which would make every result NaN; "
            "pass nan_policy='omit' to leave such points out"
        )
    raise ValueError("array must not contain infs or NaNs (pass nan_policy='omit' to leave such points out)")


def whitened(sigma: np.ndarray, n: int) -> np.ndarray:
    """The lower Cholesky factor ``L`` of a data covariance ``sigma`` (n, n): residuals
    are whitened by ``L⁻¹`` (scipy's 2-D ``sigma``)."""
    if sigma.shape != (n, n):
        raise ValueError(f"sigma: shape {sigma.shape}; expected a number, ({n},) or a covariance ({n}, {n})")
    try:
        return np.linalg.cholesky(np.asarray(sigma, np.float64))
    except np.linalg.LinAlgError:
        raise ValueError("`sigma` must be positive definite.") from None


def single_arrays(call: Call) -> Arrays:
    """One data set, as scipy's ``curve_fit`` takes it: ``ydata`` ``(n,)`` or a number
    (broadcast to the model's length), ``xdata`` anything ``f`` takes with the points
    last (None: ``f`` ignores it), ``sigma`` a number, ``(n,)`` or the data's covariance
    ``(n, n)``, non-finite points left out under ``nan_policy='omit'`` (as scipy does)."""
    f, xdata, ydata, p0, sigma, jac, check_finite, nan_policy, precision = call
    from jaxfit.core.model import Function

    y = array(ydata, "ydata")
    p0 = None if p0 is None else np.atleast_1d(array(p0, "p0"))
    names = parameter_names(f, p0)
    k = len(names)
    p0 = np.ones(k) if p0 is None else p0
    if p0.shape != (k,):
        raise ValueError(f"p0: shape {p0.shape}; expected ({k},) for {', '.join(names)}")
    dtype = _dtype(precision, y)
    x = None if xdata is None else array(xdata, "xdata").astype(dtype)
    if y.ndim == 0:
        x_probe = np.zeros(0, dtype) if x is None else x
        y = np.full(_broadcast_y(f, x_probe, p0, dtype), y.item())
    if y.size == 0:
        raise ValueError("`ydata` must not be empty!")
    n = y.shape[0]
    x = np.arange(n, dtype=dtype) if x is None else x
    if x.ndim == 0 or x.shape[-1] != n:
        raise ValueError(f"xdata: shape {x.shape} does not match ydata's ({n},); the points go last")
    keep = finite_points(x, y, check_finite, nan_policy)
    sigma = None if sigma is None else array(sigma, "sigma").astype(np.float64)
    if keep is not None:  # scipy drops those points (and sigma's rows and columns)
        x, y = x[..., keep], y[keep]
        if sigma is not None and sigma.ndim:
            sigma = sigma[keep] if sigma.ndim == 1 else sigma[np.ix_(keep, keep)]
        n = y.shape[0]
    if k > n:
        raise TypeError(f"The number of func parameters={k} must not exceed the number of data points={n}")
    point = () if x.ndim == 1 else (math.prod(x.shape[:-1]),)
    form = "array" if jac is not None else model_form(f, point, x.shape, k, dtype)
    if jac is not None:
        from jaxfit.core.model import with_jacobian

        check_jacobian(jac, x.shape, k, dtype)
        f = with_jacobian(f, jac)
    factor = None
    if sigma is not None:
        if sigma.ndim == 2:
            factor = whitened(sigma, n)
            sigma = None
        elif sigma.ndim == 0 or sigma.shape == (n,):
            sigma = np.broadcast_to(sigma, (n,))
        else:
            raise ValueError(
                f"sigma: shape {sigma.shape}; expected a number, ({n},) or a covariance ({n}, {n})"
            )
        if sigma is not None and not (sigma > 0).all():
            raise ValueError("sigma: every value must be > 0")
    label = getattr(f, "__qualname__", repr(f))
    layout = x.shape[:-1]
    dims = math.prod(layout) if layout else 0
    engine_x = x.reshape(-1, n).T if dims else x
    if factor is not None:
        y = np.linalg.solve(factor, y)
        f, form = _whitening(f, form, factor.astype(dtype), dims), "array"
    model = Function(f, names, label, dims, None if form == "point" else layout)
    return Arrays(
        engine_x,
        y[None].astype(dtype),
        None,
        None if sigma is None else sigma[None],
        p0[None].astype(np.float64),
        names,
        model,
        dtype,
        True,
    )


def _whitening(f: Callable[..., Any], form: str, factor: np.ndarray, dims: int) -> Callable[..., Any]:
    """``L⁻¹ f(x, *p)`` over the whole data set, for ``f`` per point or whole."""
    import jax
    import jax.numpy as jnp

    L = jnp.asarray(factor)

    def whole(x: Any, *p: Any) -> Any:
        if form == "point":
            points = jnp.reshape(x, (-1, x.shape[-1])).T if dims else x
            values = jax.vmap(lambda xi: f(xi, *p))(points)
        else:
            values = jnp.broadcast_to(f(x, *p), (L.shape[0],))
        return jax.scipy.linalg.solve_triangular(L, values, lower=True)

    whole.__qualname__ = getattr(f, "__qualname__", "f")
    return whole


def _shapes(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, int]:
    """``x`` as ``(G, n)`` or ``(G, n, d)`` for ``y`` of shape ``(G, n)`` — or ``(n,)``
    / ``(n, d)`` when every data set shares it (not copied per set) — and ``d`` (0: scalar x)."""
    groups, n = y.shape
    if x.shape == (n,):
        return x, 0
    if x.shape == (groups, n):
        return x, 0
    if x.ndim == 2 and x.shape[1] == n:  # (d, n): several x columns, shared
        return x.T, x.shape[0]
    if x.ndim == 3 and x.shape[0] in (1, groups) and x.shape[2] == n:  # (G or 1, d, n)
        return np.broadcast_to(np.swapaxes(x, 1, 2), (groups, n, x.shape[1])), x.shape[1]
    raise ValueError(
        f"xdata: shape {x.shape} does not match ydata's {y.shape}; expected ({n},), ({groups}, {n}), "
        f"(d, {n}) or ({groups}, d, {n})"
    )


def _per_set(value: np.ndarray | None, groups: int, width: int, name: str, what: str) -> np.ndarray | None:
    if value is None:
        return None
    if value.ndim == 0 and name == "sigma":
        return np.broadcast_to(value, (groups, width))
    if value.shape == (width,):
        return np.broadcast_to(value, (groups, width))
    if value.shape == (groups, width):
        return value
    raise ValueError(f"{name}: shape {value.shape}; expected ({width},) or ({groups}, {width}) ({what})")


def batch_arrays(call: Call) -> Arrays:
    """``G`` data sets, ``ydata`` ``(G, n)``: ``xdata`` ``(n,)``/``(d, n)`` shared or
    ``(G, n)``/``(G, d, n)`` per set, ``p0`` ``(k,)`` or ``(G, k)``, ``sigma`` a number,
    ``(n,)`` or ``(G, n)``; non-finite points masked under ``nan_policy='omit'`` (a data
    set left with fewer points than parameters is not fitted: ``TOO_FEW_POINTS``)."""
    f, xdata, ydata, p0, sigma, jac, check_finite, nan_policy, precision = call
    from jaxfit.core.model import Function, with_jacobian

    x, y = array(xdata, "xdata"), array(ydata, "ydata")
    p0 = None if p0 is None else array(p0, "p0")
    sigma = None if sigma is None else array(sigma, "sigma")
    if y.shape[-1] == 0:
        raise ValueError("`ydata` must not be empty!")
    dtype = _dtype(precision, y)
    groups, n = y.shape
    x, dims = _shapes(x, y)
    names = parameter_names(f, p0)
    k = len(names)
    starts = _per_set(
        np.ones(k) if p0 is None else p0, groups, k, "p0", f"{k} parameters: {', '.join(names)}"
    )
    if sigma is not None and sigma.ndim == 2 and sigma.shape == (n, n) and groups != n:
        raise ValueError(
            "sigma: a covariance (n, n) is for one data set; give each point's sigma, (n,) or (G, n)"
        )
    sigma = _per_set(sigma, groups, n, "sigma", f"{n} points")
    if not np.isfinite(starts).all():
        raise ValueError("p0: every starting value must be finite")
    if sigma is not None and not (sigma[np.isfinite(sigma)] > 0).all():
        raise ValueError("sigma: every value must be > 0")
    finite = np.isfinite(y) & (np.isfinite(x).all(axis=-1) if dims else np.isfinite(x))
    if sigma is not None:
        finite = finite & np.isfinite(sigma)
    mask = None
    if not finite.all():
        refuse_nonfinite(check_finite, nan_policy)
        mask = finite
    point = (dims,) if dims else ()
    whole = (dims, n) if dims else (n,)
    form = "array" if jac is not None else model_form(f, point, whole, k, dtype)
    label = getattr(f, "__qualname__", repr(f))
    if jac is not None:
        check_jacobian(jac, whole, k, dtype)
        f = with_jacobian(f, jac)
    model = Function(f, names, label, dims, None if form == "point" else point)
    return Arrays(x, y, mask, sigma, starts.astype(np.float64), names, model, dtype, False)
