"""Uncertainties of every fit against scipy's curve_fit (float64), closed forms and
NIST's certified standard deviations; weights (data.sigma) through every path."""

import json

import jax
import numpy as np
import pytest
import reference as ref
from conftest import run_jaxfit
from scipy import stats as scipy_stats
from scipy.optimize import curve_fit

import jaxfit
from jaxfit.output.student import t_quantile

MODELS = {
    "decay": (
        "import jax.numpy as jnp\ndef predict(x, a, k, c):\n    return a * jnp.exp(-k * x) + c\n",
        lambda x, a, k, c: a * np.exp(-k * x) + c,
        {"a": 2.0, "k": 0.5, "c": 0.5},
    ),
    "logistic4": (
        "import jax\ndef predict(x, bottom, top, log_ec50, slope):\n"
        "    return bottom + (top - bottom) * jax.nn.sigmoid(slope * (x - log_ec50))\n",
        lambda x, bottom, top, e, s: bottom + (top - bottom) / (1 + np.exp(-s * (x - e))),
        {"bottom": 0.1, "top": 0.9, "log_ec50": -1.0, "slope": 1.5},
    ),
    "line": (
        "def predict(x, a, b):\n    return a + b * x\n",
        lambda x, a, b: a + b * x,
        {"a": 0.0, "b": 1.0},
    ),
}


def _write(tmp_path, name):
    (tmp_path / f"{name}.py").write_text(MODELS[name][0])
    return f"{tmp_path / name}.py:predict"


def _data(name, n=25, seed=0):
    rng = np.random.default_rng(seed)
    x = np.linspace(-3, 3, n) if name == "logistic4" else np.linspace(0, 6, n)
    truth = {"decay": (3.0, 0.7, 0.8), "logistic4": (0.05, 0.95, -0.8, 2.0), "line": (0.3, 1.7)}[name]
    sigma = 0.02 + 0.05 * rng.random(n)
    y = MODELS[name][1](x, *truth) + sigma * rng.standard_normal(n)
    return x, y, sigma


def assert_covariance_close(got, want, rtol=1e-6):
    """Each entry within ``rtol`` of its scale ``sqrt(C_ii C_jj)`` (an off-diagonal entry
    near zero has no relative precision of its own)."""
    d = np.sqrt(np.diag(want))
    np.testing.assert_array_less(np.abs(got - want) / np.outer(d, d), rtol)
    np.testing.assert_allclose(np.diag(got), np.diag(want), rtol=rtol)


def _fit64(config):
    with jax.enable_x64(True):
        return jaxfit.fit({**config, "precision": "float64"})


LM = {"trainable": "all", "optimizer": "lm", "tolerance": 1e-13, "max_steps": 500}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("absolute", [False, True])
def test_covariance_equals_scipy_curve_fit(tmp_path, name, weighted, absolute):
    x, y, sigma = _data(name)
    start = MODELS[name][2]
    data = {"x": x.tolist(), "y": y.tolist(), **({"sigma": sigma.tolist()} if weighted else {})}
    got = _fit64(
        {
            "model": {"function": _write(tmp_path, name)},
            "data": data,
            "params": start,
            "train": {**LM, "absolute_sigma": absolute},
        }
    )
    popt, pcov = curve_fit(
        MODELS[name][1],
        x,
        y,
        p0=list(start.values()),
        sigma=sigma if weighted else None,
        absolute_sigma=absolute,
        xtol=1e-15,
        ftol=1e-15,
    )
    assert got.status.label == "converged" and not got.singular
    names = list(start)
    np.testing.assert_allclose([got.params[n] for n in names], popt, rtol=1e-6, atol=1e-8)
    assert_covariance_close(got.covariance, pcov)
    np.testing.assert_allclose([got.stderr[n] for n in names], np.sqrt(np.diag(pcov)), rtol=1e-6)
    r = (y - MODELS[name][1](x, *popt)) / (sigma if weighted else 1)
    assert got.chisqr == pytest.approx(np.sum(r * r), rel=1e-9)
    n, k = len(x), len(names)
    assert got.dof == n - k and got.redchi == pytest.approx(got.chisqr / (n - k), rel=1e-12)
    assert got.aic == pytest.approx(n * np.log(got.chisqr / n) + 2 * k, rel=1e-9)
    assert got.bic == pytest.approx(n * np.log(got.chisqr / n) + k * np.log(n), rel=1e-9)
    d = np.sqrt(np.diag(pcov))
    np.testing.assert_allclose(got.correlation, pcov / np.outer(d, d), atol=1e-6)


