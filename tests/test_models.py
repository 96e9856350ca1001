"""The built-in models against lmfit (float64): every line shape formula for formula,
fits of composite, tied, Voigt and 4PL models equal to lmfit's ``Model.fit`` from the
same start, derived quantities with their errors, the batched guess, and one-line
errors for models that cannot be."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import jaxfit
from jaxfit import models

lmfit = pytest.importorskip("lmfit")
L = lmfit.lineshapes
EPS = float(np.finfo(float).eps)
# lmfit's leastsq differentiates with steps of 1e-5 (epsfcn=1e-10): its standard errors
# are 1e-5 off the exact ones; with machine-epsilon steps they are exact to ~1e-7.
EXACT = {"xtol": 1e-12, "ftol": 1e-12, "epsfcn": EPS}


@pytest.fixture
def x64():
    import jax

    with jax.enable_x64(True):
        yield


def _close(a, b, rel=1e-12, atol=1e-15):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    bad = np.abs(a - b) > rel * np.abs(b) + atol
    assert not bad.any(), (
        f"worst {np.max(np.abs(a - b) / (np.abs(b) + 1e-300)):.3g} at {np.argwhere(bad)[:3]}"
    )


def _grid_values(name: str, rng: np.random.Generator) -> dict[str, float]:
    params = [p for p in list(inspect.signature(getattr(L, name)).parameters)[1:] if p not in ("form", "y")]
    out = {}
    for p in params:
        if p in ("sigma", "sigma_r", "kt", "decay", "gamma", "sigmax", "sigmay"):
            out[p] = rng.uniform(0.3, 2.5)
        elif p == "expon":
            out[p] = rng.uniform(0.8, 4)
        elif p == "center":
            out[p] = rng.uniform(0.5, 3) if name in ("damped_oscillator", "dho") else rng.uniform(-2, 2)
        elif p == "amplitude":
            out[p] = rng.uniform(0.5, 5)
        else:
            out[p] = rng.uniform(-1.5, 1.5)
    return out


FORMS = {
    "step": ("linear", "atan", "arctan", "erf", "logistic"),
    "rectangle": ("linear", "atan", "arctan", "erf", "logistic"),
    "thermal_distribution": ("bose", "maxwell", "fermi"),
}


@pytest.mark.parametrize("name", [n for n in L.functions if n != "gaussian2d"])
def test_every_line_shape_equals_lmfit_to_1e_12(name, x64):
    from jaxfit.models import lineshapes

    rng = np.random.default_rng(sum(map(ord, name)))
    x = np.linspace(-7, 9, 161)
    if name in ("lognormal", "powerlaw"):
        x = np.abs(x) + 0.01
    for _ in range(12):
        values = _grid_values(name, rng)
        for form in FORMS.get(name, (None,)):
            kw = {"form": form} if form else {}
            with np.errstate(over="ignore"):
                want = getattr(L, name)(x.copy(), **values, **kw)
            _close(getattr(lineshapes, name)(x, **values, **kw), want)


def test_gaussian2d_and_the_faddeeva_function(x64):
    from scipy.special import wofz

    from jaxfit.models import lineshapes
    from jaxfit.models.faddeeva import wofz as jwofz

    gx, gy = np.meshgrid(np.linspace(-4, 4, 41), np.linspace(-3, 5, 37))
    for values in ({"amplitude": 2.0, "centerx": 0.3, "centery": 1.1, "sigmax": 0.7, "sigmay": 1.9},):
        want = L.gaussian2d(gx, gy, **values)
        _close(lineshapes.gaussian2d(np.stack([gx, gy]), **values), want)
    re, im = np.meshgrid(np.linspace(-60, 60, 1201), np.concatenate([[0], np.geomspace(1e-8, 100, 120)]))
    z = (re + 1j * im).ravel()
    got, want = np.asarray(jwofz(z)), wofz(z)
    _close(got.real, want.real, rel=1e-12, atol=1e-15)
    _close(got.imag, want.imag, rel=1e-12, atol=1e-15)


def _gauss(x, a, c, s):
    return a / (s * np.sqrt(2 * np.pi)) * np.exp(-((x - c) ** 2) / (2 * s * s))


SPECTRUM = np.linspace(0, 10, 201)


def _two_peaks(rng, x=SPECTRUM):
    y = _gauss(x, 3, 3.5, 0.6) + _gauss(x, 2, 6.2, 0.8) + 0.1 * x + 0.5 + rng.normal(0, 0.03, x.size)
    return x, y


START = {
    "p1_amplitude": 2.5,
    "p1_center": 3.2,
    "p1_sigma": 0.5,
    "p2_amplitude": 2.5,
    "p2_center": 6.5,
    "p2_sigma": 0.5,
    "bg_slope": 0.0,
    "bg_intercept": 0.3,
}


def _lmfit_two_peaks():
    M = lmfit.models
    return M.GaussianModel(prefix="p1_") + M.GaussianModel(prefix="p2_") + M.LinearModel(prefix="bg_")


def _agree(fit, ref, names, values=1e-6, errors=1e-5):
    for n in names:
        p = ref.params[n]
        assert fit.values[n] == pytest.approx(p.value, rel=values, abs=1e-12), n
        assert fit.errors[n] == pytest.approx(p.stderr, rel=errors), n
    assert fit.redchi == pytest.approx(ref.redchi, rel=1e-9)


def test_two_gaussians_and_a_line_equal_lmfit_values_errors_and_derived():
    x, y = _two_peaks(np.random.default_rng(1))
    model = models.Gaussian("p1_") + models.Gaussian("p2_") + models.Linear("bg_")
    fit = jaxfit.curve_fit(model, x, y, p0=START, result=True)
    ref = _lmfit_two_peaks().fit(y, _lmfit_two_peaks().make_params(**START), x=x, fit_kws=EXACT)
    assert fit.status_of().label == "converged"
    _agree(fit, ref, [*START, "p1_fwhm", "p1_height", "p2_fwhm", "p2_height"])
    parts = model.eval_components(x, dict(zip(fit.names, fit.popt)))
    assert set(parts) == {"p1_", "p2_", "bg_"}
    np.testing.assert_allclose(sum(parts.values()), ref.best_fit, rtol=1e-6)


def test_a_tied_width_equals_lmfit_with_the_same_expr_errors_included():
    x, y = _two_peaks(np.random.default_rng(2))
    model = (models.Gaussian("p1_") + models.Gaussian("p2_") + models.Linear("bg_")).with_params(
        p2_sigma={"expr": "p1_sigma"}
    )
    start = {k: v for k, v in START.items() if k != "p2_sigma"}
    fit = jaxfit.curve_fit(model, x, y, p0=start, result=True)
    assert "p2_sigma" not in fit.names and len(fit.names) == 7
    lm = _lmfit_two_peaks()
    pars = lm.make_params(**start)
    pars["p2_sigma"].set(expr="p1_sigma")
    ref = lm.fit(y, pars, x=x, fit_kws=EXACT)
    _agree(fit, ref, [*START, "p2_fwhm"])
    assert fit.values["p2_sigma"] == fit.values["p1_sigma"]


def test_a_voigt_with_gamma_tied_to_sigma_equals_lmfit():
    rng = np.random.default_rng(3)
    x = np.linspace(-6, 6, 241)
    from scipy.special import wofz

    z = (x - 0.4 + 0.5j) / (0.5 * np.sqrt(2))
    y = 4.0 * wofz(z).real / (0.5 * np.sqrt(2 * np.pi)) + rng.normal(0, 0.02, x.size)
    start = {"amplitude": 3.0, "center": 0.2, "sigma": 0.8}
    fit = jaxfit.curve_fit(models.Voigt(), x, y, p0=start, result=True)
    assert fit.names == ("amplitude", "center", "sigma")
    lm = lmfit.models.VoigtModel()
    ref = lm.fit(y, lm.make_params(**start), x=x, fit_kws=EXACT)
    _agree(fit, ref, ["amplitude", "center", "sigma", "gamma", "fwhm", "height"])


def test_a_four_parameter_dose_response_equals_lmfit():
    rng = np.random.default_rng(4)
    x = np.repeat(np.linspace(-9, -4, 11), 3)

    def four_pl(x, bottom, top, logec50, hill):
        return bottom + (top - bottom) / (1 + 10.0 ** ((logec50 - x) * hill))

    y = four_pl(x, 5, 95, -6.3, 1.2) + rng.normal(0, 3, x.size)
    start = {"bottom": 0.0, "top": 100.0, "logec50": -6.0, "hill": 1.0}
    fit = jaxfit.curve_fit(models.DoseResponse(), x, y, p0=start, result=True)
    lm = lmfit.Model(four_pl)
    pars = lm.make_params(**start)
    pars.add("ec50", expr="10**logec50")
    ref = lm.fit(y, pars, x=x, fit_kws=EXACT)
    _agree(fit, ref, [*start, "ec50"])


def test_the_guess_alone_fits_a_thousand_single_peaks_as_well_as_the_truth():
    rng = np.random.default_rng(5)
    x = np.linspace(-5, 5, 101)
    G = 1000
    truth = np.stack(
        [
            rng.uniform(0.5, 3, G),
            rng.uniform(-2.5, 2.5, G),
            rng.uniform(0.3, 1.2, G),
            rng.uniform(-0.2, 0.2, G),
        ],
        1,
    )
    Y = _gauss(x, *truth[:, :3].T[..., None]) + truth[:, 3:] + rng.normal(0, 0.02, (G, x.size))
    model = models.Gaussian() + models.Constant()
    guessed = jaxfit.curve_fit(model, x, Y, result=True)
    true_start = jaxfit.curve_fit(model, x, Y, p0=truth, result=True)
    good = guessed.chisqr <= 1.01 * true_start.chisqr
    assert good.mean() >= 0.99, f"{good.mean():.3f} of the fits within 1.01x the true-start chi-square"


@pytest.mark.slow
def test_a_batch_of_models_in_float32_matches_float64():
    rng = np.random.default_rng(6)
    x = np.linspace(0, 10, 201)
    Y = np.stack([_two_peaks(rng, x)[1] for _ in range(8)])
    model = models.Gaussian("p1_") + models.Gaussian("p2_") + models.Linear("bg_")
    f64 = jaxfit.curve_fit(model, x, Y, p0=START, result=True)
    f32 = jaxfit.curve_fit(model, x, Y.astype(np.float32), p0=START, result=True)
    assert (f32.status == jaxfit.Status.CONVERGED).all()
    np.testing.assert_allclose(f32.popt, f64.popt, rtol=2e-3, atol=2e-3)
    assert f32.values["p1_fwhm"].shape == (8,)


def test_text_names_the_same_model():
    text = models.parse("gaussian(p1_) + gaussian(p2_) + linear(bg_)")
    assert text == models.Gaussian("p1_") + models.Gaussian("p2_") + models.Linear("bg_")
    assert hash(text) == hash(models.Gaussian("p1_") + models.Gaussian("p2_") + models.Linear("bg_"))
    assert models.parse("polynomial(degree=3)").param_names == ("c0", "c1", "c2", "c3")
    assert models.parse("step(form=erf) * exponential(e_)").label == "step(form=erf) * exponential(e_)"
    assert models.parse("quadratic") == models.Parabolic()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: models.parse("gausian(p1_)"), "unknown model 'gausian'"),
        (lambda: models.parse("gaussian(p1_) + gaussian(p1_)"), "give each part a prefix"),
        (lambda: models.parse("__import__('os')"), "unknown model '__import__'"),
        (lambda: models.parse("gaussian(p1_).__class__"), "expected built-in models"),
        (lambda: models.Step(form="cubic"), "form='cubic' is not allowed"),
        (lambda: models.Gaussian().with_params(sigma={"expr": "width"}), "unknown name 'width'"),
        (lambda: models.Gaussian().with_params(sigma={"expr": "__import__('os')"}), "unknown function"),
        (lambda: models.Gaussian().with_params(sigma={"expr": "().__class__"}), "only numbers"),
        (lambda: models.Gaussian().with_params(sigmaa=1.0), "no parameter 'sigmaa'"),
        (
            lambda: (models.Gaussian("a_") + models.Gaussian("b_")).with_params(
                a_sigma={"expr": "b_sigma"}, b_sigma={"expr": "a_sigma"}
            ),
            "cycle",
        ),
    ],
)
def test_models_that_cannot_be_say_why_in_one_line(make, message):
    with pytest.raises(ValueError, match=message) as err:
        make()
    assert "\n" not in str(err.value)


def test_a_product_needs_starts_and_says_so():
    x = np.linspace(0, 5, 50)
    with pytest.raises(ValueError, match="only a sum of models can be guessed; give its starts"):
        jaxfit.curve_fit(models.Step(form="erf") * models.Exponential("e_"), x, np.exp(-x))


def _two_peak_sets(groups, seed=7):
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 10, 121)
    c1 = rng.uniform(2, 4.5, groups)
    c2 = c1 + rng.uniform(1.2, 3.5, groups)
    truth = np.stack(
        [rng.uniform(1, 3, groups), c1, rng.uniform(0.3, 0.7, groups)]
        + [rng.uniform(1, 3, groups), c2, rng.uniform(0.3, 0.7, groups)],
        1,
    )
    Y = _gauss(x, *truth[:, :3].T[..., None]) + _gauss(x, *truth[:, 3:].T[..., None])
    return x, Y + rng.normal(0, 0.05, Y.shape), truth


@pytest.mark.slow
def test_sixteen_starts_reach_the_global_minimum_where_one_start_does_not():
    x, Y, truth = _two_peak_sets(200)
    model = models.Gaussian("p1_") + models.Gaussian("p2_")
    best = jaxfit.curve_fit(model, x, Y, p0=truth, result=True).chisqr
    p0 = np.tile([2.0, 5.0, 1.0, 2.0, 5.5, 1.0], (len(Y), 1))  # one start for every set
    one = jaxfit.curve_fit(model, x, Y, p0=p0, result=True)
    many = jaxfit.curve_fit(model, x, Y, p0=p0, starts=16, seed=1, result=True)
    local = lambda fit: fit.chisqr > best * 1.01 + 1e-9  # noqa: E731
    assert local(one).mean() >= 0.20, (
        f"a single start is in a local minimum {local(one).mean():.1%} of the time"
    )
    assert local(many).mean() <= 0.01, f"{local(many).mean():.1%} still local with 16 starts"
    assert many.popt.shape == (len(Y), 6) and many.reached.shape == (len(Y),)
    assert ((many.reached >= 1) & (many.reached <= 16)).all()
    # the kept fit is a converged fit of its own data set: its chi-square is its popt's
    resid = Y - model.eval(x, **dict(zip(model.param_names, many.popt.T[..., None])))
    np.testing.assert_allclose(many.chisqr, (resid**2).sum(-1), rtol=1e-4)


def test_many_starts_keep_start_zero_and_give_scipys_tuple():
    x, Y, truth = _two_peak_sets(3, seed=2)
    model = models.Gaussian("p1_") + models.Gaussian("p2_")
    one = jaxfit.curve_fit(model, x, Y[0], p0=truth[0])
    many = jaxfit.curve_fit(model, x, Y[0], p0=truth[0], starts=8)
    np.testing.assert_allclose(many[0], one[0], rtol=1e-5)  # from the truth: start 0 is best
    assert many[1].shape == (6, 6)


def test_a_rotated_two_dimensional_spot_is_found_from_its_guess(x64):
    rng = np.random.default_rng(8)
    g = np.linspace(-3, 3, 25)
    xy = np.stack(np.meshgrid(g, g)).reshape(2, -1)  # (d, n), as scipy
    model = models.Gauss2dRotated()
    true = {
        "amplitude": 5.0,
        "x0": 0.4,
        "y0": -0.6,
        "sigma_x": 0.9,
        "sigma_y": 0.5,
        "offset": 0.2,
        "rotation": 0.5,
    }
    z = np.asarray(model.eval(xy, **true)) + rng.normal(0, 0.01, xy.shape[1])
    fit = jaxfit.curve_fit(model, xy, z, result=True)
    assert fit.status_of() == jaxfit.Status.CONVERGED
    for name in ("amplitude", "x0", "y0", "offset"):
        assert abs(fit.values[name] - true[name]) < 5 * fit.errors[name], name
    assert sorted([fit.values["sigma_x"], fit.values["sigma_y"]]) == pytest.approx([0.5, 0.9], abs=0.01)


def _spectra_csv(path, groups=6, seed=9):
    rng = np.random.default_rng(seed)
    rows, sets = ["spectrum,x,y"], {}
    for g in range(groups):
        x, y = _two_peaks(rng)
        sets[f"s{g}"] = (x, y)
        rows += [f"s{g},{float(a)!r},{float(b)!r}" for a, b in zip(x, y)]
    path.write_text("\n".join(rows) + "\n")
    return sets


CONFIG = (
    'model: {builtin: "gaussian(p1_) + gaussian(p2_) + linear(bg_)"}\n'
    "params: {p2_sigma: {expr: p1_sigma}}\n"
    "data: {file: spectra.csv, x: x, y: y, group: spectrum}\n"
    "train: {optimizer: lm, tolerance: 1.0e-10, max_steps: 200}\n"
    "precision: float64\n"
)


def test_a_config_names_a_built_in_model_with_a_tie_and_fits_as_curve_fit(tmp_path, x64):
    sets = _spectra_csv(tmp_path / "spectra.csv")
    (tmp_path / "fit.yaml").write_text(CONFIG)
    cfg = jaxfit.load_config(tmp_path / "fit.yaml")
    assert "p2_sigma" not in cfg.names  # tied: not trained
    batch = jaxfit.fit_batch(cfg)
    model = models.parse("gaussian(p1_) + gaussian(p2_) + linear(bg_)").with_params(
        p2_sigma={"expr": "p1_sigma"}
    )
    for i, label in enumerate(batch.group):
        x, y = sets[label]
        fit = jaxfit.curve_fit(model, x, y, result=True)
        for name in cfg.names:
            assert float(batch.params[name][i]) == pytest.approx(fit.values[name], rel=1e-6), (label, name)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ('{builtin: "gausian(p1_)"}', "unknown model 'gausian'"),
        ('{builtin: "gaussian(p1_) + gaussian(p1_)"}', "give each part a prefix"),
        ('{builtin: "gaussian", hidden: 3}', "takes no hidden"),
    ],
)
def test_a_bad_built_in_model_in_a_config_is_one_line_and_a_failing_exit(tmp_path, model, message):
    from conftest import run_jaxfit

    _spectra_csv(tmp_path / "spectra.csv", groups=1)
    (tmp_path / "fit.yaml").write_text(CONFIG.replace(CONFIG.splitlines()[0], f"model: {model}"))
    p = run_jaxfit("--config", str(tmp_path / "fit.yaml"))
    assert p.returncode != 0
    assert message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "Traceback" not in p.stderr


def test_a_bad_tie_in_a_config_is_one_line_and_a_failing_exit(tmp_path):
    from conftest import run_jaxfit

    _spectra_csv(tmp_path / "spectra.csv", groups=1)
    (tmp_path / "fit.yaml").write_text(CONFIG.replace("expr: p1_sigma", "expr: p1_sigmaa"))
    p = run_jaxfit("--config", str(tmp_path / "fit.yaml"))
    assert p.returncode != 0 and "unknown name 'p1_sigmaa'" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_each_part_of_a_sum_has_its_curve_and_band(x64):
    from scipy.stats import t as student

    x, y = _two_peaks(np.random.default_rng(11))
    model = models.Gaussian("p1_") + models.Gaussian("p2_") + models.Linear("bg_")
    fit = jaxfit.curve_fit(model, x, y, p0=START, result=True)
    parts = fit.components(x)
    assert list(parts) == ["p1_", "p2_", "bg_"]
    np.testing.assert_allclose(sum(c for c, _, _ in parts.values()), model.eval(x, **fit.values), atol=1e-12)
    # the band of p1: t · sqrt(g C gᵀ), g by central differences in float64
    p = fit.popt

    def p1(q):
        return _gauss(x, *q[:3])

    g = np.stack([(p1(p + h) - p1(p - h)) / (2 * 1e-6) for h in np.eye(len(p)) * 1e-6], 1)
    half = student.ppf(0.975, fit.dof) * np.sqrt(np.einsum("nk,kl,nl->n", g, fit.pcov, g))
    curve, low, high = parts["p1_"]
    np.testing.assert_allclose(curve, p1(p), atol=1e-12)
    np.testing.assert_allclose(high - curve, half, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(curve - low, half, rtol=1e-6, atol=1e-12)
    assert np.all(parts["bg_"][2] - parts["bg_"][1] > 0)
    pytest.importorskip("matplotlib")
    labels = fit.plot(x, y).axes[0].get_legend_handles_labels()[1]
    assert {"fit", "p1", "p2", "bg"} <= set(labels)
