import jax
import jax.monitoring
import numpy as np
import pytest
import reference as ref

import jaxfit
from jaxfit import Status
from jaxfit.output.results import fit_result
from jaxfit.plan.lowering import plan_fit
from jaxfit.run.single import fit_and_executable

ALL = list(ref.NAMES)


def test_seed_fit_reproduces_the_seed():
    r = jaxfit.fit("configs/b3.yaml")
    trace = r.trace_rows()
    assert r.init_loss == pytest.approx(20.424, abs=0.01)
    assert trace[0]["loss"] == pytest.approx(20.424, abs=0.01)
    assert trace[0]["grad"]["b3"] == pytest.approx(-15.655, abs=0.01)
    assert trace[0]["step_size"]["b3"] == pytest.approx(-1.5655, abs=0.001)
    assert trace[1]["params"]["b3"] == pytest.approx(1.5655, abs=0.001)
    assert trace[1]["grad"]["b3"] == pytest.approx(-6.262, abs=0.01)
    assert trace[2]["params"]["b3"] == pytest.approx(2.1917, abs=0.001)
    assert r.steps == 10 and r.status == Status.CONVERGED
    assert r.params["b3"] == pytest.approx(2.609, abs=0.002)
    for n in ALL[:-1]:
        assert r.params[n] == ref.SEED[n]  # frozen: exactly as configured


def test_float64_agrees_with_numpy_reference_to_1e10():
    r = jaxfit.fit({"precision": "float64"})
    p, steps, status, trace = ref.gradient_descent(ref.SEED, ["b3"], 0.1, 0.001, 1000)
    assert (r.steps, int(r.status)) == (steps, status)
    assert r.params["b3"] == pytest.approx(p["b3"], abs=1e-10)
    for got, want in zip(r.trace_rows(), trace):
        assert got["grad"]["b3"] == pytest.approx(want["grad"]["b3"], abs=1e-10)
        assert got["loss"] == pytest.approx(want["loss"], abs=1e-10)


@pytest.mark.parametrize("lr", [0.05, 0.1, 0.3])
def test_b3_converges_to_closed_form_minimiser(lr):
    r = jaxfit.fit({"precision": "float64", "train": {"learning_rate": lr, "tolerance": 1e-12}})
    assert r.status == Status.CONVERGED
    assert r.params["b3"] == pytest.approx(ref.closed_form_b3(), abs=1e-10)
    assert ref.closed_form_b3() == pytest.approx(2.609185, abs=1e-6)


def test_all_params_match_float64_numpy_gradient_descent():
    cfg = {
        "precision": "float64",
        "train": {"trainable": ALL, "learning_rate": 0.1, "tolerance": 1e-3, "max_steps": 10000},
    }
    r = jaxfit.fit(cfg)
    p, steps, status, _ = ref.gradient_descent(ref.SEED, ALL, 0.1, 1e-3, 10000)
    assert (r.steps, int(r.status)) == (steps, status)
    for n in ALL:
        assert r.params[n] == pytest.approx(p[n], abs=1e-9)
    assert r.loss == pytest.approx(ref.ssr(p), abs=1e-12)


def test_frozen_params_are_bit_identical():
    # the frozen values are read back from the compiled fit's outputs
    cfg = {"params": {"w1": 0.1 + 0.2}, "train": {"trainable": ["w2", "b3"]}}
    *_, outputs = fit_and_executable(plan_fit(cfg))
    assert outputs["params.w1"] == np.float32(0.1 + 0.2) and outputs["params.w3"] == np.float32(-1.22)
    r = jaxfit.fit(cfg)  # reported as given, since the device held exactly that value
    assert r.params["w1"] == 0.1 + 0.2 and r.params["w3"] == -1.22
    assert r.params["w2"] != -3.53
    moved = fit_result(plan_fit(cfg).facts, {**outputs, "params.w1": np.float32(0.5)})
    assert moved.params["w1"] == 0.5  # a frozen value that moved on the device shows


def test_max_steps_status():
    r = jaxfit.fit({"train": {"max_steps": 3}})
    assert (r.steps, r.status) == (3, Status.MAX_STEPS)