def test_straight_line_standard_errors_equal_the_closed_form(tmp_path):
    x, y, _ = _data("line", n=40, seed=3)
    config = {"model": {"function": _write(tmp_path, "line")}, "data": {"x": x.tolist(), "y": y.tolist()}}
    got = _fit64({**config, "params": {"a": 0.0, "b": 1.0}, "train": LM})
    b, a = np.polyfit(x, y, 1)
    n = len(x)
    s2 = np.sum((y - a - b * x) ** 2) / (n - 2)
    sxx = np.sum((x - x.mean()) ** 2)
    assert got.stderr["b"] == pytest.approx(np.sqrt(s2 / sxx), rel=1e-9)
    assert got.stderr["a"] == pytest.approx(np.sqrt(s2 * (1 / n + x.mean() ** 2 / sxx)), rel=1e-9)
    r2 = 1 - np.sum((y - a - b * x) ** 2) / np.sum((y - y.mean()) ** 2)
    assert got.rsquared == pytest.approx(r2, rel=1e-12)
    t = scipy_stats.t.ppf(0.975, n - 2)
    lo, hi = got.intervals["b"]
    assert (lo, hi) == pytest.approx((b - t * np.sqrt(s2 / sxx), b + t * np.sqrt(s2 / sxx)), rel=1e-9)


def test_a_network_of_the_family_equals_curve_fit():
    # one softplus node fitted to points of a known curve with noise
    rng = np.random.default_rng(1)
    x = np.linspace(-3, 3, 60)
    truth = {"w1": 1.5, "b1": -0.3, "w2": 2.0, "b2": 0.4}
    y = ref.net_predict(truth, 1, "softplus", x) + 0.05 * rng.standard_normal(60)
    start = {"w1": 1.2, "b1": 0.0, "w2": 1.5, "b2": 0.0}
    got = _fit64(
        {"model": {"hidden": 1}, "data": {"x": x.tolist(), "y": y.tolist()}, "params": start, "train": LM}
    )

    def f(x, w1, b1, w2, b2):
        return ref.net_predict({"w1": w1, "b1": b1, "w2": w2, "b2": b2}, 1, "softplus", x)

    popt, pcov = curve_fit(f, x, y, p0=list(start.values()), xtol=1e-15, ftol=1e-15)
    np.testing.assert_allclose([got.params[n] for n in start], popt, rtol=1e-7)
    assert_covariance_close(got.covariance, pcov)


# NIST StRD nonlinear regression, certified values (lower difficulty)
MISRA1A = (
    "def predict(x, b1=500.0, b2=1.0e-4):\n    import jax.numpy as jnp\n    return b1 * (1 - jnp.exp(-b2 * x))\n",
    [77.6, 114.9, 141.1, 190.8, 239.9, 289.0, 332.8, 378.4, 434.8, 477.3, 536.8, 593.1, 689.1, 760.0],
    [10.07, 14.73, 17.94, 23.93, 29.61, 35.18, 40.02, 44.82, 50.76, 55.05, 61.01, 66.40, 75.47, 81.78],
    {"b1": (2.3894212918e02, 2.7070075241e00), "b2": (5.5015643181e-04, 7.2668688436e-06)},
    1.2455138894e-01,
)
DANWOOD = (
    "def predict(x, b1=1.0, b2=5.0):\n    return b1 * x**b2\n",
    [1.309, 1.471, 1.490, 1.565, 1.611, 1.680],
    [2.138, 3.421, 3.597, 4.340, 4.882, 5.660],
    {"b1": (7.6886226176e-01, 1.8281973860e-02), "b2": (3.8604055871e00, 5.1726610913e-02)},
    4.3173084083e-03,
)


@pytest.mark.parametrize("problem", [MISRA1A, DANWOOD], ids=["Misra1a", "DanWood"])
def test_nist_certified_standard_deviations(tmp_path, problem):
    source, x, y, certified, rss = problem
    (tmp_path / "nist.py").write_text(source)
    got = _fit64(
        {"model": {"function": f"{tmp_path / 'nist.py'}:predict"}, "data": {"x": x, "y": y}, "train": LM}
    )
    assert got.chisqr == pytest.approx(rss, rel=1e-8)
    for name, (value, sd) in certified.items():
        assert got.params[name] == pytest.approx(value, rel=1e-7)
        assert got.stderr[name] == pytest.approx(sd, rel=1e-6)


