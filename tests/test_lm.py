"""Levenberg–Marquardt against scipy's least_squares(method="lm"), in float64."""

import itertools

import jax
import numpy as np
import pytest
import reference as ref
from scipy.optimize import least_squares

import jaxfit

X = np.array([0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0])
Y = np.array([3.02, 2.41, 1.98, 1.41, 1.07, 0.91, 0.78])


@pytest.fixture
def decay(tmp_path):
    (tmp_path / "decay_model.py").write_text(
        "import jax.numpy as jnp\ndef predict(x, a, k, c):\n    return a * jnp.exp(-k * x) + c\n"
    )
    return str(tmp_path / "decay_model.py") + ":predict"


def _lm(config):
    with jax.enable_x64(True):
        return jaxfit.fit({**config, "precision": "float64"})


def test_decay_model_reaches_scipys_minimum(decay):
    got = _lm(
        {
            "model": {"function": decay},
            "data": {"x": X.tolist(), "y": Y.tolist()},
            "params": {"a": 1.0, "k": 0.3, "c": 0.0},
            "train": {"trainable": "all", "optimizer": "lm", "tolerance": 1e-12, "max_steps": 200},
        }
    )
    want = least_squares(
        lambda p: Y - ref.decay_predict(dict(zip("akc", p)), X),
        [1.0, 0.3, 0.0],
        method="lm",
        xtol=1e-15,
        ftol=1e-15,
    ).x
    assert got.status.label == "converged" and got.steps < 50
    for n, w in zip("akc", want):
        assert got.params[n] == pytest.approx(w, abs=1e-8)


def test_seed_b3_fit_reaches_scipys_minimum_and_the_closed_form():
    got = _lm({"train": {"trainable": ["b3"], "optimizer": "lm", "tolerance": 1e-12}})
    want = least_squares(lambda b: ref.Y - ref.predict({**ref.SEED, "b3": b[0]}), [0.0], method="lm").x[0]
    assert got.params["b3"] == pytest.approx(want, abs=1e-8)
    assert got.params["b3"] == pytest.approx(ref.closed_form_b3(), abs=1e-8)


def test_all_seven_seed_parameters_never_increase_the_ssr():
    got = _lm({"train": {"trainable": "all", "optimizer": "lm", "tolerance": 1e-10, "max_steps": 500}})
    losses = [row["loss"] for row in got.trace_rows()] + [got.loss]
    assert all(b <= a for a, b in itertools.pairwise(losses))  # rejected trials keep the old point
    assert got.loss < 1e-6


def test_a_rejected_step_is_not_convergence(decay):
    # from k = 10 the Gauss–Newton steps overshoot: rejected trials apply no step
    # (zeros, all below the tolerance), yet the fit goes on to the minimum
    got = _lm(
        {
            "model": {"function": decay},
            "data": {"x": X.tolist(), "y": Y.tolist()},
            "params": {"a": 1.0, "k": 10.0, "c": 0.0},
            "train": {"trainable": "all", "optimizer": {"name": "lm", "damping": 1e-9}, "tolerance": 1e-9},
        }
    )
    rows = got.trace_rows()
    rejected = [k for k, r in enumerate(rows) if all(s == 0 for s in r["step_size"].values())]
    assert len(rejected) > 5 and rejected[0] < len(rows) - 1
    assert got.status.label == "converged" and got.loss == pytest.approx(0.000613565456107, rel=1e-9)


def test_batched_lm_fits_equal_solo_fits(decay):
    base = {
        "model": {"function": decay},
        "data": {"x": X.tolist(), "y": Y.tolist()},
        "params": {"a": 1.0, "k": 0.3, "c": 0.0},
        "train": {"trainable": "all", "optimizer": "lm", "tolerance": 1e-10, "max_steps": 300},
        "precision": "float64",
    }
    starts = [0.2, 1.0, 3.0, 10.0]
    with jax.enable_x64(True):
        batch = jaxfit.fit_batch({**base, "batch": {"init": {"k": {"values": starts}}}})
        for i, k0 in enumerate(starts):
            solo = jaxfit.fit({**base, "params": {**base["params"], "k": k0}})
            assert int(batch.steps[i]) == solo.steps and int(batch.status[i]) == solo.status
            for n in "akc":
                assert float(batch.params[n][i]) == pytest.approx(solo.params[n], rel=1e-9)
