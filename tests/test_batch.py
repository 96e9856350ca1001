"""The batch engine: vmap == loop, per-fit stopping, one compilation, determinism."""

import jax
import numpy as np
import pytest
import reference as ref
from conftest import chunk_hlo
from test_fit import compiles  # noqa: F401 - fixture

import jaxfit
from jaxfit import Status


def single(cfg, **params):
    return jaxfit.fit(jaxfit.load_config(cfg, [f"params.{k}={v}" for k, v in params.items()]))


def test_vmap_equals_loop_of_single_fits_with_mixed_statuses():
    # lr 0.1 converges; lr 0.45 is slow (max_steps); lr 1.0 diverges; all in one batch
    cfg = {
        "train": {"max_steps": 60},
        "batch": {"init": {"b3": {"values": [-5.0, 0.0, 4.0]}}, "learning_rate": [0.1, 0.33, 1.0]},
    }
    b = jaxfit.fit_batch(cfg, block_size=4)
    assert set(b.status.tolist()) == {Status.CONVERGED, Status.MAX_STEPS, Status.DIVERGED}
    for i in range(b.fits):
        lr, b3 = float(b.learning_rate[i]), float(b.init["b3"][i])
        r = single({**cfg, "batch": None, "train": {"max_steps": 60, "learning_rate": lr}}, b3=b3)
        assert (int(b.steps[i]), int(b.status[i])) == (r.steps, int(r.status))
        if r.status != Status.DIVERGED:
            assert float(b.params["b3"][i]) == r.params["b3"]
            assert float(b.loss[i]) == pytest.approx(r.loss, rel=1e-6, abs=1e-12)


def test_seed_sweep_finds_the_single_minimum_from_every_start():
    b = jaxfit.fit_batch(
        {"train": {"tolerance": 1e-4}, "batch": {"init": {"b3": {"linspace": [-10, 10, 20001]}}}}
    )
    assert b.status_counts()["converged"] == 20001
    minima = b.minima()
    assert len(minima) == 1 and minima[0]["fits"] == 20001
    assert minima[0]["params"]["b3"] == pytest.approx(ref.closed_form_b3(), abs=2e-4)
    np.testing.assert_allclose(b.init["b3"], np.linspace(-10, 10, 20001), atol=2e-6)


def test_all_params_batch_matches_float64_numpy_fits():
    cfg = {
        "precision": "float64",
        "train": {"trainable": list(ref.NAMES), "learning_rate": 0.05, "tolerance": 1e-5, "max_steps": 3000},
        "batch": {"init": {n: {"normal": {"mean": ref.SEED[n], "std": 0.3}} for n in ref.NAMES}, "count": 12},
    }
    b = jaxfit.fit_batch(cfg)
    for i in range(b.fits):
        start = {n: float(b.init[n][i]) for n in ref.NAMES}
        p, steps, status, _ = ref.gradient_descent(start, ref.NAMES, 0.05, 1e-5, 3000)
        assert (int(b.steps[i]), int(b.status[i])) == (steps, status)
        for n in ref.NAMES:
            assert float(b.params[n][i]) == pytest.approx(p[n], abs=1e-8)


def test_one_compilation_serves_every_batch_size(compiles):  # noqa: F811
    base = {
        "train": {"trainable": ["b2", "b3"]},
        "batch": {"init": {"b3": {"linspace": [-1, 1, 10]}}, "learning_rate": [0.1, 0.05]},
    }
    for n, lo, lrs in [(10, -1, [0.1, 0.05]), (3000, -4, [0.2, 0.01]), (70000, 2, [0.07, 0.03])]:
        cfg = jaxfit.load_config(
            base, [f"batch.init.b3.linspace=[{lo}, 5, {n}]", f"batch.learning_rate={lrs}"]
        )
        b = jaxfit.fit_batch(cfg)
        assert b.fits == 2 * n and (b.status == Status.CONVERGED).all()
    assert compiles.count("backend_compile_duration") == 1