def test_the_seeds_all_seven_fit_is_flagged_with_infinite_errors():
    got = jaxfit.fit("configs/all_params.yaml")
    assert got.singular and got.dof == 3 - 7
    assert all(np.isinf(v) for v in got.stderr.values())
    assert np.isinf(got.covariance).all()


def test_a_parameter_without_effect_is_flagged(tmp_path):
    (tmp_path / "m.py").write_text("def predict(x, a, b):\n    return a * x + 0 * b\n")
    data = {"x": [0.0, 1.0, 2.0, 3.0], "y": [0.1, 1.0, 2.1, 2.9]}
    model = {"function": f"{tmp_path / 'm.py'}:predict"}
    got = _fit64({"model": model, "data": data, "params": {"a": 1.0, "b": 0.0}, "train": LM})
    assert got.singular and np.isinf(got.stderr["a"])


def test_grouped_batch_of_1000_equals_a_curve_fit_per_data_set(tmp_path):
    rng = np.random.default_rng(7)
    groups, n = 1000, 12
    x = np.tile(np.linspace(0, 5, n), groups)
    a = rng.uniform(1, 4, groups).repeat(n)
    k = rng.uniform(0.3, 1.2, groups).repeat(n)
    sigma = rng.uniform(0.01, 0.05, groups * n)
    y = a * np.exp(-k * x) + 0.5 + sigma * rng.standard_normal(groups * n)
    label = np.repeat([f"g{i}" for i in range(groups)], n)
    rows = "\n".join(f"{g},{u:.17g},{v:.17g},{s:.17g}" for g, u, v, s in zip(label, x, y, sigma))
    (tmp_path / "d.csv").write_text("id,x,y,s\n" + rows + "\n")
    config = {
        "model": {"function": _write(tmp_path, "decay")},
        "data": {"file": str(tmp_path / "d.csv"), "group": "id", "sigma": "s"},
        "params": {"a": 2.0, "k": 0.6, "c": 0.4},
        "train": LM,
        "precision": "float64",
        "report": {"covariance": True},
    }
    with jax.enable_x64(True):
        got = jaxfit.fit_batch(config)
    assert got.fits == groups and got.covariance.shape == (groups, 3, 3)
    worst = 0.0
    for g in range(groups):
        rows = slice(g * n, (g + 1) * n)
        popt, pcov = curve_fit(
            MODELS["decay"][1],
            x[rows],
            y[rows],
            p0=[2.0, 0.6, 0.4],
            sigma=sigma[rows],
            xtol=1e-15,
            ftol=1e-15,
        )
        np.testing.assert_allclose([got.params[p][g] for p in "akc"], popt, rtol=1e-6)
        d = np.sqrt(np.diag(pcov))
        worst = max(worst, np.max(np.abs(got.covariance[g] - pcov) / np.outer(d, d)))
        np.testing.assert_allclose([got.stderr[p][g] for p in "akc"], np.sqrt(np.diag(pcov)), rtol=1e-6)
    assert worst < 1e-6
    assert (got.dof == n - 3).all() and not got.singular.any()


def test_batch_statistics_equal_the_single_fits_and_skip_the_covariance_by_default(tmp_path):
    x, y, _ = _data("decay")
    base = {
        "model": {"function": _write(tmp_path, "decay")},
        "data": {"x": x.tolist(), "y": y.tolist(), "sigma": 0.05},
        "params": MODELS["decay"][2],
        "train": LM,
    }
    batch = _fit64_batch({**base, "batch": {"init": {"a": {"values": [1.0, 2.0, 4.0]}}}})
    assert batch.covariance is None
    for i, a in enumerate([1.0, 2.0, 4.0]):
        one = _fit64({**base, "params": {"a": a, "k": 0.5, "c": 0.5}})
        assert batch.stderr["k"][i] == pytest.approx(one.stderr["k"], rel=1e-9)
        assert batch.chisqr[i] == pytest.approx(one.chisqr, rel=1e-12)
        assert batch.aic[i] == pytest.approx(one.aic, rel=1e-12)


def _fit64_batch(config):
    with jax.enable_x64(True):
        return jaxfit.fit_batch({**config, "precision": "float64"})


