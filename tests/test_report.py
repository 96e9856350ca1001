"""``CurveFit.report()``: lmfit's ``fit_report`` layout, every value lmfit prints for
the same fit equal to 5 significant digits; intervals, a short repr, named statuses."""

from __future__ import annotations

import re

import jax.numpy as jnp
import numpy as np
import pytest

import jaxfit

lmfit = pytest.importorskip("lmfit")

X = np.linspace(0, 4, 50)
Y = 2.5 * np.exp(-1.3 * X) + 0.5 + 0.1 * np.random.default_rng(1).standard_normal(50)


def decay(x, a, k, c):
    return a * jnp.exp(-k * x) + c


def numbers(report: str) -> dict[str, float]:
    """``label: value`` of every statistic, variable, error and correlation in a report."""
    out = {}
    for key in ("chi-square", "reduced chi-square", "Akaike info crit", "Bayesian info crit", "R-squared"):
        out[key] = float(re.search(rf"^\s+{re.escape(key)}\s+= (\S+)", report, re.M).group(1))
    out["data points"] = float(re.search(r"# data points\s+= (\S+)", report).group(1))
    for name, value, err in re.findall(r"^\s+(\w+):\s+(\S+) \+/- (\S+) \(", report, re.M):
        out[name], out[f"{name} stderr"] = float(value), float(err)
    for a, b, c in re.findall(r"C\((\w+), (\w+)\) = (\S+)", report):
        out[f"C({a}, {b})"] = float(c)
    return out


def test_report_prints_every_value_lmfit_prints_for_the_same_fit():
    ref = lmfit.Model(lambda x, a, k, c: a * np.exp(-k * x) + c).fit(Y, x=X, a=1, k=1, c=0)
    fit = jaxfit.curve_fit(decay, X, Y, [1.0, 1.0, 0.0], result=True)
    ours, theirs = numbers(fit.report()), numbers(ref.fit_report())
    assert set(theirs) <= set(ours) and len(theirs) == 6 + 6 + 3
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, rel=5e-5, abs=1e-12), key
    assert "status             = converged" in fit.report()


def test_intervals_status_names_repr_and_a_batch_row():
    batch = jaxfit.curve_fit(decay, X, np.stack([Y, Y[::-1]]), [1.0, 1.0, 0.0], result=True, maxfev=50)
    low, high = batch.intervals(0.9)
    assert low.shape == batch.popt.shape and (low < batch.popt).all() and (batch.popt < high).all()
    assert repr(batch).startswith("CurveFit(2 data sets x 3 parameters (a, k, c): ")
    assert str(batch.status_of(0)) == "converged" and f"{jaxfit.Status.STALLED}" == "stalled"
    single = jaxfit.curve_fit(decay, X, Y, [1.0, 1.0, 0.0], result=True)
    assert batch.report(0).split("[[Variables]]")[1] == single.report().split("[[Variables]]")[1]
    with pytest.raises(ValueError, match="give the row"):
        batch.report()


def test_to_pandas_has_one_row_per_data_set():
    pd = pytest.importorskip("pandas")
    batch = jaxfit.curve_fit(decay, X, np.stack([Y, Y]), [1.0, 1.0, 0.0], result=True)
    frame = batch.to_pandas()
    assert isinstance(frame, pd.DataFrame) and len(frame) == 2
    assert list(frame.columns[:6]) == ["a", "a_stderr", "k", "k_stderr", "c", "c_stderr"]
    assert (frame["status"] == "converged").all()