def test_divergence_is_reported_never_converged():
    r = jaxfit.fit({"train": {"learning_rate": 1.0}, "precision": "float64"})
    assert r.status == Status.DIVERGED
    assert not np.isfinite(r.loss)
    # the reference diverges at the same step
    with np.errstate(over="ignore", invalid="ignore"):
        _, steps, status, _ = ref.gradient_descent(ref.SEED, ["b3"], 1.0, 0.001, 1000)
    assert status == ref.DIVERGED and r.steps == steps


@pytest.mark.parametrize(
    "opt", [{"name": "momentum", "momentum": 0.5}, {"name": "momentum", "nesterov": True}, "adam"]
)
def test_other_optimizers_reach_the_minimum(opt):
    r = jaxfit.fit(
        {
            "precision": "float64",
            "train": {"optimizer": opt, "learning_rate": 0.05, "tolerance": 1e-9, "max_steps": 100000},
        }
    )
    assert r.status == Status.CONVERGED
    assert r.params["b3"] == pytest.approx(ref.closed_form_b3(), abs=1e-4)


def test_long_trace_is_thinned_and_says_so():
    r = jaxfit.fit({"train": {"learning_rate": 1e-4, "max_steps": 1500, "tolerance": 1e-9}})
    assert r.steps == 1500 and len(r.trace_rows()) == jaxfit.run.single.TRACE_LIMIT
    assert r.to_dict()["trace_complete"] is False


class CompileCounter:
    def __init__(self):
        self.events = []

    def __call__(self, event, duration, **kwargs):
        self.events.append(event)

    def count(self, suffix):
        return sum(e.endswith(suffix) for e in self.events)


@pytest.fixture
def compiles():
    counter = CompileCounter()
    jax.monitoring.register_event_duration_secs_listener(counter)
    yield counter
    jax.monitoring.unregister_event_duration_listener(counter)


def test_make_step_compiles_once_per_trainable_set(compiles):
    # a trainable set and optimizer no other test uses, so the cache is cold
    base = {"train": {"trainable": ["w4", "b3"], "optimizer": {"name": "momentum", "momentum": 0.3}}}
    step = jaxfit.make_step(base)
    for lr, tol, steps, b3 in [(0.1, 1e-3, 1000, 0.0), (0.05, 1e-4, 50, 1.5), (0.2, 1e-2, 7, -3.0)]:
        cfg = jaxfit.load_config(
            base,
            [
                f"train.learning_rate={lr}",
                f"train.tolerance={tol}",
                f"train.max_steps={steps}",
                f"params.b3={b3}",
            ],
        )
        assert jaxfit.make_step(cfg) is step
        problem = jaxfit.make_problem(cfg)
        state = jaxfit.make_state(cfg, problem)
        for _ in range(3):
            state = step(state, problem)
    assert compiles.count("jaxpr_trace_duration") >= 1
    traced_step = [e for e in compiles.events if e.endswith("backend_compile_duration")]
    # one compile for the step, one for make_state's init: not one per config
    assert len(traced_step) == 2


def test_step_loop_equals_fit_and_vmaps():
    cfg = jaxfit.load_config("configs/b3.yaml")
    step, problem = jaxfit.make_step(cfg), jaxfit.make_problem(cfg)
    state = jaxfit.make_state(cfg, problem)
    while state.status == Status.RUNNING:
        state = step(state, problem)
    r = jaxfit.fit(cfg)
    assert int(state.step) == r.steps and float(state.params["b3"]) == r.params["b3"]
    # vmap the public step over three starting b3 values
    starts = jax.numpy.asarray([0.0, 1.0, 5.0])
    states = jax.vmap(lambda b: jaxfit.make_state(cfg, problem, {"b3": b}))(starts)
    states = jax.vmap(step, in_axes=(0, None))(states, problem)
    for i, b in enumerate([0.0, 1.0, 5.0]):
        single = step(jaxfit.make_state(cfg, problem, {"b3": jax.numpy.float32(b)}), problem)
        assert float(states.params["b3"][i]) == float(single.params["b3"])


def test_float64_api_needs_x64_said_clearly():
    with pytest.raises(jaxfit.ConfigError, match="float64"):
        jaxfit.make_problem({"precision": "float64"})