def test_one_sigma_for_every_point_scales_chisqr_but_not_the_relative_covariance(tmp_path):
    x, y, _ = _data("decay")
    model = {"function": _write(tmp_path, "decay")}
    base = {
        "model": model,
        "data": {"x": x.tolist(), "y": y.tolist()},
        "params": MODELS["decay"][2],
        "train": LM,
    }
    plain = _fit64(base)
    weighted = _fit64({**base, "data": {**base["data"], "sigma": 0.1}})
    assert weighted.chisqr == pytest.approx(plain.chisqr / 0.01, rel=1e-9)
    np.testing.assert_allclose(weighted.covariance, plain.covariance, rtol=1e-7)


def test_student_t_quantiles_equal_scipy():
    for dof in [1, 2, 3, 7, 30, 1000]:
        for p in [0.6, 0.975, 0.995, 0.9999]:
            assert float(t_quantile(p, dof)) == pytest.approx(scipy_stats.t.ppf(p, dof), rel=1e-11)
    assert np.isnan(t_quantile(0.975, 0))


def test_the_confidence_band_equals_numpy_finite_differences(tmp_path):
    from jaxfit.core.model import Function
    from jaxfit.core.stats import band

    x, y, _ = _data("decay")
    model = {"function": _write(tmp_path, "decay")}
    got = _fit64(
        {
            "model": model,
            "data": {"x": x.tolist(), "y": y.tolist()},
            "params": MODELS["decay"][2],
            "train": LM,
        }
    )
    f = MODELS["decay"][1]
    p = np.array([got.params[n] for n in "akc"])
    grid = np.linspace(0, 6, 13)
    h = 1e-6
    G = np.stack([(f(grid, *(p + h * e)) - f(grid, *(p - h * e))) / (2 * h) for e in np.eye(3)], axis=-1)
    want = np.sqrt(np.einsum("ni,ij,nj->n", G, got.covariance, G))
    with jax.enable_x64(True):
        fn = jaxfit.load_config({"model": model, "params": MODELS["decay"][2]}).core_model
        assert isinstance(fn, Function)
        have = np.asarray(band(fn, got.params, ("a", "k", "c"), got.covariance, grid))
    np.testing.assert_allclose(have, want, rtol=1e-6)


def test_json_and_text_report_the_errors():
    proc = run_jaxfit("--config", "configs/b3.yaml", "--format", "json", "--no-cache")
    out = json.loads(proc.stdout)
    assert out["stderr"]["b3"] > 0 and out["dof"] == 2 and len(out["covariance"]) == 1
    lo, hi = out["intervals"]["b3"]
    assert lo < out["params"]["b3"] < hi
    text = run_jaxfit("--config", "configs/b3.yaml", "--no-cache").stdout
    assert "95% interval" in text and "reduced chi-square" in text and "± 0.00324" in text


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("data.sigma=0", "data.sigma"),
        ("data.sigma=[1, 1]", "as many values as y"),
        ("data.sigma=[1, -1, 1]", "data.sigma.1"),
        ("data.sigma=.nan", "data.sigma"),
        ("report.confidence=1.5", "report.confidence"),
        ("report.confidence=0", "report.confidence"),
        ("data.sigma=s", "no file"),
    ],
)
def test_bad_sigma_or_confidence_is_one_line_and_nothing_is_written(tmp_path, setting, message):
    out = tmp_path / "run"
    proc = run_jaxfit("--config", "configs/b3.yaml", "--set", setting, "--output", str(out), "--no-cache")
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr
    assert not out.exists()


def test_bad_sigma_column_is_one_line(tmp_path):
    (tmp_path / "d.csv").write_text("x,y,s\n0,1,0.1\n1,2,0\n2,3,0.1\n")
    (tmp_path / "c.yaml").write_text("data: {file: d.csv, sigma: s}\ntrain: {trainable: all}\n")
    proc = run_jaxfit("--config", str(tmp_path / "c.yaml"), "--no-cache")
    assert proc.returncode == 2 and "row 3, column 's': sigma must be > 0" in proc.stderr
    (tmp_path / "c.yaml").write_text("data: {file: d.csv, sigma: missing}\n")
    proc = run_jaxfit("--config", str(tmp_path / "c.yaml"), "--no-cache")
    assert proc.returncode == 2 and "no column 'missing'" in proc.stderr