@pytest.mark.slow
def test_results_are_bit_identical_across_block_sizes_and_devices():
    cfg = {
        "train": {"trainable": ["w1", "b3"], "max_steps": 500},
        "batch": {
            "init": {"b3": {"uniform": {"low": -5, "high": 5}}, "w1": {"normal": {"mean": 3, "std": 1}}},
            "count": 3001,
            "seed": 7,
        },
    }
    runs = [
        jaxfit.fit_batch(cfg, devices=d, block_size=bs) for d, bs in [(1, 1024), (4, 1024), (2, 128), (3, 7)]
    ]
    assert len(jax.local_devices()) >= 4
    first = runs[0]
    for other in runs[1:]:
        for n in ref.NAMES:
            np.testing.assert_array_equal(first.params[n], other.params[n])
            np.testing.assert_array_equal(first.init[n], other.init[n])
        np.testing.assert_array_equal(first.steps, other.steps)
        np.testing.assert_array_equal(first.status, other.status)
        np.testing.assert_array_equal(first.loss, other.loss)


def test_random_draws_depend_on_seed():
    cfg = {"batch": {"init": {"b3": {"normal": {"mean": 0, "std": 1}}}, "count": 2000}}
    a, b = jaxfit.fit_batch(cfg), jaxfit.fit_batch({**cfg, "batch": {**cfg["batch"], "seed": 1}})
    assert not np.array_equal(a.init["b3"], b.init["b3"])
    assert abs(float(np.mean(a.init["b3"]))) < 0.1 and abs(float(np.std(a.init["b3"])) - 1) < 0.1
    assert (a.status == Status.CONVERGED).all()


def test_grid_is_a_cartesian_product():
    cfg = {
        "batch": {
            "init": {"w1": {"values": [1.0, 2.0]}, "b3": {"linspace": [0, 1, 3]}},
            "learning_rate": [0.1, 0.2],
            "count": 2,
        }
    }
    b = jaxfit.fit_batch(cfg)
    got = list(zip(b.init["w1"].tolist(), b.init["b3"].tolist(), np.round(b.learning_rate, 6).tolist()))
    want = [(w, x, lr) for w in (1.0, 2.0) for x in (0.0, 0.5, 1.0) for lr in (0.1, 0.2) for _ in range(2)]
    assert got == [(w, x, pytest.approx(lr)) for w, x, lr in want]


@pytest.mark.slow
def test_streamed_lanes_equal_blocks_bit_for_bit():
    # seven parameters from a wide normal: step counts vary widely, some fits hit
    # max_steps, some diverge; streamed lanes must give every fit exactly as blocks do
    from jaxfit.plan.lowering import dtype_of, hyper_of, plan_of, precision, problem_of, spec_of
    from jaxfit.plan.sweep import tables_as
    from jaxfit.run.batching import Inputs, Layout, Program, run_chunks

    cfg = jaxfit.load_config(
        {
            "train": {"trainable": list(ref.NAMES), "max_steps": 300},
            "batch": {
                "init": {n: {"normal": {"mean": 0, "std": 2}} for n in ref.NAMES},
                "learning_rate": [0.05, 0.2, 3.0],
                "count": 200,
            },
        }
    )
    plan, tables = plan_of(cfg)
    devices = jax.local_devices()

    def run(layout):
        chunks = {}
        with precision(cfg):
            run_chunks(
                Program(spec_of(cfg), plan),
                Inputs(tables_as(tables, dtype_of(cfg)), hyper_of(cfg), problem_of(cfg).data),
                layout=layout,
                devices=devices[: layout.devices],
                ranges=[(0, cfg.batch.fits)],
                on_chunk=lambda first, chunk: chunks.__setitem__(first, chunk),
            )
        parts = [chunks[k] for k in sorted(chunks)]
        return jax.tree.map(lambda *a: np.concatenate(a), *parts)

    blocks = run(Layout(1, 4, 64))
    assert len(set(blocks.status.tolist())) == 3  # converged, max_steps, diverged
    assert blocks.steps.min() < 50 and blocks.steps.max() == 300
    for layout in (Layout(1, 4, 64, refill=8), Layout(3, 5, 7, refill=8), Layout(4, 2, 128, refill=3)):
        streamed = run(layout)
        for a, b in zip(jax.tree.leaves(blocks), jax.tree.leaves(streamed)):
            np.testing.assert_array_equal(a, b, err_msg=str(layout))


