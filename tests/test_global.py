"""Global fits (``curve_fit(..., shared=[...])``): many data sets as one problem with
shared parameters, against scipy's ``least_squares`` on the concatenated problem."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import least_squares

import jaxfit


def decay(x, a, k, c):
    return a * jnp.exp(-k * x) + c


def _traces(G=20, seed=0, ragged=False):
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 4, 25)
    a, c = rng.uniform(1, 3, G), rng.uniform(-0.5, 0.5, G)
    Y = a[:, None] * np.exp(-0.8 * x) + c[:, None] + rng.normal(0, 0.03, (G, x.size))
    sigma = rng.uniform(0.02, 0.05, (G, x.size))
    if ragged:
        Y[::3, 18:] = np.nan  # shorter traces
        Y[1, 4] = np.nan
    return x, Y, sigma


def _scipy(x, Y, sigma=None):
    """The concatenated problem: (a_0, c_0, a_1, c_1, …, k), the residuals of every set."""
    G = len(Y)
    real = np.isfinite(Y)
    s = np.ones_like(Y) if sigma is None else sigma

    def fun(p):
        a, c, k = p[0 : 2 * G : 2], p[1 : 2 * G : 2], p[-1]
        r = (a[:, None] * np.exp(-k * x) + c[:, None] - Y) / s
        return r[real]

    def jac(p):
        a, k = p[0 : 2 * G : 2], p[-1]
        e = np.exp(-k * x)
        J = np.zeros(Y.shape + (2 * G + 1,))
        for g in range(G):
            J[g, :, 2 * g] = e / s[g]
            J[g, :, 2 * g + 1] = 1 / s[g]
            J[g, :, -1] = -a[g] * x * e / s[g]
        return J[real]

    p0 = np.concatenate([np.tile([1.0, 0.0], G), [0.5]])
    r = least_squares(fun, p0, jac=jac, method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15)
    J = jac(r.x)
    dof = real.sum() - J.shape[1]
    cov = np.linalg.inv(J.T @ J) * (2 * r.cost / dof)
    return r.x, cov, 2 * r.cost


@pytest.mark.parametrize("case", ["plain", "weighted", "ragged"])
def test_a_shared_rate_equals_scipy_on_the_concatenated_problem(case):
    x, Y, sigma = _traces(ragged=case == "ragged")
    s = sigma if case == "weighted" else None
    want, cov, chisqr = _scipy(x, Y, s)
    fit = jaxfit.curve_fit(
        decay, x, Y, p0=[1.0, 0.5, 0.0], sigma=s, shared=["k"], precision="float64", nan_policy="omit"
    )
    assert fit.status == jaxfit.Status.CONVERGED
    got = np.concatenate([fit.local.ravel(), fit.shared])  # (a_0, c_0, …, k): the same order
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(fit.covariance(), cov, rtol=1e-6, atol=1e-12)
    assert fit.chisqr == pytest.approx(chisqr, rel=1e-9)
    assert fit.dof == np.isfinite(Y).sum() - (2 * len(Y) + 1)
    np.testing.assert_allclose(fit.shared_err, np.sqrt(cov[-1, -1]), rtol=1e-6)
    assert fit.chisqr_per_set.sum() == pytest.approx(fit.chisqr, rel=1e-9)
    assert fit.popt.shape == (len(Y), 3) and (fit.popt[:, 1] == fit.shared[0]).all()


@pytest.mark.parametrize("upper", [0.7, 2.0])
def test_a_bound_on_the_shared_rate_equals_scipys_trf(upper):
    x, Y, _ = _traces(G=8, seed=3)
    G = len(Y)

    def fun(p):
        a, c, k = p[0 : 2 * G : 2], p[1 : 2 * G : 2], p[-1]
        return (a[:, None] * np.exp(-k * x) + c[:, None] - Y).ravel()

    lower = np.concatenate([np.full(2 * G, -np.inf), [0.0]])
    higher = np.concatenate([np.full(2 * G, np.inf), [upper]])
    p0 = np.concatenate([np.tile([1.0, 0.0], G), [0.5]])
    ref = least_squares(fun, p0, bounds=(lower, higher), method="trf", xtol=1e-15, ftol=1e-15, gtol=1e-15)
    fit = jaxfit.curve_fit(
        decay,
        x,
        Y,
        p0=[1.0, 0.5, 0.0],
        bounds=([-np.inf, 0, -np.inf], [np.inf, upper, np.inf]),
        shared="k",
        precision="float64",
    )
    assert fit.status == jaxfit.Status.CONVERGED
    np.testing.assert_allclose(np.concatenate([fit.local.ravel(), fit.shared]), ref.x, rtol=1e-6, atol=1e-9)
    assert fit.chisqr == pytest.approx(2 * ref.cost, rel=1e-9)
    assert (fit.shared[0] == upper) == (upper == 0.7)  # the bound holds k only where it binds


@pytest.mark.parametrize(("loss", "f_scale"), [("huber", 0.05), ("soft_l1", 0.1), ("cauchy", 0.05)])
def test_a_robust_global_fit_equals_scipys_least_squares_with_that_loss(loss, f_scale):
    x, Y, _ = _traces(G=8, seed=4)
    Y[::2, 5] += 1.0  # outliers
    G = len(Y)

    def fun(p):
        a, c, k = p[0 : 2 * G : 2], p[1 : 2 * G : 2], p[-1]
        return (a[:, None] * np.exp(-k * x) + c[:, None] - Y).ravel()

    p0 = np.concatenate([np.tile([1.0, 0.0], G), [0.5]])
    ref = least_squares(fun, p0, loss=loss, f_scale=f_scale, method="trf", xtol=1e-15, ftol=1e-15, gtol=1e-15)
    fit = jaxfit.curve_fit(
        decay, x, Y, p0=[1.0, 0.5, 0.0], shared="k", loss=loss, f_scale=f_scale, precision="float64"
    )
    assert fit.status == jaxfit.Status.CONVERGED
    np.testing.assert_allclose(np.concatenate([fit.local.ravel(), fit.shared]), ref.x, rtol=1e-6, atol=1e-8)
    assert fit.chisqr == pytest.approx(2 * ref.cost, rel=1e-9)  # the loss: twice scipy's cost


def test_a_global_fit_in_float32_and_its_report():
    x, Y, _ = _traces(G=50, seed=1)
    f64 = jaxfit.curve_fit(decay, x, Y, p0=[1.0, 0.5, 0.0], shared="k", precision="float64")
    f32 = jaxfit.curve_fit(decay, x, Y.astype(np.float32), p0=[1.0, 0.5, 0.0], shared="k")
    assert f32.status == jaxfit.Status.CONVERGED
    np.testing.assert_allclose(f32.shared, f64.shared, rtol=1e-4)
    np.testing.assert_allclose(f32.local, f64.local, rtol=1e-3, atol=1e-4)
    text = f64.report()
    assert "Shared:" in text and "k" in text and f"{len(Y):,} data sets" in text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shared": ["q"]}, "'q' is not a parameter of the model"),
        ({"shared": ["a", "k", "c"]}, "leave at least one local"),
        (
            {"shared": ["k"], "bounds": (np.zeros((3, 3)), np.array([[9, 1, 9], [9, 2, 9], [9, 1, 9]]))},
            "one bound",
        ),
        ({"shared": ["k"], "loss": "poisson"}, "Poisson losses are not supported"),
    ],
)
def test_a_global_fit_it_cannot_do_says_why_in_one_line(kwargs, message):
    x, Y, _ = _traces(G=3)
    with pytest.raises(ValueError, match=message) as err:
        jaxfit.curve_fit(decay, x, Y, p0=[1.0, 0.5, 0.0], **kwargs)
    assert "\n" not in str(err.value)
