"""Global fits (``curve_fit(..., shared=[...])``): many data sets as one problem with
shared parameters, against scipy's ``least_squares`` on the concatenated problem."""

from __future__ import annotations

import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from conftest import run_jaxfit
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


@pytest.mark.parametrize("p0", [[1.0, 5.0, 0.0], [10.0, 0.05, 3.0], [0.1, 3.0, -2.0]])
@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_from_far_starts_a_converged_global_fit_is_at_scipys_minimum(p0, precision):
    """A rate start 6x too high or 16x too low, amplitudes and baselines far off: the fit
    says converged only where scipy's least_squares (from its own start) has its minimum."""
    x, Y, _ = _traces(G=20, seed=0)
    want, _, chisqr = _scipy(x, Y)
    fit = jaxfit.curve_fit(decay, x, Y.astype(precision), p0=p0, shared="k", precision=precision)
    assert fit.status == jaxfit.Status.CONVERGED
    rtol = 1e-9 if precision == "float64" else 1e-5
    assert fit.chisqr == pytest.approx(chisqr, rel=rtol)
    assert fit.shared[0] == pytest.approx(want[-1], rel=1e-8 if precision == "float64" else 1e-5)


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


def test_a_global_poisson_fit_equals_the_deviance_minimum_and_its_fisher_covariance():
    from scipy.optimize import minimize

    rng = np.random.default_rng(7)
    G, x = 12, np.linspace(0, 4, 30)
    a, c = rng.uniform(50, 200, G), rng.uniform(2, 8, G)
    counts = rng.poisson(a[:, None] * np.exp(-0.8 * x) + c[:, None]).astype(float)

    def parts(p):  # the concatenated problem (a_0, c_0, …, k): model and its Jacobian
        A, C, k = p[0 : 2 * G : 2], p[1 : 2 * G : 2], p[-1]
        e = np.exp(-k * x)
        m = A[:, None] * e + C[:, None]
        J = np.zeros((G, x.size, 2 * G + 1))
        for g in range(G):
            J[g, :, 2 * g], J[g, :, 2 * g + 1], J[g, :, -1] = e, 1.0, -A[g] * x * e
        return m, J

    def deviance(p):
        m, J = parts(p)
        dev = 2 * np.sum(m - counts - counts * np.log(np.where(counts > 0, m / np.maximum(counts, 1), 1)))
        return dev, 2 * np.einsum("gn,gnp->p", 1 - counts / m, J)

    p0 = np.concatenate([np.tile([100.0, 5.0], G), [0.5]])
    ref = minimize(deviance, p0, jac=True, method="BFGS", options={"gtol": 1e-10, "maxiter": 10_000})
    m, J = parts(ref.x)
    fisher = np.einsum("gnp,gn,gnq->pq", J, 1 / m, J)
    fit = jaxfit.curve_fit(
        decay, x, counts, p0=[100.0, 0.5, 5.0], shared="k", loss="poisson", precision="float64"
    )
    assert fit.status == jaxfit.Status.CONVERGED
    np.testing.assert_allclose(np.concatenate([fit.local.ravel(), fit.shared]), ref.x, rtol=1e-6)
    assert fit.chisqr == pytest.approx(ref.fun, rel=1e-9)  # the deviance
    np.testing.assert_allclose(fit.covariance(), np.linalg.inv(fisher), rtol=1e-5)  # not scaled


def test_one_device_and_four_give_the_same_global_fit():
    """The data sets split over 4 (simulated) devices, 21 of them padded to 24: the same
    fit as one device, up to the rounding of the sums over sets (float64: 1e-9, the fits stopping by xtol 1e-12)."""
    assert len(jax.local_devices()) == 4
    x, Y, sigma = _traces(G=21, seed=5, ragged=True)
    kw = dict(p0=[1.0, 0.5, 0.0], sigma=sigma, shared="k", precision="float64", nan_policy="omit")
    one = jaxfit.curve_fit(decay, x, Y, devices=1, **kw)
    four = jaxfit.curve_fit(decay, x, Y, devices=4, **kw)
    assert one.status == four.status == jaxfit.Status.CONVERGED  # steps: see the streamed test
    np.testing.assert_allclose(four.shared, one.shared, rtol=1e-9)
    np.testing.assert_allclose(four.local, one.local, rtol=1e-9)
    np.testing.assert_allclose(four.covariance(), one.covariance(), rtol=1e-8, atol=1e-16)