def _inner_loop_ops(cfg) -> set[str]:
    """The HLO opcodes the innermost while loop of the batch program runs per step."""
    import re

    hlo = chunk_hlo(cfg)
    bodies = {name: text for name, text in re.findall(r"^(%\S+) .*?\{\n(.*?)^\}", hlo, re.M | re.S)}
    called = lambda text: re.findall(r"(?:calls|body|to_apply)=(%[\w.\-]+)", text)  # noqa: E731
    whiles = re.findall(r"while\(.*?body=(%[\w.\-]+)", hlo)
    inner = [b for b in whiles if not any("while(" in bodies[c] for c in [b, *called(bodies[b])])]
    assert len(inner) == 1  # the block's step loop (inside the loop over blocks)
    ops, todo = set(), list(inner)
    while todo:
        text = bodies[todo.pop()]
        ops |= set(re.findall(r"= \S+ ([a-z\-]+)\(", text))
        todo += called(text)
    return ops


@pytest.mark.parametrize("varying", ["shared", "per fit"])
def test_frozen_hidden_nodes_are_computed_once_not_every_step(varying):
    # b3 trains: both softplus nodes are a fixed curve (shared by every fit, or one per
    # fit when a batch varies a frozen w1); the step loop must not evaluate them again
    init = {"b3": {"linspace": [-5, 5, 64]}}
    if varying == "per fit":
        init["w1"] = {"linspace": [3.0, 3.6, 64]}
    ops = _inner_loop_ops({"batch": {"init": init}})
    assert "add" in ops and not ops & {"exponential", "log-plus-one", "log"}
    # the check can fail: once w1 trains, its node is evaluated at every step
    trained = _inner_loop_ops({"train": {"trainable": ["w1", "b3"]}, "batch": {"init": init}})
    assert trained & {"exponential", "log-plus-one"}


@pytest.mark.parametrize("trainable", [["b2"], ["w4", "b2"]])  # blocks, streamed lanes
def test_reused_output_buffers_never_leak_an_earlier_batch(trainable):
    def batch(n, lo, hi):
        return {"train": {"trainable": trainable}, "batch": {"init": {"b2": {"linspace": [lo, hi, n]}}}}

    first = jaxfit.fit_batch(batch(7, -1, 1))
    jaxfit.fit_batch(batch(50_000, -3, 3))  # same program: its output buffers are kept for the next batch
    again = jaxfit.fit_batch(batch(7, -1, 1))  # written over the bigger batch's buffers
    for field in ("loss", "steps", "status"):
        np.testing.assert_array_equal(getattr(again, field), getattr(first, field))
    for name in trainable:
        np.testing.assert_array_equal(again.params[name], first.params[name])


def test_batches_of_alternating_programs_trace_each_ones_output_shapes_once(monkeypatch):
    # only the last batch's output buffers are kept: a batch after another program's
    # makes new ones, from shapes traced once per program (a trace is ~0.2 s)
    from collections import OrderedDict

    from jaxfit.run.batching import blocks, sharded

    monkeypatch.setattr(sharded, "_SHAPES", OrderedDict())
    traced, unstepped = [], blocks.unstepped
    monkeypatch.setattr(blocks, "unstepped", lambda *args: traced.append(args[1]) or unstepped(*args))
    configs = [
        {"train": {"trainable": trainable}, "batch": {"init": {"b2": {"linspace": [-1, 1, 7]}}}}
        for trainable in (["b2"], ["w4", "b2"])  # blocks, streamed lanes
    ]
    first = [jaxfit.fit_batch(cfg) for cfg in configs]
    again = [jaxfit.fit_batch(cfg) for cfg in configs * 2][2:]
    assert len(traced) == 2 and traced[0] != traced[1]
    for a, b in zip(first, again):
        for field in ("loss", "steps", "status"):
            np.testing.assert_array_equal(getattr(b, field), getattr(a, field))
        for name in a.trainable:
            np.testing.assert_array_equal(b.params[name], a.params[name])
            np.testing.assert_array_equal(b.stderr[name], a.stderr[name])


def test_kept_output_buffers_serve_only_batches_of_their_own_precision():
    cfg = {"train": {"trainable": ["w3", "b1"]}, "batch": {"init": {"b1": {"linspace": [-2, 2, 300]}}}}
    jaxfit.fit_batch(cfg)  # float32, leaving its buffers to the next batch of this program
    f64 = jaxfit.fit_batch({**cfg, "precision": "float64"})
    # float64 results held in float64 all the way: each loss is its parameters' SSR
    for i in range(0, f64.fits, 37):
        r = ref.Y - ref.predict({n: float(f64.params[n][i]) for n in ref.NAMES})
        assert float(f64.loss[i]) == pytest.approx(float(r @ r), rel=1e-12)
