"""Pictures: every plot renders to a valid, non-trivial PNG; the pink curve is the
seed's SSR table."""

import struct
import sys

import numpy as np
import pytest
import reference as ref

import jaxfit
from jaxfit.cli import main
from jaxfit.output.plots import batch_plots, fit_plots, ssr_along
from jaxfit.plan.lowering import plan_fit

pytest.importorskip("matplotlib")


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return len(data), width, height


def check_png(path):
    size, width, height = png_size(path)
    assert size > 10_000 and width >= 600 and height >= 400, (path, size, width, height)


def test_pink_curve_is_the_seed_table():
    ssr = ssr_along(ref.SEED, "b3", np.array([0.0, 1.0, 2.0, 3.0]), ref.X, ref.Y)
    np.testing.assert_allclose(ssr, [20.424, 7.768, 1.113, 0.458], atol=0.01)
    np.testing.assert_allclose(ssr, [ref.ssr({**ref.SEED, "b3": b}) for b in range(4)], rtol=1e-12)


def test_single_fit_pictures(tmp_path):
    cfg = jaxfit.load_config({"train": {"trainable": ["w3", "b3"]}})
    result = jaxfit.fit(cfg)
    files = fit_plots(result, plan_fit(cfg), tmp_path)
    assert sorted(f.name for f in files) == ["loss.png", "pink_b3.png", "pink_w3.png", "squiggle.png"]
    for f in files:
        check_png(f)


def test_batch_pictures(tmp_path):
    cfg = {
        "train": {"max_steps": 100},
        "batch": {"init": {"b3": {"linspace": [-10, 10, 2000]}}, "learning_rate": [0.05, 0.33, 1.2]},
    }
    files = batch_plots(jaxfit.fit_batch(cfg), tmp_path)
    assert sorted(f.name for f in files) == [
        "basins_b3.png",
        "loss_hist.png",
        "lr_loss.png",
        "status.png",
        "steps_hist.png",
    ]
    for f in files:
        check_png(f)


def test_svg_on_request(tmp_path):
    result = jaxfit.fit()
    files = fit_plots(result, plan_fit(None), tmp_path, fmt="svg")
    assert all(f.suffix == ".svg" and f.read_text().lstrip().startswith("<?xml") for f in files)


def test_cli_without_matplotlib_says_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    code = main(["--plot", str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert code == 2 and "pip install" in err and "matplotlib" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "p").exists()


def drawn_pixels(path):
    """Fractions of a PNG's pixels that are the fitted curve's green and the data's black."""
    from matplotlib.image import imread

    rgb = imread(path)[..., :3]
    green = np.abs(rgb - np.array([0x2C, 0xA0, 0x2C]) / 255).max(axis=-1) < 0.05
    black = rgb.max(axis=-1) < 0.1
    return green.mean(), black.mean()


def test_a_grouped_run_of_a_users_model_draws_its_data_sets_and_plot_redraws_them_without_fitting(
    tmp_path, monkeypatch
):
    from conftest import run_jaxfit

    out, pics = tmp_path / "run", tmp_path / "pics"
    p = run_jaxfit("--config", "configs/dose_response.yaml", "--output", str(out), "--plot", str(pics), "-q")
    assert p.returncode == 0, p.stderr
    for name in ("fits_worst.png", "fits_random.png"):
        check_png(pics / name)
        green, black = drawn_pixels(pics / name)
        assert green > 0.002 and black > 0.0005, (name, green, black)  # curves, bands and data drawn
    assert "Best fit #" not in p.stdout  # losses of different data sets do not rank fits
    assert not (out / "best_trace.csv").exists()

    import jaxfit.run.batch

    def no_fitting(*args, **kwargs):
        raise AssertionError("plot --run fitted again")

    monkeypatch.setattr(jaxfit.run.batch, "run_batch", no_fitting)
    again = tmp_path / "again"
    assert main(["plot", "--run", str(out), "-o", str(again), "--sets", "3"]) == 0
    assert sorted(f.name for f in again.iterdir()) == [
        "fits_random.png",
        "fits_worst.png",
        "loss_hist.png",
        "status.png",
        "steps_hist.png",
    ]
    check_png(again / "fits_worst.png")
    assert main(["plot", "--run", str(tmp_path / "nothing"), "-o", str(again)]) == 2


def test_a_single_fit_of_a_users_model_draws_data_fit_band_and_residuals(tmp_path):
    cfg = jaxfit.load_config("configs/aspirin.yaml")
    result = jaxfit.fit(cfg)
    files = fit_plots(result, plan_fit(cfg), tmp_path)
    assert "fit.png" in [f.name for f in files]
    check_png(tmp_path / "fit.png")
    green, black = drawn_pixels(tmp_path / "fit.png")
    assert green > 0.002 and black > 0.001  # an empty axes has neither


def test_worst_fits_by_reduced_chi_square_and_a_seeded_sample():
    from jaxfit.output.plots import pick_sets

    redchi = np.array([1.0, np.nan, 5.0, 0.5, 3.0])
    assert list(pick_sets(redchi, 3, "worst")) == [1, 2, 4]  # a failed fit (NaN) first
    sample = pick_sets(redchi, 3, "random")
    assert list(sample) == sorted(sample) and len(set(sample)) == 3
    assert list(pick_sets(redchi, 3, "random")) == list(sample)


def test_a_model_of_two_coordinates_is_drawn_as_images(tmp_path):
    import jax.numpy as jnp

    from jaxfit.core.model import Function
    from jaxfit.output.plots import DataSet, _save, data_fit_figure

    def spot(xy, a, x0, y0, w):
        return a * jnp.exp(-((xy[0] - x0) ** 2 + (xy[1] - y0) ** 2) / (2 * w**2))

    model = Function(spot, ("a", "x0", "y0", "w"), "spot", 2)
    grid = np.stack(np.meshgrid(np.arange(7.0), np.arange(7.0)), -1).reshape(-1, 2)
    params = {"a": 5.0, "x0": 3.0, "y0": 2.5, "w": 1.2}
    y = 5.0 * np.exp(-((grid[:, 0] - 3) ** 2 + (grid[:, 1] - 2.5) ** 2) / (2 * 1.2**2))
    one = DataSet("spot 1", grid, y + 0.1, None, params, None, 45, "converged", 0.01)
    path = _save(data_fit_figure(model, [one], ("a", "x0", "y0", "w"), 0.95), tmp_path / "spot", "png")
    check_png(path)


def test_curve_fit_results_draw_their_data_sets(tmp_path):
    import jax.numpy as jnp

    def decay(x, a, k, c):
        return a * jnp.exp(-k * x) + c

    x = np.linspace(0, 4, 30)
    Y = 2 * np.exp(-1.3 * x) + 0.5 + 0.05 * np.random.default_rng(0).standard_normal((20, 30))
    one = jaxfit.curve_fit(decay, x, Y[0], [1.0, 1.0, 0.0], result=True)
    one.plot(x, Y[0], path=tmp_path / "one.png")
    check_png(tmp_path / "one.png")
    green, black = drawn_pixels(tmp_path / "one.png")
    assert green > 0.002 and black > 0.001
    many = jaxfit.curve_fit(decay, x, Y, [1.0, 1.0, 0.0], result=True)
    fig = many.plot(x, Y, count=4, path=tmp_path / "many.png")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    worst = np.argsort(-many.redchi)[:4]
    assert titles == [f"data set {g}: converged, χ²ᵣ {many.redchi[g]:.3g}" for g in worst]
    check_png(tmp_path / "many.png")
