"""Bounds and losses against scipy in float64: ``least_squares(method="trf", bounds=...)``,
its robust losses, and a ``minimize`` of the Poisson deviance; the covariance against
the inverse Fisher information computed in NumPy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import least_squares, minimize

import jaxfit

TIGHT = {"xtol": 1e-15, "ftol": 1e-15, "gtol": 1e-15, "method": "trf"}
X = np.linspace(0, 4, 40)


def decay(x, a, k, c):
    return a * jnp.exp(-k * x) + c


def decay_np(p, x=X):
    return p[0] * np.exp(-p[1] * x) + p[2]


def noisy(seed=0, outliers=False):
    rng = np.random.default_rng(seed)
    y = decay_np([3.0, 1.3, 0.5]) + 0.05 * rng.standard_normal(X.size)
    if outliers:
        y[[5, 17, 30]] += [2.0, -1.5, 3.0]
    return y


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize(
    "lower, upper, on_bound",
    [
        ((-np.inf, 0.0, -np.inf), (np.inf, 5.0, np.inf), []),  # optimum inside
        ((0.0, 0.0, 0.6), (np.inf, np.inf, 2.0), [2]),  # c held on its lower bound
        ((0.0, 1.0, -1.0), (2.9, 3.0, 1.0), [0]),  # a on its upper bound
    ],
)
def test_bounds_equal_scipy_trf(lower, upper, on_bound):
    y = noisy()
    p0 = [1.0, 2.0, 0.7]
    ref = least_squares(lambda p: decay_np(p) - y, p0, bounds=(lower, upper), **TIGHT)
    got = jaxfit.curve_fit(decay, X, y, p0, bounds=(lower, upper), result=True)
    assert got.status == jaxfit.Status.CONVERGED
    np.testing.assert_allclose(got.popt, ref.x, atol=1e-6)
    assert got.chisqr == pytest.approx(2 * ref.cost, rel=1e-9)
    assert list(np.flatnonzero(got.at_bound)) == on_bound
    for i in on_bound:  # exactly on it, as scipy's active set says
        assert got.popt[i] in (lower[i], upper[i]) and ref.active_mask[i] != 0


def test_a_batch_with_per_fit_bounds_equals_its_per_fit_references():
    rng = np.random.default_rng(3)
    G = 1000
    Y = decay_np([3.0, 1.3, 0.5])[None, :] + 0.05 * rng.standard_normal((G, X.size))
    upper = np.column_stack([rng.uniform(2.8, 3.3, G), np.full(G, np.inf), rng.uniform(0.45, 0.6, G)])
    lower = np.column_stack([np.zeros(G), np.zeros(G), np.full(G, -np.inf)])
    p0 = np.array([1.0, 2.0, 0.3])
    got = jaxfit.curve_fit(decay, X, Y, p0, bounds=(lower, upper), result=True)
    assert (got.status == jaxfit.Status.CONVERGED).all()
    assert 50 < got.at_bound.sum() < 2 * G  # some fits end on a bound, most not on both
    for g in range(G):
        ref = least_squares(lambda p, y=Y[g]: decay_np(p) - y, p0, bounds=(lower[g], upper[g]), **TIGHT)
        np.testing.assert_allclose(got.popt[g], ref.x, atol=1e-6, err_msg=f"fit {g}")
        assert got.chisqr[g] == pytest.approx(2 * ref.cost, rel=1e-9)
    # the same fits whatever the block size
    again = jaxfit.curve_fit(decay, X, Y, p0, bounds=(lower, upper), result=True, block_size=256)
    np.testing.assert_array_equal(again.popt, got.popt)
    if len(jax.devices()) > 1:  # and whatever the device count
        one = jaxfit.curve_fit(decay, X, Y, p0, bounds=(lower, upper), result=True, devices=1)
        np.testing.assert_array_equal(one.popt, got.popt)


@pytest.mark.parametrize("loss", ["soft_l1", "huber", "cauchy", "arctan"])
@pytest.mark.parametrize("f_scale", [0.1, 1.0])
def test_robust_losses_equal_scipy(loss, f_scale):
    y = noisy(outliers=True)
    p0 = [1.0, 1.0, 1.0]  # scipy's default start
    ref = least_squares(lambda p: decay_np(p) - y, p0, loss=loss, f_scale=f_scale, **TIGHT)
    got = jaxfit.curve_fit(decay, X, y, p0, loss=loss, f_scale=f_scale, result=True)
    assert got.status == jaxfit.Status.CONVERGED
    np.testing.assert_allclose(got.popt, ref.x, atol=1e-6)
    assert got.chisqr == pytest.approx(2 * ref.cost, rel=1e-8)  # twice scipy's cost
    # least squares would be pulled by the outliers; the robust fit much less
    plain = jaxfit.curve_fit(decay, X, y, p0)[0]
    assert abs(got.popt[2] - 0.5) < abs(plain[2] - 0.5)


def test_robust_covariance_equals_curve_fits():
    from scipy.optimize import curve_fit as scipy_curve_fit

    y = noisy(outliers=True)
    popt, pcov = scipy_curve_fit(decay_np_args, X, y, [2.5, 1.0, 0.4], loss="soft_l1", f_scale=0.3, **TIGHT)
    got, cov = jaxfit.curve_fit(decay, X, y, [2.5, 1.0, 0.4], loss="soft_l1", f_scale=0.3)
    np.testing.assert_allclose(got, popt, atol=1e-6)
    np.testing.assert_allclose(cov, pcov, rtol=1e-5)


def test_a_model_with_arctan_equals_scipy():
    # XLA:CPU once computed atan wrongly inside the fit loops (at 512-bit vectors)
    x = np.linspace(-2, 5, 40)
    y = 1.5 * np.arctan(2.0 * (x - 1.0)) + 0.3 + 0.02 * np.cos(5 * x)

    def f(x, a, b, c, d):
        return a * jnp.arctan(b * (x - c)) + d

    ref = least_squares(
        lambda p: p[0] * np.arctan(p[1] * (x - p[2])) + p[3] - y, [1.0, 1.0, 0.5, 0.0], **TIGHT
    )
    got = jaxfit.curve_fit(f, x, np.stack([y, y]), [1.0, 1.0, 0.5, 0.0])[0]
    np.testing.assert_allclose(got, np.stack([ref.x, ref.x]), atol=1e-7)


def decay_np_args(x, a, k, c):
    return decay_np([a, k, c], x)


PIX = np.stack([g.ravel() for g in np.meshgrid(np.arange(8.0), np.arange(8.0))])


def spot(p, a, x0, y0, s, b):
    return a * jnp.exp(-((p[0] - x0) ** 2 + (p[1] - y0) ** 2) / (2 * s * s)) + b


def spot_np(q):
    return q[0] * np.exp(-((PIX[0] - q[1]) ** 2 + (PIX[1] - q[2]) ** 2) / (2 * q[3] ** 2)) + q[4]


def deviance(q, d):
    m = spot_np(q)
    if (m <= 0).any():
        return np.inf
    ratio = np.where(d > 0, m / np.where(d > 0, d, 1), 1)
    return 2 * np.sum(m - d - np.where(d > 0, d * np.log(ratio), 0))


@pytest.mark.parametrize("amplitude, seed", [(50.0, 1), (200.0, 2), (500.0, 3)])
def test_poisson_equals_scipy_minimize_of_the_deviance(amplitude, seed):
    rng = np.random.default_rng(seed)
    d = rng.poisson(spot_np([amplitude, 3.6, 4.2, 1.3, 5.0])).astype(float)
    p0 = [0.8 * amplitude, 3.5, 4.0, 1.5, 3.0]
    ref = minimize(
        deviance,
        p0,
        args=(d,),
        method="Nelder-Mead",
        options={"xatol": 1e-12, "fatol": 1e-14, "maxiter": 40000, "maxfev": 80000},
    )
    ref = minimize(deviance, ref.x, args=(d,), method="BFGS", options={"gtol": 1e-10})
    got = jaxfit.curve_fit(spot, PIX, d, p0, loss="poisson", result=True)
    assert got.status == jaxfit.Status.CONVERGED
    np.testing.assert_allclose(got.popt, ref.x, rtol=1e-5)
    assert got.chisqr == pytest.approx(deviance(ref.x, d), rel=1e-9)
    # covariance: the inverse Fisher information (JᵀWJ)⁻¹, W = 1/m, in NumPy
    m, h = spot_np(got.popt), 1e-6 * np.maximum(np.abs(got.popt), 1)
    J = np.stack(
        [
            (spot_np(got.popt + h[i] * np.eye(5)[i]) - spot_np(got.popt - h[i] * np.eye(5)[i])) / (2 * h[i])
            for i in range(5)
        ],
        1,
    )
    want = np.linalg.inv(J.T @ (J / m[:, None]))
    scale = np.sqrt(
        np.outer(np.diag(want), np.diag(want))
    )  # an entry's error is relative to its row and column
    assert np.all(np.abs(got.pcov - want) <= 1e-6 * np.abs(want) + 1e-9 * scale), got.pcov - want


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"bounds": ([0, 2, 0], [1, 1, 1])}, "bounds: k: lower 2 must be below upper 1"),
        (
            {"bounds": ([0, 0, 0], [0.5, 9, 9])},
            "Initial guess is outside of provided bounds: p0: a = 1 is outside [0, 0.5]",
        ),
        ({"bounds": ([0, 0], [1, 1])}, "bounds: the lower bounds have shape (2,)"),
        ({"loss": "poisson", "ydata": -np.ones(40)}, "ydata: counts must be >= 0"),
        ({"loss": "poisson", "p0": [-1.0, 1.0, -1.0]}, "p0: the model is -2 at point 0 of data set 0"),
        ({"loss": "poisson", "sigma": np.ones(40)}, "sigma: a Poisson fit weighs each count by the model"),
        ({"loss": "huber", "f_scale": 0.0}, "f_scale: must be > 0"),
        ({"loss": "l2"}, "loss: 'l2' is not allowed"),
    ],
)
def test_bad_bounds_and_losses_are_one_line(kwargs, message):
    args = {"ydata": noisy(), "p0": [1.0, 1.0, 1.0], **kwargs}
    with pytest.raises(ValueError) as err:
        jaxfit.curve_fit(decay, X, **args)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_config_bound_holds_gradient_descent_and_lm_on_it():
    # the seed's b3 minimum is 2.609 (closed form: the mean residual); a bound at 2 holds it there
    for optimizer in ("sgd", "lm"):
        r = jaxfit.fit({"train": {"optimizer": optimizer}, "bounds": {"b3": [None, 2.0]}})
        assert (r.params["b3"], r.status, r.at_bound) == (2.0, jaxfit.Status.CONVERGED, {"b3": True})
    free = jaxfit.fit({"bounds": {"b3": [None, 5.0]}})
    assert free.params["b3"] == jaxfit.fit(None).params["b3"] and free.at_bound == {"b3": False}
    batch = jaxfit.fit_batch({"bounds": {"b3": [0, 2.0]}, "batch": {"init": {"b3": {"linspace": [0, 2, 5]}}}})
    assert (batch.params["b3"] == 2.0).all() and batch.at_bound["b3"].all()


def test_a_config_loss_equals_curve_fit(tmp_path):
    y = noisy(outliers=True)
    module = tmp_path / "decay_model.py"
    module.write_text(
        "import jax.numpy as jnp\n\ndef predict(x, a=2.5, k=1.0, c=0.4):\n    return a * jnp.exp(-k * x) + c\n"
    )
    cfg = {
        "model": {"function": f"{module}:predict"},
        "data": {"x": X.tolist(), "y": y.tolist()},
        "train": {"optimizer": "lm", "loss": "cauchy", "f_scale": 0.3, "tolerance": 1e-10, "max_steps": 200},
        "precision": "float64",
    }
    r = jaxfit.fit(cfg)
    popt = jaxfit.curve_fit(decay, X, y, [2.5, 1.0, 0.4], loss="cauchy", f_scale=0.3)[0]
    np.testing.assert_allclose([r.params[n] for n in ("a", "k", "c")], popt, atol=1e-8)


@pytest.mark.parametrize(
    "sets, message",
    [
        (["bounds.b3=[2,1]"], "bounds.b3: lower 2.0 must be below upper 1.0"),
        (["bounds.w1=[0,1]"], "bounds.w1: 'w1' is not trained"),
        (["bounds.zz=[0,1]"], "bounds.zz: unknown parameter 'zz'"),
        (["bounds.b3=[1,2]", "params.b3=3"], "bounds.b3: params: start 3 is outside [1.0, 2.0]"),
        (["train.loss=poisson", "data.y=[0,-1,0]"], "data.y: counts must be >= 0"),
        (["train.loss=huber", "train.f_scale=0"], "train.f_scale: input should be greater than 0"),
    ],
)
def test_bad_bounds_and_losses_through_the_cli(sets, message):
    import subprocess
    import sys

    args = [a for s in sets for a in ("--set", s)]
    out = subprocess.run(
        [sys.executable, "-m", "jaxfit", *args, "--no-cache"], capture_output=True, text=True
    )
    assert out.returncode == 2 and out.stdout == ""
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_bounds_per_data_set_from_the_starts_table(tmp_path):
    rng = np.random.default_rng(5)
    rows, truth = ["set,x,y"], {"s0": 0.5, "s1": 0.2, "s2": 0.9}
    for name, c in truth.items():
        for x, y in zip(X, decay_np([3.0, 1.3, c]) + 0.05 * rng.standard_normal(X.size)):
            rows.append(f"{name},{x},{y}")
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    # c.upper per data set (empty: none); k bounded for all by the config
    (tmp_path / "starts.csv").write_text("set,c,c.upper\ns0,0.3,0.4\ns1,0.1,\ns2,0.5,0.7\n")
    (tmp_path / "decay_model.py").write_text(
        "import jax.numpy as jnp\n\ndef predict(x, a=1.0, k=1.0, c=0.0):\n    return a * jnp.exp(-k * x) + c\n"
    )
    cfg = {
        "model": {"function": f"{tmp_path}/decay_model.py:predict"},
        "data": {"file": str(tmp_path / "data.csv"), "x": "x", "y": "y", "group": "set"},
        "starts": {"file": str(tmp_path / "starts.csv"), "group": "set"},
        "bounds": {"k": [0, 1.35]},
        "train": {"optimizer": "lm", "tolerance": 1e-10, "max_steps": 200},
        "precision": "float64",
    }
    got = jaxfit.fit_batch(cfg)
    Y = np.array([[float(r.split(",")[2]) for r in rows[1:] if r.startswith(s)] for s in truth])
    lower = np.array([[-np.inf, 0, -np.inf]] * 3)
    upper = np.array([[np.inf, 1.35, 0.4], [np.inf, 1.35, np.inf], [np.inf, 1.35, 0.7]])
    p0 = np.array([[1.0, 1.0, 0.3], [1.0, 1.0, 0.1], [1.0, 1.0, 0.5]])
    ref = jaxfit.curve_fit(decay, X, Y, p0, bounds=(lower, upper), result=True)
    np.testing.assert_allclose(np.stack([got.params[n] for n in "akc"], -1), ref.popt, atol=1e-8)
    assert got.at_bound["c"].tolist() == ref.at_bound[:, 2].tolist() == [True, False, True]
    bad = tmp_path / "bad.csv"
    bad.write_text("set,c,c.upper\ns0,0.3,0.2\ns1,0.1,\ns2,0.5,0.7\n")
    with pytest.raises(jaxfit.ConfigError, match=r"data set 's0': c: start 0.3 is outside \[-inf, 0.2\]"):
        jaxfit.load_config({**cfg, "starts": {"file": str(bad), "group": "set"}})