def test_a_run_directory_holds_the_errors_and_the_covariance_when_asked(tmp_path):
    out = tmp_path / "run"
    proc = run_jaxfit(
        "--config",
        "configs/dose_response.yaml",
        "--set",
        "report.covariance=true",
        "--output",
        str(out),
        "-q",
    )
    assert proc.returncode == 0, proc.stderr
    header = (out / "fits.csv").read_text().splitlines()[0].split(",")
    assert {"stderr_log_ec50", "loss", "dof", "redchi", "aic", "bic", "rsquared", "singular"} <= set(header)
    # least squares: the loss is χ² (one column, not two); an lm fit has no learning rate
    assert "chisqr" not in header and "learning_rate" not in header
    with np.load(out / "fits.npz") as fits:
        assert fits["covariance"].shape == (5, 4, 4)
        err = fits["stderr_log_ec50"]
        np.testing.assert_allclose(np.sqrt(fits["covariance"][:, 2, 2]), err, rtol=1e-6)
    summary = json.loads((out / "summary.json").read_text())
    assert all(g["stderr"]["log_ec50"] > 0 for g in summary["per_group"])


def test_a_batch_may_skip_its_statistics():
    config = {"batch": {"init": {"b3": {"values": [0.0, 1.0]}}}, "report": {"statistics": False}}
    r = jaxfit.fit_batch(config)
    assert r.dof is None and r.stderr == {} and r.status_counts()["converged"] == 2
    assert "stderr" not in r.fit_row(0) and jaxfit.fit_batch(config, statistics=True).dof is None
    assert jaxfit.fit_batch({**config, "report": {}}).dof.tolist() == [2, 2]


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_a_ragged_weighted_batchs_chisqr_dof_and_rsquared_equal_numpy(tmp_path, precision):
    """χ² (the loss), dof and R² of a batch follow on the host from each fit's loss and
    its data set: ragged sets (padded and masked), a NaN point left out, σ per point —
    each equals float64 NumPy at that fit's own parameters; so do the standard errors
    (float32: from the normal equations the fit carries, no pass over its data)."""
    rng = np.random.default_rng(3)
    rows, sets = ["set,x,y,s"], {}
    for g, n in enumerate([7, 19, 12, 25]):
        x = np.linspace(0, 6, n)
        s = 0.02 + 0.05 * rng.random(n)
        y = MODELS["decay"][1](x, 3.0 - 0.3 * g, 0.7, 0.8) + s * rng.standard_normal(n)
        if g == 2:
            y[4] = np.nan  # omitted, as scipy's nan_policy="omit"
        sets[f"g{g}"] = (x, y, s)
        rows += [f"g{g},{a},{b},{c}" for a, b, c in zip(x, y, s)]
    (tmp_path / "sets.csv").write_text("\n".join(rows) + "\n")
    config = {
        "model": {"function": _write(tmp_path, "decay")},
        "data": {"file": str(tmp_path / "sets.csv"), "x": "x", "y": "y", "sigma": "s", "group": "set"}
        | {"nan_policy": "omit"},
        "params": MODELS["decay"][2],
        "train": LM,
        "precision": precision,
    }
    with jax.enable_x64(precision == "float64"):
        got = jaxfit.fit_batch(config)
    assert (got.status == jaxfit.Status.CONVERGED).all()  # from the model's rough defaults
    tol = 1e-9 if precision == "float64" else 2e-4
    for i, label in enumerate(got.group):
        x, y, s = sets[str(label)]
        real = ~np.isnan(y)
        p = [float(got.params[name][i]) for name in "akc"]
        r = (y[real] - MODELS["decay"][1](x[real], *p)) / s[real]
        w = 1 / s[real] ** 2
        mean = np.sum(w * y[real]) / np.sum(w)
        chisqr = np.sum(r * r)
        assert got.chisqr[i] == pytest.approx(chisqr, rel=tol)
        assert got.dof[i] == real.sum() - 3
        assert got.rsquared[i] == pytest.approx(1 - chisqr / np.sum(w * (y[real] - mean) ** 2), rel=tol)
        assert got.redchi[i] == pytest.approx(chisqr / (real.sum() - 3), rel=tol)
        a, k, _ = p
        e = np.exp(-k * x[real])
        J = np.stack([e, -a * x[real] * e, np.ones_like(e)], axis=1) / s[real][:, None]
        stderr = np.sqrt(np.diag(np.linalg.inv(J.T @ J)) * chisqr / (real.sum() - 3))
        got_stderr = [float(got.stderr[name][i]) for name in "akc"]
        assert got_stderr == pytest.approx(stderr, rel=1e-9 if precision == "float64" else 2e-3)
    assert got.dof.dtype == np.int32 and got.rsquared.dtype == np.dtype(precision)
