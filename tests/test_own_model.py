"""A user's own model: a pure JAX function from an import path, fitted like the seed."""

import json
import subprocess

import jax
import numpy as np
import pytest
import reference as ref
from conftest import ENV, JAXFIT, run_jaxfit, run_python
from test_fit import compiles  # noqa: F401 - fixture

import jaxfit

MODEL = """import jax.numpy as jnp
def predict(x, a, k, c):        # one scalar x in, one scalar out (curve_fit's convention)
    return a * jnp.exp(-k * x) + c
"""
X = [0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0]
Y = [3.02, 2.41, 1.98, 1.41, 1.07, 0.91, 0.78]
CONFIG = f"""model: {{function: "decay_model:predict"}}    # module:function
params: {{a: 1.0, k: 0.3, c: 0.0}}            # names = the function's parameters after x
train: {{trainable: [a, k, c], learning_rate: 0.01, tolerance: 1.0e-7, max_steps: 100000}}
data: {{x: {X}, y: {Y}}}
"""


@pytest.fixture
def project(tmp_path):
    """A config with its model file beside it, and another folder to run from."""
    (tmp_path / "fit").mkdir()
    (tmp_path / "fit" / "decay_model.py").write_text(MODEL)
    (tmp_path / "fit" / "decay.yaml").write_text(CONFIG)
    (tmp_path / "elsewhere").mkdir()
    return tmp_path


def run_from(cwd, *args, env=None):
    return subprocess.run(
        [*JAXFIT, *args], cwd=cwd, env=env or ENV, capture_output=True, text=True, timeout=300
    )


def test_solo_fit_from_another_folder_equals_numpy_gradient_descent(project):
    cfg = str(project / "fit" / "decay.yaml")
    p = run_from(project / "elsewhere", "--config", cfg, "--format", "json", "--set", "precision=float64")
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    want, steps, status = ref.decay_gradient_descent(
        {"a": 1.0, "k": 0.3, "c": 0.0}, 0.01, 1e-7, 100000, np.array(X), np.array(Y)
    )
    assert got["status"] == "converged" and status == ref.CONVERGED and got["steps"] == steps
    for n in "akc":
        assert got["params"][n] == pytest.approx(want[n], abs=1e-8)


def test_batch_of_starts_from_another_folder(project):
    cfg = str(project / "fit" / "decay.yaml")
    starts = [0.5, 1.0, 2.0, 4.0]
    p = run_from(
        project / "elsewhere",
        "--config",
        cfg,
        "--set",
        f"batch.init.a.values={starts}",
        "--set",
        "precision=float64",
        "--format",
        "csv",
        "-q",
    )
    assert p.returncode == 0, p.stderr
    rows = [line.split(",") for line in p.stdout.strip().splitlines()]
    header, rows = rows[0], rows[1:]
    assert {"init_a", "final_a", "final_k", "final_c"} <= set(header)
    for row, a0 in zip(rows, starts):
        r = dict(zip(header, row))
        want, steps, _ = ref.decay_gradient_descent(
            {"a": a0, "k": 0.3, "c": 0.0}, 0.01, 1e-7, 100000, np.array(X), np.array(Y)
        )
        assert int(r["steps"]) == steps and float(r["init_a"]) == a0
        for n in "akc":
            assert float(r[f"final_{n}"]) == pytest.approx(want[n], abs=1e-8)


