"""The network family against an independent float64 NumPy gradient descent."""

import jax
import numpy as np
import pytest
import reference as ref
from conftest import run_jaxfit

import jaxfit

X = np.linspace(-1.0, 1.0, 7)
Y = np.sin(2.0 * X) + 0.3 * X**2

CASES = [
    # hidden, activation, trainable, learning rate, tolerance
    (1, "sigmoid", "all", 0.1, 1e-6),
    (3, "tanh", "all", 0.02, 1e-4),
    (4, "relu", "output", 0.1, 1e-6),
]


def _config(hidden, activation, trainable, lr, tol, **extra):
    names = ref.net_names(hidden)
    if trainable == "output":  # the output layer only: its weights and bias
        trainable = names[2 * hidden :]
    return {
        "model": {"hidden": hidden, "activation": activation},
        "data": {"x": X.tolist(), "y": Y.tolist()},
        "params": {
            n: 0.1 * ((7 * i) % 11 - 5) + (0.5 if n.startswith("w") else 0.0) for i, n in enumerate(names)
        },
        "train": {"trainable": trainable, "learning_rate": lr, "tolerance": tol, "max_steps": 20000},
        "precision": "float64",
        **extra,
    }


@pytest.mark.parametrize(("hidden", "activation", "trainable", "lr", "tol"), CASES)
def test_float64_fit_equals_numpy_gradient_descent(hidden, activation, trainable, lr, tol):
    cfg = _config(hidden, activation, trainable, lr, tol)
    names = ref.net_names(hidden)
    train = names if trainable == "all" else names[2 * hidden :]
    want, steps, status = ref.net_gradient_descent(
        cfg["params"], hidden, activation, train, lr, tol, 20000, X, Y
    )
    with jax.enable_x64(True):
        got = jaxfit.fit(cfg)
    assert got.steps == steps and int(got.status) == status == ref.CONVERGED
    for n in names:
        assert got.params[n] == pytest.approx(want[n], abs=1e-8), n
    assert tuple(got.trainable) == tuple(train)


@pytest.mark.slow
@pytest.mark.parametrize(("hidden", "activation", "trainable", "lr", "tol"), CASES)
def test_batch_of_starts_equals_per_fit_references(hidden, activation, trainable, lr, tol):
    names = ref.net_names(hidden)
    starts = [-0.4, 0.1, 0.6]
    cfg = _config(hidden, activation, trainable, lr, tol, batch={"init": {names[-1]: {"values": starts}}})
    train = names if trainable == "all" else names[2 * hidden :]
    with jax.enable_x64(True):
        got = jaxfit.fit_batch(cfg)
    for k, b in enumerate(starts):
        want, steps, status = ref.net_gradient_descent(
            {**cfg["params"], names[-1]: b}, hidden, activation, train, lr, tol, 20000, X, Y
        )
        assert int(got.steps[k]) == steps and int(got.status[k]) == status
        for n in names:
            assert float(got.params[n][k]) == pytest.approx(want[n], abs=1e-8), (k, n)


def test_two_softplus_nodes_are_the_seed_bit_for_bit():
    seed = jaxfit.fit("configs/b3.yaml")
    same = jaxfit.fit({"model": {"hidden": 2, "activation": "softplus"}})
    assert seed.to_dict() | {"compile_s": 0, "run_s": 0} == same.to_dict() | {"compile_s": 0, "run_s": 0}


def test_defaults_names_and_trainable_all():
    cfg = jaxfit.load_config({"model": {"hidden": 3, "activation": "tanh"}, "train": {"trainable": "all"}})
    assert cfg.names == ("w1", "b1", "w2", "b2", "w3", "b3", "w4", "w5", "w6", "b4")
    assert cfg.train.trainable == list(cfg.names)
    assert cfg.params == {
        "w1": 1.0,
        "b1": -1.0,
        "w2": 1.0,
        "b2": 0.0,
        "w3": 1.0,
        "b3": 1.0,
        "w4": 1 / 3,
        "w5": 1 / 3,
        "w6": 1 / 3,
        "b4": 0.0,
    }
    # the default trainable set is the output bias, as b3 is the seed's
    assert jaxfit.load_config({"model": {"hidden": 5}}).train.trainable == ["b6"]


def test_relu_derivative_at_zero_is_zero():
    # one relu node sitting exactly at its kink for every point: w1 = b1 = 0
    cfg = {
        "model": {"hidden": 1, "activation": "relu"},
        "params": {"w1": 0.0, "b1": 0.0, "w2": 1.0, "b2": 0.0},
    }
    state = jaxfit.make_state({**cfg, "train": {"trainable": ["w1", "b1"]}})
    assert float(state.grad["w1"]) == 0.0 and float(state.grad["b1"]) == 0.0


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("model: {hidden: 0}", "model.hidden"),
        ("model: {hidden: 257}", "model.hidden"),
        ("model: {activation: swish}", "model.activation"),
        ("model: {hidden: 3}\nparams: {w7: 1.0}", "params.w7"),
        ("model: {hidden: 1}\ntrain: {trainable: [b3]}", "train.trainable"),
        ("model: {hidden: 1}\nbatch: {init: {w3: {values: [1]}}}", "batch.init.w3"),
    ],
)
def test_bad_network_configs_exit_2_naming_the_field(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text + "\n")
    p = run_jaxfit("--config", str(path), "--output", str(tmp_path / "out"))
    assert p.returncode == 2 and needle in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
