"""jaxfit.curve_fit against scipy.optimize.curve_fit (float64), batched."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import curve_fit as scipy_curve_fit

import jaxfit
from jaxfit.core.status import Status

TIGHT = {"xtol": 1e-15, "ftol": 1e-15, "gtol": 1e-15}


def decay(x, a, k, c):
    return a * jnp.exp(-k * x) + c


def gauss1d(x, a, mu, s, c):
    return a * jnp.exp(-0.5 * ((x - mu) / s) ** 2) + c


def power(x, b1, b2):
    return b1 * x**b2


def line(x, a, b):
    return a + b * x


def spot(xy, amplitude, x0, y0, width, background):
    px, py = xy
    return amplitude * jnp.exp(-((px - x0) ** 2 + (py - y0) ** 2) / (2 * width**2)) + background


NUMPY = {
    decay: lambda x, a, k, c: a * np.exp(-k * x) + c,
    gauss1d: lambda x, a, mu, s, c: a * np.exp(-0.5 * ((x - mu) / s) ** 2) + c,
    power: lambda x, b1, b2: b1 * x**b2,
    line: lambda x, a, b: a + b * x,
    spot: lambda xy, a, x0, y0, w, b: a * np.exp(-((xy[0] - x0) ** 2 + (xy[1] - y0) ** 2) / (2 * w**2)) + b,
}


def _np(fn):
    """The same model for scipy, in float64 NumPy (vectorised over points)."""
    return NUMPY[fn]


GRID = np.stack(np.meshgrid(np.arange(5.0), np.arange(5.0), indexing="xy")).reshape(2, -1)


def _spots(count, seed=0, noise=10.0):
    rng = np.random.default_rng(seed)
    truth = np.array([500.0, 2.0, 2.0, 1.0, 10.0]) * rng.uniform(0.9, 1.1, (count, 5))
    px, py = GRID
    a, x0, y0, w, b = (truth[:, i : i + 1] for i in range(5))
    clean = a * np.exp(-((px - x0) ** 2 + (py - y0) ** 2) / (2 * w**2)) + b
    starts = truth * rng.uniform(0.9, 1.1, (count, 5))
    return clean + noise * rng.standard_normal(clean.shape), starts


CASES = {
    "decay": (decay, np.linspace(0, 5, 20), [3.0, 0.7, 0.5], [1.0, 0.5, 0.0]),
    "gauss1d": (gauss1d, np.linspace(-3, 3, 30), [2.0, 0.3, 0.8, 0.1], [1.5, 0.0, 1.0, 0.0]),
    "power": (power, np.linspace(1.3, 1.7, 12), [0.77, 3.86], [1.0, 3.0]),
    "line": (line, np.linspace(0, 1, 15), [0.3, 2.0], [0.0, 1.0]),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("weighted", [False, True])
def test_one_data_set_equals_scipy(name, weighted):
    fn, x, truth, p0 = CASES[name]
    rng = np.random.default_rng(2)
    sigma = rng.uniform(0.01, 0.05, len(x)) if weighted else None
    y = NUMPY[fn](x, *truth) + 0.03 * rng.standard_normal(len(x))
    popt, pcov = jaxfit.curve_fit(fn, x, y, p0, sigma=sigma)
    want, wcov = scipy_curve_fit(_np(fn), x, y, p0, sigma=sigma, **TIGHT)
    assert popt.shape == (len(p0),) and pcov.shape == (len(p0), len(p0)) and popt.dtype == np.float64
    np.testing.assert_allclose(popt, want, rtol=1e-6, atol=1e-9)
    d = np.sqrt(np.diag(wcov))
    assert np.max(np.abs(pcov - wcov) / np.outer(d, d)) < 1e-6


def test_a_2d_gaussian_spot_on_a_pixel_grid_equals_scipy():
    y, starts = _spots(5, seed=3)
    popt, pcov = jaxfit.curve_fit(spot, GRID, y, starts)
    assert popt.shape == (5, 5) and pcov.shape == (5, 5, 5)
    for g in range(5):
        want, wcov = scipy_curve_fit(_np(spot), GRID, y[g], starts[g], **TIGHT)
        np.testing.assert_allclose(popt[g], want, rtol=1e-6)
        d = np.sqrt(np.diag(wcov))
        assert np.max(np.abs(pcov[g] - wcov) / np.outer(d, d)) < 1e-6


def test_ten_thousand_spots_with_a_start_each_fit_in_one_call():
    y, starts = _spots(10_000, seed=4)
    # float32, and a step tolerance on the scale of the parameters (an amplitude of 500)
    fit = jaxfit.curve_fit(
        spot, GRID, y.astype(np.float32), starts.astype(np.float32), tolerance=1e-3, full_output=True
    )
    assert fit.popt.shape == (10_000, 5) and fit.popt.dtype == np.float32
    assert (fit.status != Status.DIVERGED).all() and fit.converged.mean() > 0.95
    # each fit lands at its own minimum: a sample against scipy from the same start
    for g in range(0, 10_000, 1_000):
        want, _ = scipy_curve_fit(_np(spot), GRID, y[g], starts[g], **TIGHT)
        np.testing.assert_allclose(fit.popt[g], want, rtol=2e-3, atol=2e-3)


def test_per_set_x_and_nan_padding_for_ragged_data():
    rng = np.random.default_rng(5)
    lengths = [8, 12, 20, 2]
    x = np.full((4, 20), np.nan)
    y = np.full((4, 20), np.nan)
    for g, n in enumerate(lengths):
        x[g, :n] = np.linspace(0, 5, n)
        y[g, :n] = 3 * np.exp(-0.6 * x[g, :n]) + 0.4 + 0.02 * rng.standard_normal(n)
    with pytest.raises(ValueError, match="nan_policy='omit'"):
        jaxfit.curve_fit(decay, x, y, [1.0, 0.5, 0.0])
    fit = jaxfit.curve_fit(decay, x, y, [1.0, 0.5, 0.0], nan_policy="omit", full_output=True)
    assert fit.status[3] == Status.TOO_FEW_POINTS and fit.steps[3] == 0
    for g, n in enumerate(lengths[:3]):
        want, wcov = scipy_curve_fit(_np(decay), x[g, :n], y[g, :n], [1.0, 0.5, 0.0], **TIGHT)
        np.testing.assert_allclose(fit.popt[g], want, rtol=1e-6)
        np.testing.assert_allclose(fit.perr[g], np.sqrt(np.diag(wcov)), rtol=1e-6)
        assert fit.dof[g] == n - 3


def test_float32_inputs_fit_in_float32_and_precision_overrides():
    x = np.linspace(0, 5, 20)
    y = 3 * np.exp(-0.7 * x) + 0.5
    popt, _ = jaxfit.curve_fit(decay, x, y.astype(np.float32), [1.0, 0.5, 0.0])
    assert popt.dtype == np.float32
    popt, _ = jaxfit.curve_fit(decay, x, y.astype(np.float32), [1.0, 0.5, 0.0], precision="float64")
    assert popt.dtype == np.float64
    np.testing.assert_allclose(popt, [3.0, 0.7, 0.5], rtol=1e-6)  # y was rounded to float32


def test_a_function_of_star_params_needs_p0_and_gets_numbered_names():
    x = np.linspace(0, 1, 10)
    with pytest.raises(ValueError, match="give p0"):
        jaxfit.curve_fit(lambda x, *p: p[0] + p[1] * x, x, 2 * x)
    fit = jaxfit.curve_fit(lambda x, *p: p[0] + p[1] * x, x, 1 + 2 * x, [0.0, 0.0], full_output=True)
    assert fit.names == ("p0", "p1")
    np.testing.assert_allclose(fit.popt, [1.0, 2.0], atol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ydata": [[1.0, 2.0, 3.0], [1.0, 2.0]]}, "ragged"),
        ({"p0": [1.0, 2.0]}, r"p0: shape \(2,\); expected \(3,\) or \(2, 3\)"),
        ({"sigma": [1.0, 1.0]}, "sigma: shape"),
        ({"sigma": [1.0, 0.0, 1.0]}, "sigma: every value must be > 0"),
        ({"xdata": np.zeros((3, 7))}, "xdata: shape"),
        ({"method": "trf"}, "method"),
        ({"bounds": (0, np.inf)}, "bounds"),
        ({"nan_policy": "propagate"}, "nan_policy"),
        ({"precision": "float16"}, "precision"),
    ],
)
def test_bad_input_is_one_valueerror(kwargs, message):
    args = {"xdata": np.arange(3.0), "ydata": np.array([[1.0, 0.5, 0.3], [2.0, 1.0, 0.6]]), "p0": None}
    args |= kwargs
    with pytest.raises(ValueError, match=message) as err:
        jaxfit.curve_fit(decay, **args)
    assert "\n" not in str(err.value)


def test_a_second_call_of_the_same_shapes_compiles_nothing():
    import jax

    x = np.linspace(0, 5, 20)
    y = np.stack([3 * np.exp(-k * x) + 0.5 for k in (0.5, 0.7, 0.9)])
    jaxfit.curve_fit(decay, x, y, [1.0, 0.5, 0.0])
    compiled = []
    jax.monitoring.register_event_duration_secs_listener(lambda name, *a, **k: compiled.append(name))
    jaxfit.curve_fit(decay, x, y * 1.1, [2.0, 0.6, 0.1])
    assert "/jax/compilation_cache/compile_time_saved_sec" not in compiled
    assert not [c for c in compiled if "backend_compile" in c]