@pytest.mark.slow
def test_exported_and_reloaded_in_a_fresh_process(project, tmp_path):
    cfg = str(project / "fit" / "decay.yaml")
    out = tmp_path / "decay.jaxexport"
    fast = "train.tolerance=1e-3"  # a few hundred steps, one call each
    p = run_from(project / "elsewhere", "export", "--config", cfg, "--set", fast, "-o", str(out))
    assert p.returncode == 0, p.stderr
    probe = f"""
import json, numpy as np, jaxfit
e = jaxfit.load_exported({str(out)!r})
p = e.problem(); s = e.init(p)
while int(s.status) == 0:
    s = e.step(s, p)
r = e.fit_many({{"a": np.array([1.0, 2.0])}})
print(json.dumps({{"a": float(s.params["a"]), "steps": int(s.step), "many": r["steps"].tolist()}}))
"""
    p = run_python(probe, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    direct = jaxfit.fit(jaxfit.load_config(cfg, [fast]))
    assert got["steps"] == direct.steps and got["a"] == pytest.approx(direct.params["a"], rel=1e-6)
    batch = jaxfit.fit_batch(jaxfit.load_config(cfg, [fast, "batch.init.a.values=[1.0, 2.0]"]))
    assert got["many"] == batch.steps.tolist()


@pytest.mark.slow
def test_one_and_four_devices_are_bit_identical(project):
    cfg = jaxfit.load_config(
        str(project / "fit" / "decay.yaml"),
        [
            "batch.init.a.normal={mean: 2, std: 1}",
            "batch.init.k.uniform={low: 0.1, high: 1}",
            "batch.count=300",
        ],
    )
    one = jaxfit.fit_batch(cfg, devices=1, block_size=16)
    four = jaxfit.fit_batch(cfg, devices=4, block_size=16)
    assert len(jax.devices()) == 4
    for n in "akc":
        np.testing.assert_array_equal(one.params[n], four.params[n])
    np.testing.assert_array_equal(one.steps, four.steps)
    np.testing.assert_array_equal(one.loss, four.loss)


def test_compiles_once_per_model_trainable_set_and_optimizer(project, compiles):  # noqa: F811
    path = str(project / "fit" / "decay.yaml")
    for lr, a in [(0.01, 1.0), (0.02, 2.0), (0.005, 0.5)]:
        cfg = jaxfit.load_config(path, [f"train.learning_rate={lr}", f"params.a={a}", "train.optimizer=adam"])
        jaxfit.fit_batch(jaxfit.load_config(cfg, ["batch.init.c.values=[0.0, 0.5, 1.0]"]))
    assert compiles.count("backend_compile_duration") == 1


def test_shipped_dose_response_example_fits_every_compound():
    p = run_jaxfit("--config", "configs/dose_response.yaml", "--format", "json", "-q")
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["groups"] == s["fits"] == 5 and s["status_counts"]["converged"] == 5
    assert {g["group"] for g in s["per_group"]} == {"aspirin", "caffeine", "ibuprofen", "menthol", "quinine"}
    assert all(g["loss"] < 0.01 for g in s["per_group"])


def test_shipped_network_example_runs():
    p = run_jaxfit("--config", "configs/network_h3_tanh.yaml", "--format", "json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["status"] == "converged" and len(r["params"]) == 10 and r["loss"] < 0.1


@pytest.mark.parametrize(
    ("module", "function", "needle"),
    [
        (None, "nowhere:predict", "cannot import 'nowhere'"),
        ("NOT_A_FUNCTION = 3\n", "m:NOT_A_FUNCTION", "not callable"),
        ("def f(x, a):\n    return a * x\n", "m:g", "no attribute 'g'"),
        ("raise RuntimeError('boom')\n", "m:f", "RuntimeError: boom"),
        ("import jax.numpy as jnp\ndef f(x, a):\n    return jnp.stack([a, x])\n", "m:f", "one scalar"),
        ("def f(x, a):\n    if x > 0:\n        return a\n    return -a\n", "m:f", "cannot be traced"),
        ("def f(x, *a):\n    return x\n", "m:f", "positional"),
        (None, "os:system", "parameters after x"),
        ("def f(x, a, b):\n    return a * x + b\n", "m:f", "params.b"),
        (None, "not an import path", "import path"),
    ],
)
def test_bad_function_models_exit_2_naming_the_field(tmp_path, module, function, needle):
    if module is not None:
        (tmp_path / "m.py").write_text(module)
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f'model: {{function: "{function}"}}\nparams: {{a: 1.0}}\n')
    out = tmp_path / "out"
    p = run_from(tmp_path, "--config", str(cfg), "--output", str(out))
    assert p.returncode == 2, p.stderr
    line = p.stderr.strip()
    assert "\n" not in line and needle in line and "Traceback" not in line, line
    assert ("model.function" in line) or ("params." in line)
    assert not out.exists()


def test_warm_start_never_answers_for_an_edited_model_file(project, tmp_path):
    env = {**ENV, "JAXFIT_CACHE_DIR": str(tmp_path / "cache")}
    cfg = str(project / "fit" / "decay.yaml")

    def fit():
        p = run_from(project / "elsewhere", "--config", cfg, "--format", "json", env=env)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    cold, warm = fit(), fit()
    assert warm["compile_s"] == 0.0 and warm["params"] == cold["params"]  # the saved executable ran
    (project / "fit" / "decay_model.py").write_text(
        MODEL.replace("a * jnp.exp(-k * x) + c", "a * jnp.exp(-k * x) + c + 1.0")
    )
    edited = fit()
    assert edited["params"]["c"] == pytest.approx(cold["params"]["c"] - 1.0, abs=1e-3)  # the new model ran
