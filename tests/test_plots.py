"""Pictures: every plot renders to a valid, non-trivial PNG; the pink curve is the
seed's SSR table."""

import struct
import sys

import numpy as np
import pytest
import reference as ref

import jaxfit
from jaxfit.cli import main
from jaxfit.lowering import plan_fit
from jaxfit.plots import batch_plots, fit_plots, ssr_along

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