def test_larger_data_sets_match_numpy_reference():
    # more observations than SMALL_DATA: the vectorised loss path
    x = np.linspace(0, 1, 25)
    y = np.sin(3 * x) ** 2
    cfg = {
        "precision": "float64",
        "data": {"x": x.tolist(), "y": y.tolist()},
        "train": {"trainable": ["w3", "b3"], "tolerance": 1e-6, "learning_rate": 0.01},
    }
    r = jaxfit.fit(cfg)
    p, steps, status, _ = ref.gradient_descent(ref.SEED, ["w3", "b3"], 0.01, 1e-6, 1000, x, y)
    assert (r.steps, int(r.status)) == (steps, status)
    assert r.params["w3"] == pytest.approx(p["w3"], abs=1e-9) and r.params["b3"] == pytest.approx(
        p["b3"], abs=1e-9
    )


def test_fit_many_equals_solo_fits_row_by_row():
    # one batch mixing early and late convergence, divergence, max_steps and a run
    # longer than the trace: each row must be the solo fit of that config
    from jaxfit.plan.lowering import spec_of
    from jaxfit.run.single import compiled_fit, compiled_fit_many, fit_inputs, fit_inputs_many

    limit = 16
    overrides = [
        {"params": {"b3": 0.0}},
        {"params": {"b3": 2.6}},
        {"params": {"b3": -40.0}, "train": {"learning_rate": 0.01}},
        {"train": {"learning_rate": 5.0}},  # diverges
        {"train": {"max_steps": 3}},
        {"train": {"learning_rate": 0.001, "tolerance": 1e-9, "max_steps": 40}},  # past the trace
    ]
    configs = [jaxfit.load_config(o) for o in overrides]
    spec = spec_of(configs[0])
    inputs, tree = fit_inputs_many([plan_fit(c) for c in configs])
    many = jax.device_get(compiled_fit_many(spec, limit, tree)(*inputs))
    solo_fn = compiled_fit(spec, limit, tree)
    statuses = set()
    for i, config in enumerate(configs):
        one, one_tree = fit_inputs(plan_fit(config))
        assert one_tree == tree
        solo = jax.device_get(solo_fn(*one))
        statuses.add(int(solo["status"]))
        for name, value in solo.items():
            row = many[name][i]
            if name in ("loss", "trace.loss", "init_loss"):  # vectorised vs scalar: last bit
                np.testing.assert_allclose(row, value, rtol=1e-6, equal_nan=True)
            else:
                np.testing.assert_array_equal(row, value, err_msg=f"fit {i}: {name}")
    assert statuses == {Status.CONVERGED, Status.DIVERGED, Status.MAX_STEPS}
    assert int(many["steps"][5]) == 40 > limit  # the trace keeps its first 16 steps


def test_stacked_inputs_rows_equal_single_inputs():
    from jaxfit.run.single import fit_inputs, fit_inputs_many

    configs = [
        jaxfit.load_config(
            {
                "params": {"b3": float(b), "w1": 1.0 + b},
                "train": {"trainable": ["b3", "w2"], "learning_rate": 0.1 * (b + 1)},
                "data": {"x": [0.0, b, 1.0], "y": [1.0, 0.0, b]},
            }
        )
        for b in (0.0, 0.5, 2.0)
    ]
    stacked, tree = fit_inputs_many([plan_fit(c) for c in configs])
    for i, config in enumerate(configs):
        single, single_tree = fit_inputs(plan_fit(config))
        assert single_tree == tree
        for s, one in zip(stacked, single):
            assert s[i].dtype == one.dtype and s[i].shape == one.shape
            np.testing.assert_array_equal(s[i], one)
        # and against the config's own numbers
        params, problem = jax.tree.unflatten(tree, [s[i] for s in stacked])
        f32 = np.float32
        assert set(params) == {"b3", "w2"} and params["b3"] == f32(config.params["b3"])
        assert problem.frozen["w1"] == f32(config.params["w1"]) and "b3" not in problem.frozen
        np.testing.assert_array_equal(problem.data.x, np.asarray(config.data.x, f32))
        assert problem.hyper.learning_rate == f32(config.train.learning_rate)
        assert problem.hyper.max_steps.dtype == np.int32
