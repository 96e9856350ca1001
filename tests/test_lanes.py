"""Levenberg–Marquardt on the vector lanes (``core.lanes``): a fit's bits do not depend
on how many lanes run it, how they are laid out or how many devices share the batch,
and a fit alone steps as it does in a batch."""

import csv

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

import jaxfit
from jaxfit.plan.lowering import plan_batch
from jaxfit.run.batching import Layout, run_chunks

MODEL = "import jax.numpy as jnp\n\n\ndef predict(x, a, k, c):\n    return a * jnp.exp(-k * x) + c\n"


@pytest.fixture(scope="module")
def curves(tmp_path_factory):
    """300 weighted decay curves of 4 to 30 points (padded and masked in a batch)."""
    folder = tmp_path_factory.mktemp("lanes")
    rng = np.random.default_rng(5)
    rows, by_label = [], {}
    for g in range(300):
        n = int(rng.integers(4, 31))
        x = np.round(rng.uniform(0, 5, n), 5)
        s = np.round(rng.uniform(0.02, 0.1, n), 5)
        a, k, c = rng.uniform(0.5, 3), rng.uniform(0.1, 1.5), rng.uniform(-1, 1)
        y = np.round(a * np.exp(-k * x) + c + s * rng.standard_normal(n), 5)
        by_label[f"g{g:03d}"] = (x, y, s)
        rows += [(f"g{g:03d}", *r) for r in zip(x, y, s)]
    with open(folder / "curves.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "t", "v", "s"])
        w.writerows(rows)
    (folder / "decay_model.py").write_text(MODEL)
    return folder, by_label


def decay(x, a, k, c):
    return a * jnp.exp(-k * x) + c


def _config(folder, data):
    return {
        "model": {"function": str(folder / "decay_model.py") + ":predict"},
        "data": data,
        "params": {"a": 1.0, "k": 0.5, "c": 0.0},
        "bounds": {"k": [0.3, None]},  # some fits end on it
        "train": {"trainable": "all", "optimizer": "lm", "tolerance": 1e-6, "ftol": 1e-7, "max_steps": 60},
    }


def _run(plan, layout):
    parts = {}
    run_chunks(
        plan.program,
        plan.inputs,
        layout=layout,
        devices=jax.local_devices()[: layout.devices],
        ranges=[(0, plan.fits)],
        on_chunk=lambda first, chunk: parts.__setitem__(first, jax.tree.map(np.copy, chunk)),
    )
    chunks = [parts[k] for k in sorted(parts)]
    return jax.tree.map(lambda *a: np.concatenate(a), *chunks)


def _grouped(folder):
    """The curves as one config: a batch of one fit per curve."""
    path = folder / "lanes.yaml"
    data = {"file": "curves.csv", "x": "t", "y": "v", "sigma": "s", "group": "id"}
    path.write_text(yaml.safe_dump(_config(folder, data)))
    return jaxfit.load_config(path)


@pytest.mark.slow
def test_every_layout_of_the_lanes_gives_every_fit_the_same_bits(curves):
    folder, _ = curves
    plan = plan_batch(_grouped(folder))
    default = _run(plan, Layout(1, 32, 256, refill=64, on_lanes=True))
    assert set(default.status.tolist()) == {jaxfit.Status.CONVERGED}
    assert 0 < np.sum(default.params["k"] == np.float32(0.3)) < plan.fits  # some end on the bound
    for layout in (
        Layout(1, 8, 64, refill=16, on_lanes=True),
        Layout(3, 2, 112, refill=16, on_lanes=True),
        Layout(4, 2, 64, refill=32, on_lanes=True),
        Layout(2, 1, 1024, on_lanes=True),  # a GPU's layout: blocks that wait for their slowest fit
        Layout(3, 4, 80, on_lanes=True),
    ):
        other = _run(plan, layout)
        for a, b in zip(jax.tree.leaves(default), jax.tree.leaves(other)):
            np.testing.assert_array_equal(a, b, err_msg=str(layout))


def test_a_fit_in_a_batch_is_the_fit_alone_bit_for_bit(curves):
    folder, _ = curves
    rng = np.random.default_rng(8)
    x = np.linspace(0, 5, 20)
    truth = rng.uniform([0.5, 0.1, -1], [3, 1.5, 1], (200, 3))
    sigma = rng.uniform(0.02, 0.1, (200, 20))
    y = truth[:, :1] * np.exp(-truth[:, 1:2] * x) + truth[:, 2:] + sigma * rng.standard_normal((200, 20))
    x, y, sigma = (a.astype(np.float32) for a in (x, y, sigma))  # as a config's float32
    options = dict(
        bounds=([-np.inf, 0.3, -np.inf], np.inf), tolerance=1e-6, ftol=1e-7, max_steps=60, result=True
    )
    batch = jaxfit.curve_fit(decay, x, y, [1.0, 0.5, 0.0], sigma=sigma, **options)
    for i in (0, 17, 123, 199):
        alone = jaxfit.curve_fit(decay, x, y[i], [1.0, 0.5, 0.0], sigma=sigma[i], **options)
        assert (int(alone.steps), int(alone.status)) == (int(batch.steps[i]), int(batch.status[i]))
        np.testing.assert_array_equal(alone.popt, batch.popt[i])
        np.testing.assert_array_equal(alone.perr, batch.perr[i])
        np.testing.assert_array_equal(alone.pcov, batch.pcov[i])
        # the config's fit of the same points steps identically; its statistics sum
        # the points unmasked (curve_fit masks its padding), so they agree to an ulp
        solo = jaxfit.fit(_config(folder, {"x": x.tolist(), "y": y[i].tolist(), "sigma": sigma[i].tolist()}))
        assert (solo.steps, solo.status) == (int(batch.steps[i]), int(batch.status[i]))
        for j, n in enumerate("akc"):
            assert np.float32(solo.params[n]) == batch.popt[i, j], (i, n)
            np.testing.assert_array_max_ulp(np.float32(solo.stderr[n]), batch.perr[i, j], maxulp=2)
