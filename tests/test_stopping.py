"""Least-squares stopping rules of ``lm`` (xtol, ftol, gtol), as scipy and MINPACK mean them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import least_squares

import jaxfit

X = np.linspace(0, 4, 30)
Y = 3.0 * np.exp(-1.3 * X) + 0.5 + 0.02 * np.sin(9 * X)


def decay(x, a, k, c):
    return a * jnp.exp(-k * x) + c


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def test_xtol_stops_on_a_step_small_relative_to_the_parameters():
    ref = least_squares(
        lambda p: p[0] * np.exp(-p[1] * X) + p[2] - Y,
        [1, 1, 1],
        method="lm",
        xtol=1e-14,
        ftol=1e-15,
        gtol=1e-15,
    )
    off = jaxfit.curve_fit(decay, X, Y, [1.0, 1.0, 1.0], tolerance=1e-300, max_steps=100, result=True)
    on = jaxfit.curve_fit(
        decay, X, Y, [1.0, 1.0, 1.0], tolerance=1e-300, xtol=1e-8, max_steps=100, result=True
    )
    assert off.status == jaxfit.Status.MAX_STEPS  # no absolute step is below 1e-300
    assert on.status == jaxfit.Status.CONVERGED and on.steps < off.steps
    np.testing.assert_allclose(on.popt, ref.x, rtol=1e-7)


def test_gtol_at_a_stationary_point_stops_without_stepping():
    best = jaxfit.curve_fit(decay, X, Y, [1.0, 1.0, 1.0], tolerance=1e-14, result=True)
    again = jaxfit.curve_fit(decay, X, Y, best.popt, tolerance=1e-300, gtol=1e-6, result=True)
    assert (again.status, again.steps) == (jaxfit.Status.CONVERGED, 1)
    np.testing.assert_array_equal(again.popt, best.popt)  # no step taken
    far = jaxfit.curve_fit(decay, X, Y, [1.0, 1.0, 1.0], tolerance=1e-300, gtol=1e-6, result=True)
    assert far.status == jaxfit.Status.CONVERGED and far.steps > 1
    np.testing.assert_allclose(far.popt, best.popt, rtol=1e-5)


def test_stopping_rules_in_a_config_and_their_errors():
    r = jaxfit.fit({"train": {"optimizer": "lm", "tolerance": 1e-30, "xtol": 1e-6, "max_steps": 500}})
    assert r.status == jaxfit.Status.CONVERGED and r.steps < 500
    for field, value in (("xtol", -1.0), ("gtol", 1.5)):
        with pytest.raises(jaxfit.ConfigError, match=f"train.{field}"):
            jaxfit.load_config({"train": {field: value}})
    with pytest.raises(ValueError, match=r"xtol: must be in \[0, 1\)"):
        jaxfit.curve_fit(decay, X, Y, [1.0, 1.0, 1.0], xtol=2.0)