@pytest.mark.parametrize("upper", [np.inf, 0.7])
def test_data_sets_streamed_in_chunks_give_the_fit_of_all_at_once(upper):
    """block_size=5 on 4 devices: chunks of 8 sets (23 padded to 24), each step a pass
    over the three chunks from host memory: the same fit up to the sums' grouping (and
    with 6 chunks of 4 on one device)."""
    x, Y, sigma = _traces(G=23, seed=8, ragged=True)
    bounds = ([-np.inf, 0.0, -np.inf], [np.inf, upper, np.inf])
    kw = dict(
        p0=[1.0, 0.5, 0.0], sigma=sigma, shared="k", precision="float64", nan_policy="omit", bounds=bounds
    )
    whole = jaxfit.curve_fit(decay, x, Y, **kw)
    parts = jaxfit.curve_fit(decay, x, Y, block_size=5, **kw)
    assert (whole.chunks, parts.chunks) == (1, 3)  # 23 sets: chunks of 8, 8 and 7 (+1 padding)
    # the step count may differ: at the last steps χ² changes by its rounding, which the
    # sums' grouping decides (accepted or not), but both stop converged at the same point
    assert parts.status == whole.status == jaxfit.Status.CONVERGED
    np.testing.assert_allclose(parts.shared, whole.shared, rtol=1e-9)
    np.testing.assert_allclose(parts.local, whole.local, rtol=1e-9)
    np.testing.assert_allclose(parts.covariance(), whole.covariance(), rtol=1e-8, atol=1e-16)
    np.testing.assert_allclose(parts.chisqr_per_set, whole.chisqr_per_set, rtol=1e-9)
    assert (whole.shared[0] == 0.7) == (upper == 0.7)
    small = jaxfit.curve_fit(decay, x, Y, block_size=4, devices=1, **kw)
    assert small.chunks == 6 and small.status == jaxfit.Status.CONVERGED
    np.testing.assert_allclose(small.local, whole.local, rtol=1e-9)
    np.testing.assert_allclose(small.shared, whole.shared, rtol=1e-9)


def test_a_data_set_with_too_few_points_is_refused_in_one_line():
    x, Y, _ = _traces(G=4)
    Y[2, 1:] = np.nan  # one point left for two locals
    with pytest.raises(ValueError, match="data set 2 has 1 points, fewer than its 2 local") as err:
        jaxfit.curve_fit(decay, x, Y, p0=[1.0, 0.5, 0.0], shared="k", nan_policy="omit")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shared": ["q"]}, "'q' is not a parameter of the model"),
        ({"shared": ["a", "k", "c"]}, "leave at least one local"),
        (
            {"shared": ["k"], "bounds": (np.zeros((3, 3)), np.array([[9, 1, 9], [9, 2, 9], [9, 1, 9]]))},
            "one bound",
        ),
        ({"shared": ["k"], "starts": 4}, "many starts are not supported"),
    ],
)
def test_a_global_fit_it_cannot_do_says_why_in_one_line(kwargs, message):
    x, Y, _ = _traces(G=3)
    with pytest.raises(ValueError, match=message) as err:
        jaxfit.curve_fit(decay, x, Y, p0=[1.0, 0.5, 0.0], **kwargs)
    assert "\n" not in str(err.value)


