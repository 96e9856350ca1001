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
        spot, GRID, y.astype(np.float32), starts.astype(np.float32), tolerance=1e-3, result=True
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
    fit = jaxfit.curve_fit(decay, x, y, [1.0, 0.5, 0.0], nan_policy="omit", result=True)
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
    fit = jaxfit.curve_fit(lambda x, *p: p[0] + p[1] * x, x, 1 + 2 * x, [0.0, 0.0], result=True)
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
        ({"method": "newton"}, "method"),
        ({"p0": [1.0, 1.0, 1.0], "bounds": (2, np.inf)}, "is outside"),
        ({"method": "lm", "bounds": (0, np.inf)}, "Method 'lm' only works for unconstrained problems"),
        ({"x_scale": 2.0}, "x_scale: not supported"),
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


SPOT_MODEL = (
    "import jax.numpy as jnp\n"
    "def predict(xy, amplitude, x0, y0, width, background):\n"
    "    px, py = xy\n"
    "    return amplitude * jnp.exp(-((px - x0) ** 2 + (py - y0) ** 2) / (2 * width**2)) + background\n"
)
SPOT_NAMES = ("amplitude", "x0", "y0", "width", "background")


def _spot_files(folder, spots, starts):
    rows = ["id,px,py,v"]
    for g, pixels in enumerate(spots):
        rows += [f"s{g},{GRID[0, i]:.17g},{GRID[1, i]:.17g},{v:.17g}" for i, v in enumerate(pixels)]
    (folder / "spots.csv").write_text("\n".join(rows) + "\n")
    table = ["id," + ",".join(SPOT_NAMES)] + [
        f"s{g}," + ",".join(f"{v:.17g}" for v in s) for g, s in enumerate(starts)
    ]
    (folder / "starts.csv").write_text("\n".join(table) + "\n")
    (folder / "spot.py").write_text(SPOT_MODEL)
    return {
        "model": {"function": "spot:predict"},
        "data": {"file": "spots.csv", "x": ["px", "py"], "y": "v", "group": "id"},
        "params": dict.fromkeys(SPOT_NAMES, 1.0),
        "starts": {"file": "starts.csv", "group": "id"},
        "train": {"trainable": "all", "optimizer": "lm", "tolerance": 1e-10, "max_steps": 200},
        "precision": "float64",
    }


def test_a_config_with_two_x_columns_and_a_starts_table_equals_the_arrays_api(tmp_path):
    import yaml

    spots, starts = _spots(40, seed=9)
    (tmp_path / "spots.yaml").write_text(yaml.safe_dump(_spot_files(tmp_path, spots, starts)))
    import jax

    with jax.enable_x64(True):
        got = jaxfit.fit_batch(tmp_path / "spots.yaml")
    popt, _ = jaxfit.curve_fit(spot, GRID, spots, starts, tolerance=1e-10)
    np.testing.assert_allclose(np.stack([got.params[n] for n in SPOT_NAMES], -1), popt, rtol=1e-6)
    np.testing.assert_allclose(got.init["amplitude"], starts[:, 0])  # each fit started from its row
    assert got.status_counts()["converged"] == 40


def test_inline_rows_of_coordinates_fit_a_function_model(tmp_path):
    (tmp_path / "plane.py").write_text(
        "def predict(xy, a, b, c):\n    px, py = xy\n    return a + b * px + c * py\n"
    )
    rows = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 1.0]]
    y = [1 + 2 * px - 0.5 * py for px, py in rows]
    config = {
        "model": {"function": str(tmp_path / "plane.py") + ":predict"},
        "data": {"x": rows, "y": y},
        "params": {"a": 0.0, "b": 0.0, "c": 0.0},
        "train": {"trainable": "all", "optimizer": "lm", "tolerance": 1e-9},
    }
    r = jaxfit.fit(config)
    assert [round(r.params[n], 4) for n in "abc"] == [1.0, 2.0, -0.5]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: f.write_text("id,amplitude\ns0,1\n"), "no start for data set 's1'"),
        (lambda f: f.write_text("id,gain\ns0,1\n"), "column 'gain' is not a parameter"),
        (lambda f: f.write_text("id,amplitude\ns0,nan\ns1,1\n"), "row 2: a start is not finite"),
        (lambda f: f.write_text("name,amplitude\ns0,1\n"), "no column 'id'"),
    ],
)
def test_a_bad_starts_table_is_one_line(tmp_path, edit, message):
    import yaml
    from conftest import run_jaxfit

    spots, starts = _spots(2, seed=1)
    config = _spot_files(tmp_path, spots, starts)
    edit(tmp_path / "starts.csv")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    p = run_jaxfit("--config", str(tmp_path / "c.yaml"), "--no-cache", "--output", str(tmp_path / "out"))
    assert p.returncode == 2 and message in p.stderr and p.stderr.count("\n") == 1, p.stderr
    assert not (tmp_path / "out").exists()


def test_a_missing_x_column_is_one_line(tmp_path):
    import yaml
    from conftest import run_jaxfit

    spots, starts = _spots(2, seed=1)
    config = _spot_files(tmp_path, spots, starts)
    config["data"]["x"] = ["px", "pz"]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    p = run_jaxfit("--config", str(tmp_path / "c.yaml"), "--no-cache")
    assert p.returncode == 2 and "no column 'pz'" in p.stderr and p.stderr.count("\n") == 1


def test_ftol_stops_on_the_relative_change_of_chisqr_as_gpufit_does():
    y, starts = _spots(2_000, seed=6)
    y, starts = y.astype(np.float32), starts.astype(np.float32)
    step_rule = jaxfit.curve_fit(spot, GRID, y, starts, tolerance=1e-4, max_steps=10, result=True)
    chi_rule = jaxfit.curve_fit(spot, GRID, y, starts, tolerance=1e-4, ftol=1e-4, max_steps=10, result=True)
    assert chi_rule.steps.mean() < 0.6 * step_rule.steps.mean()
    # every fit as good as scipy's own minimum (float64, run to convergence)
    for g in range(0, 2_000, 100):
        want, _ = scipy_curve_fit(
            _np(spot), GRID, y[g].astype(np.float64), starts[g].astype(np.float64), **TIGHT
        )
        r = y[g] - NUMPY[spot](GRID, *want)
        assert chi_rule.chisqr[g] <= 1.01 * (r @ r) + 1e-3
    with pytest.raises(ValueError, match="ftol"):
        jaxfit.curve_fit(spot, GRID, y[:2], starts[:2], ftol=2.0)
