"""Intervals beyond the linear approximation, for every fit of a batch: profile
likelihood against lmfit's ``conf_interval`` and closed forms, the bootstrap, and the
prediction band against the linear model's closed form."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import erf

import jaxfit
from jaxfit.run.profile import AT_BOUND, FOUND, UNBOUNDED

lmfit = pytest.importorskip("lmfit")
EXACT = {"xtol": 1e-13, "ftol": 1e-13, "epsfcn": float(np.finfo(float).eps)}
SIGMAS = (1, 2, 3)


def decay(x, a, k, c):
    return a * jnp.exp(-k * x) + c


def four_pl(x, bottom, top, log_ec50, slope):
    return bottom + (top - bottom) / (1 + jnp.exp(-slope * (x - log_ec50)))


def peak(x, amplitude, center, sigma):
    return amplitude * jnp.exp(-((x - center) ** 2) / (2 * sigma**2))


def _data(name, rng):
    if name == "decay":
        x = np.linspace(0, 5, 30)
        return decay, x, 2.0 * np.exp(-0.7 * x) + 0.3 + rng.normal(0, 0.05, x.size), [1.0, 0.5, 0.0]
    if name == "4pl":
        x = np.linspace(-3, 2, 16)
        y = 0.1 + 0.8 / (1 + np.exp(-2.0 * (x + 0.8))) + rng.normal(0, 0.03, x.size)
        return four_pl, x, y, [0.0, 1.0, -1.0, 1.0]
    if name == "peak":
        x = np.linspace(-3, 3, 41)
        return peak, x, 1.5 * np.exp(-((x - 0.3) ** 2) / 0.5) + rng.normal(0, 0.08, x.size), [1.0, 0.0, 1.0]
    # the README's aspirin (configs/aspirin.yaml)
    x = np.array([-3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0])
    y = np.array([0.0839, 0.1351, 0.2169, 0.3636, 0.571, 0.7313, 0.8581, 0.9365, 0.9233])
    return four_pl, x, y, [0.0, 1.0, -1.0, 1.0]


@pytest.mark.parametrize("name", ["decay", "4pl", "peak", "aspirin"])
def test_profile_intervals_equal_lmfits_conf_interval(name):
    f, x, y, p0 = _data(name, np.random.default_rng(3))
    fit = jaxfit.curve_fit(f, x, y, p0=p0, result=True, precision="float64")
    names = fit.names
    g = {
        decay: lambda x, a, k, c: a * np.exp(-k * x) + c,
        four_pl: lambda x, bottom, top, log_ec50, slope: (
            bottom + (top - bottom) / (1 + np.exp(-slope * (x - log_ec50)))
        ),
        peak: lambda x, amplitude, center, sigma: amplitude * np.exp(-((x - center) ** 2) / (2 * sigma**2)),
    }[f]
    model = lmfit.Model(g)
    ref = model.fit(y, x=x, fit_kws=EXACT, **dict(zip(names, p0)))
    ci = ref.conf_interval(sigmas=SIGMAS)
    for s in SIGMAS:
        got = fit.profile(float(erf(s / np.sqrt(2))))
        for j, n in enumerate(names):
            want = dict(ci[n])
            p = float(erf(s / np.sqrt(2)))
            lo = next(v for q, v in ci[n][: len(SIGMAS)] if abs(q - p) < 1e-9)
            hi = next(v for q, v in ci[n][len(SIGMAS) + 1 :] if abs(q - p) < 1e-9)
            assert got.why_low[j] == FOUND and got.why_high[j] == FOUND
            assert got.low[j] == pytest.approx(lo, rel=1e-3), (n, s, "low")
            assert got.high[j] == pytest.approx(hi, rel=1e-3), (n, s, "high")
            assert want  # lmfit gave this parameter's intervals


def test_a_linear_models_profile_is_its_t_interval_and_absolute_sigma_its_z_interval():
    rng = np.random.default_rng(4)
    x = np.linspace(0, 1, 12)
    Y = 0.5 + 2.0 * x + rng.normal(0, 0.1, (5, x.size))
    line = lambda x, a, b: a + b * x  # noqa: E731
    fit = jaxfit.curve_fit(line, x, Y, p0=[0, 1], result=True, precision="float64")
    low, high = fit.intervals(0.9, method="profile")
    want_low, want_high = fit.intervals(0.9)
    np.testing.assert_allclose(low, want_low, rtol=1e-8)
    np.testing.assert_allclose(high, want_high, rtol=1e-8)
    sure = jaxfit.curve_fit(
        line, x, Y, p0=[0, 1], sigma=np.full(x.size, 0.1), absolute_sigma=True, result=True
    )
    z = stats.norm.ppf(0.95)
    got = sure.profile(0.9)
    np.testing.assert_allclose(got.low, sure.popt - z * sure.perr, rtol=1e-8)
    np.testing.assert_allclose(got.high, sure.popt + z * sure.perr, rtol=1e-8)


def test_a_batch_profiles_each_fit_as_on_its_own_and_is_asymmetric_where_the_curve_is():
    rng = np.random.default_rng(5)
    x = np.linspace(0, 5, 25)
    Y = 2.0 * np.exp(-0.9 * x[None]) + 0.3 + rng.normal(0, 0.08, (6, x.size))
    batch = jaxfit.curve_fit(decay, x, Y, p0=[1, 0.5, 0], result=True, precision="float64")
    got = batch.profile()
    for g in (0, 3, 5):
        one = jaxfit.curve_fit(decay, x, Y[g], p0=[1, 0.5, 0], result=True, precision="float64").profile()
        np.testing.assert_allclose(got.low[g], one.low, rtol=1e-8)
        np.testing.assert_allclose(got.high[g], one.high, rtol=1e-8)
    up, down = got.high - batch.popt, batch.popt - got.low
    assert (np.abs(up / down - 1) > 0.01).any()  # not the linear interval's symmetry


def test_a_side_the_data_cannot_close_is_unbounded_or_the_bound():
    rng = np.random.default_rng(6)
    x = np.linspace(0.1, 0.5, 12)  # far below km: the data look like a line
    y = 10 * x / (5 + x) + rng.normal(0, 0.05, x.size)
    mm = lambda x, vmax, km: vmax * x / (km + x)  # noqa: E731
    fit = jaxfit.curve_fit(mm, x, y, p0=[5.0, 2.0], result=True, precision="float64")
    got = fit.profile(0.95)
    assert got.why_high[1] == UNBOUNDED and got.high[1] == np.inf
    assert got.why_low[1] == FOUND and 0 < got.low[1] < fit.popt[1]
    boxed = jaxfit.curve_fit(
        mm, x, y, p0=[5.0, 2.0], bounds=([0, 0], [1e4, 200.0]), result=True, precision="float64"
    )
    got = boxed.profile(0.95)
    assert got.why_high[1] == AT_BOUND and got.high[1] == 200.0


def test_the_bootstrap_is_seeded_and_agrees_with_a_linear_models_covariance():
    rng = np.random.default_rng(7)
    x = np.linspace(0, 1, 40)
    Y = 0.5 + 2.0 * x + rng.normal(0, 0.1, (3, x.size))
    line = lambda x, a, b: a + b * x  # noqa: E731
    fit = jaxfit.curve_fit(line, x, Y, p0=[0, 1], result=True, precision="float64")
    boot = fit.bootstrap(replicates=2000, seed=1)
    again = fit.bootstrap(replicates=2000, seed=1)
    np.testing.assert_array_equal(boot.samples, again.samples)
    assert not np.array_equal(boot.samples, fit.bootstrap(replicates=2000, seed=2).samples)
    assert (boot.converged == 2000).all()
    np.testing.assert_allclose(boot.covariance(), fit.pcov, rtol=0.15, atol=1e-9)
    t_low, t_high = fit.intervals(0.95)
    for method in ("studentized", "percentile"):
        low, high = boot.intervals(0.95, method)
        np.testing.assert_allclose(high - low, t_high - t_low, rtol=0.1)
    # drawing whole points estimates the sandwich (HC0) covariance of a line
    pairs = fit.bootstrap(replicates=2000, seed=1, kind="pairs")
    X = np.stack([np.ones_like(x), x], 1)
    bread = np.linalg.inv(X.T @ X)
    for g in range(3):
        e = Y[g] - X @ fit.popt[g]
        sandwich = bread @ (X.T * e**2) @ X @ bread
        np.testing.assert_allclose(pairs.covariance()[g], sandwich, rtol=0.15, atol=1e-6)


@pytest.mark.slow
def test_profile_and_bootstrap_cover_the_truth_about_95_percent():
    rng = np.random.default_rng(8)
    truth = np.array([2.0, 0.7, 0.3])
    x = np.linspace(0, 5, 20)
    Y = truth[0] * np.exp(-truth[1] * x) + truth[2] + rng.normal(0, 0.05, (400, x.size))
    fit = jaxfit.curve_fit(decay, x, Y, p0=[1, 0.5, 0], result=True, precision="float64")
    for low, high in (fit.intervals(method="profile"), fit.bootstrap(replicates=400).intervals()):
        covered = ((low <= truth) & (truth <= high)).mean(axis=0)
        assert ((covered >= 0.91) & (covered <= 0.99)).all(), covered


def test_the_prediction_band_of_a_line_is_its_closed_form():
    rng = np.random.default_rng(9)
    x = np.linspace(0, 1, 15)
    y = 0.5 + 2.0 * x + rng.normal(0, 0.1, x.size)
    line = lambda x, a, b: a + b * x  # noqa: E731
    fit = jaxfit.curve_fit(line, x, y, p0=[0, 1], result=True, precision="float64")
    X = np.stack([np.ones_like(x), x], 1)
    beta, ssr = np.linalg.lstsq(X, y, rcond=None)[:2]
    s2 = ssr[0] / (x.size - 2)
    new = np.array([-0.5, 0.3, 2.0])
    X0 = np.stack([np.ones_like(new), new], 1)
    lever = np.einsum("ni,ij,nj->n", X0, np.linalg.inv(X.T @ X), X0)
    t = stats.t.ppf(0.975, x.size - 2)
    curve, low, high = fit.band(new, kind="prediction")
    np.testing.assert_allclose(curve, X0 @ beta, rtol=1e-10)
    np.testing.assert_allclose(high - curve, t * np.sqrt(s2 * (1 + lever)), rtol=1e-8)
    curve, low, high = fit.band(new)
    np.testing.assert_allclose(curve - low, t * np.sqrt(s2 * lever), rtol=1e-8)
    weighted = jaxfit.curve_fit(line, x, y, p0=[0, 1], sigma=np.full(x.size, 0.1), result=True)
    with pytest.raises(ValueError, match="needs the new points' sigma"):
        weighted.band(new, kind="prediction")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda fit: fit.intervals(method="jackknife"), "method: 'jackknife' is not allowed"),
        (lambda fit: fit.bootstrap(kind="wild"), "kind: 'wild' is not allowed"),
        (lambda fit: fit.bootstrap(replicates=1), "replicates: must be an integer >= 2"),
        (lambda fit: fit.profile(1.5), "confidence: must be in"),
        (lambda fit: fit.band([0.5], kind="tolerance"), "kind: 'tolerance' is not allowed"),
    ],
)
def test_bad_requests_say_why_in_one_line(call, message):
    x = np.linspace(0, 5, 20)
    fit = jaxfit.curve_fit(decay, x, 2 * np.exp(-0.7 * x) + 0.3, p0=[1, 0.5, 0], result=True)
    with pytest.raises(ValueError, match=message) as err:
        call(fit)
    assert "\n" not in str(err.value)


def test_a_robust_loss_has_no_chi_square_profile():
    x = np.linspace(0, 5, 20)
    fit = jaxfit.curve_fit(decay, x, 2 * np.exp(-0.7 * x) + 0.3, p0=[1, 0.5, 0], loss="huber", result=True)
    with pytest.raises(ValueError, match="need loss='linear'"):
        fit.profile()


@pytest.mark.slow
def test_derived_quantities_get_profile_and_bootstrap_intervals():
    from jaxfit.models import DoseResponse

    _, x, y, _ = _data("aspirin", None)
    fit = jaxfit.curve_fit(DoseResponse(), x, y, result=True, precision="float64")
    profiled = fit.value_intervals(method="profile")
    low, high = fit.intervals(method="profile")
    j = fit.names.index("logec50")
    assert profiled["ec50"] == pytest.approx((10 ** low[j], 10 ** high[j]), rel=1e-12)
    assert np.isfinite(profiled["ec50"]).all() and np.isnan(profiled["top"]).sum() == 0
    blow, bhigh = fit.intervals(method="bootstrap")  # 1,000 replicates, seed 0
    got = fit.value_intervals(method="bootstrap")
    assert got["logec50"] == pytest.approx((blow[j], bhigh[j]), rel=1e-12)
    assert got["ec50"] == pytest.approx((10 ** blow[j], 10 ** bhigh[j]), rel=1e-12)
    # a Gaussian's height depends on two parameters: the replicates' own percentiles
    x, y = _peak_xy()
    peak_fit = jaxfit.curve_fit(jaxfit.models.Gaussian(), x, y, result=True, precision="float64")
    s = peak_fit.bootstrap().samples[:, 0]
    height = s[:, 0] / (s[:, 2] * np.sqrt(2 * np.pi))
    want = tuple(np.nanpercentile(height, [2.5, 97.5]))
    assert peak_fit.value_intervals(method="bootstrap")["height"] == pytest.approx(want, rel=1e-9)
    assert np.isnan(peak_fit.value_intervals(method="profile")["height"]).all()
    lin = fit.value_intervals()
    assert lin["ec50"][0] < fit.values["ec50"] < lin["ec50"][1]


def _peak_xy():
    x = np.linspace(-3, 3, 41)
    return x, 1.5 * np.exp(-((x - 0.3) ** 2) / 0.5) + np.random.default_rng(12).normal(0, 0.08, x.size)


def test_the_profile_curve_reaches_the_level_at_the_intervals_ends():
    f, x, y, p0 = _data("decay", np.random.default_rng(3))
    fit = jaxfit.curve_fit(f, x, y, p0=p0, result=True, precision="float64")
    got = fit.profile(0.95)
    level = fit.chisqr * stats.t.ppf(0.975, fit.dof) ** 2 / fit.dof
    for j, n in enumerate(fit.names):
        rise = fit.profile_curve(n, [got.low[j], fit.popt[j], got.high[j]])
        np.testing.assert_allclose(rise, [level, 0, level], rtol=1e-8, atol=1e-12)


def test_a_configs_single_fit_reports_its_profile_intervals(tmp_path):
    import json

    from conftest import run_jaxfit

    p = run_jaxfit(
        "--config",
        "configs/aspirin.yaml",
        "--set",
        "report.intervals=profile",
        "--format",
        "json",
        "--no-cache",
    )
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert got["interval_method"] == "profile"
    _, x, y, p0 = _data("aspirin", None)
    ref = jaxfit.curve_fit(four_pl, x, y, p0=p0, result=True, precision="float64").profile(0.95)
    for j, n in enumerate(("bottom", "top", "log_ec50", "slope")):
        assert got["intervals"][n] == pytest.approx([ref.low[j], ref.high[j]], rel=1e-4), n
    text = run_jaxfit("--config", "configs/aspirin.yaml", "--set", "report.intervals=profile", "--no-cache")
    assert "95% interval (profile)" in text.stdout


def test_profile_intervals_of_a_batch_config_are_refused_in_one_line():
    from conftest import run_jaxfit

    p = run_jaxfit("--config", "configs/dose_response.yaml", "--set", "report.intervals=profile")
    assert p.returncode == 2
    assert "report.intervals: profile intervals are a single fit's here" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