def _config_files(tmp_path, x, Y, sigma=None):
    """A grouped CSV of ``Y`` (NaN rows left out), a model module, and a global config."""
    lines = ["trace,t,signal" + (",sd" if sigma is not None else "")]
    for g, row in enumerate(Y):
        for i in np.flatnonzero(np.isfinite(row)):
            extra = f",{float(sigma[g, i])!r}" if sigma is not None else ""
            lines.append(f"s{g:02d},{float(x[i])!r},{float(row[i])!r}{extra}")
    (tmp_path / "traces.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "decay_model.py").write_text(
        "import jax.numpy as jnp\n\ndef predict(x, a=1.0, k=0.5, c=0.0):\n    return a * jnp.exp(-k * x) + c\n"
    )
    data = {"file": "traces.csv", "x": "t", "y": "signal", "group": "trace"}
    if sigma is not None:
        data["sigma"] = "sd"
    config = {
        "model": {"function": "decay_model:predict"},
        "data": data,
        "train": {"trainable": "all", "optimizer": "lm", "max_steps": 200, "ftol": 1e-15, "xtol": 1e-15},
        "precision": "float64",
        "shared": ["k"],
    }
    path = tmp_path / "global.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_config_with_shared_equals_scipy_and_writes_both_levels(tmp_path):
    """`shared: [k]` in a config of grouped data (ragged, weighted): the run directory's
    fits.csv and result.json equal scipy's least_squares on the concatenated problem."""
    x, Y, sigma = _traces(G=9, seed=6, ragged=True)
    want, cov, chisqr = _scipy(x, Y, sigma)
    path = _config_files(tmp_path, x, Y, sigma)
    out = tmp_path / "run"
    done = run_jaxfit("--config", str(path), "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert "Global fit of 9 data sets: converged" in done.stdout and "Shared:" in done.stdout
    result = json.loads((out / "result.json").read_text())
    table = np.genfromtxt(out / "fits.csv", delimiter=",", names=True, dtype=None, encoding=None)
    assert list(table["trace"]) == [f"s{g:02d}" for g in range(9)]
    got = np.concatenate([np.stack([table["a"], table["c"]], axis=1).ravel(), [result["shared"]["k"]]])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
    err = np.sqrt(np.diag(cov))
    np.testing.assert_allclose(table["a_err"], err[0:-1:2], rtol=1e-6)
    np.testing.assert_allclose(table["c_err"], err[1:-1:2], rtol=1e-6)
    assert result["shared_err"]["k"] == pytest.approx(err[-1], rel=1e-6)
    assert result["chisqr"] == pytest.approx(chisqr, rel=1e-9)
    assert result["dof"] == np.isfinite(Y).sum() - (2 * 9 + 1)
    assert (table["points"] == np.isfinite(Y).sum(axis=1)).all()
    assert set(os.listdir(out)) == {"config.yaml", "fits.csv", "result.json", "env.json"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data": {"x": [0, 1, 2, 3], "y": [1, 0.6, 0.4, 0.3]}}, "shared: a global fit needs grouped data"),
        ({"shared": ["q"]}, "shared: 'q' is not one of the trained parameters"),
        ({"shared": ["a", "k", "c"]}, "shared: leave at least one trained parameter local"),
        ({"train": {"trainable": "all", "optimizer": "adam"}}, "train.optimizer: a global fit"),
        ({"batch": {"count": 2}}, "batch: a global fit (shared) is one fit"),
    ],
)
def test_a_global_config_it_cannot_run_is_one_error_line(tmp_path, change, message):
    x, Y, _ = _traces(G=3)
    path = _config_files(tmp_path, x, Y)
    config = yaml.safe_load(path.read_text())
    config.update(change)
    path.write_text(yaml.safe_dump(config))
    field, text = message.split(": ", 1)  # the error names the field and its line
    with pytest.raises(
        jaxfit.ConfigError, match=rf"{re.escape(field)} \(line \d+\): {re.escape(text)}"
    ) as err:
        jaxfit.load_config(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--resume", "--resume: a global fit (shared:) is one fit; run it whole"),
        ("--plot", "--plot: a global fit (shared:) draws no pictures yet"),
    ],
)
def test_a_global_config_refuses_what_it_cannot_do_with_one_line_and_exit_2(tmp_path, flag, message):
    x, Y, _ = _traces(G=3)
    path = _config_files(tmp_path, x, Y)
    extra = [flag, str(tmp_path / "pics")] if flag == "--plot" else [flag]
    done = run_jaxfit("--config", str(path), "--output", str(tmp_path / "run"), *extra)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"jaxfit: error: {message}")


def test_fit_global_takes_the_config_and_fit_batch_refuses_it_in_one_line(tmp_path):
    """A config with shared: is one problem: jaxfit.fit_global fits it (= curve_fit with
    shared= on the same data sets); fit_batch and fit refuse it rather than fitting the
    data sets independently."""
    x, Y, _ = _traces(G=5, seed=9)
    path = _config_files(tmp_path, x, Y)
    fit = jaxfit.fit_global(path)
    kw = dict(shared="k", precision="float64", ftol=1e-15, xtol=1e-15)  # the config's stopping rules
    ref = jaxfit.curve_fit(decay, x, Y, p0=[1.0, 0.5, 0.0], **kw)
    np.testing.assert_allclose(fit.shared, ref.shared, rtol=1e-9)
    np.testing.assert_allclose(fit.local, ref.local, rtol=1e-9)
    for front_door in (jaxfit.fit_batch, jaxfit.fit):
        with pytest.raises(jaxfit.ConfigError, match=r"^shared: a global fit is one problem") as err:
            front_door(path)
        assert "\n" not in str(err.value)
