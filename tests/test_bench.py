"""The benchmark's peers compute the same fits, and the benchmark runs."""

import re

import numpy as np
import pytest
import reference as ref
from conftest import run_jaxfit

import jaxfit
from jaxfit.benchmarks.peers import numpy_gd, numpy_w1, numpy_w2


def test_numpy_peer_matches_the_reference():
    rng = np.random.default_rng(0)
    init = {k: rng.normal(size=30) for k in ref.NAMES}
    for trainable in (["b3"], list(ref.NAMES), ["w1", "b3"]):
        params, loss, steps, status = numpy_gd(init, trainable, 0.05, 1e-5, 2000, np.float64)
        for i in range(0, 30, 5):
            p, n, s, _ = ref.gradient_descent({k: init[k][i] for k in ref.NAMES}, trainable, 0.05, 1e-5, 2000)
            assert (n, s) == (steps[i], status[i])
            if s == ref.CONVERGED:
                assert max(abs(p[k] - params[k][i]) for k in trainable) < 1e-9
                assert abs(loss[i] - ref.ssr(p)) < 1e-12


def test_lean_peers_match_the_reference():
    b0 = np.linspace(-10, 10, 41)
    b3, steps = numpy_w1(b0)
    for i in range(0, 41, 8):
        p, n, _, _ = ref.gradient_descent({**ref.SEED, "b3": b0[i]}, ["b3"], 0.1, 1e-4, 1000)
        assert n == steps[i] and abs(p["b3"] - b3[i]) < 1e-9
    starts = np.random.default_rng(1).normal(size=(12, 7))
    P, steps = numpy_w2(starts)
    for i in range(0, 12, 3):
        p, n, s, _ = ref.gradient_descent(dict(zip(ref.NAMES, starts[i])), list(ref.NAMES), 0.05, 1e-5, 2000)
        if s != ref.DIVERGED:
            assert n == steps[i] and max(abs(p[k] - P[i, j]) for j, k in enumerate(ref.NAMES)) < 1e-9


@pytest.mark.slow
def test_quick_benchmark_prints_ratios():
    p = run_jaxfit("bench", "--quick", timeout=600)
    assert p.returncode == 0, p.stderr
    assert "jaxfit/peer" in p.stdout and "lean NumPy" in p.stdout and "scipy curve_fit loop" in p.stdout
    for name in ("W1", "W2", "W4"):
        assert name in p.stdout
    assert "W1 agreement with NumPy (float32): same steps" in p.stdout
    assert "fixed cost" in p.stdout and "ns per fit-step" in p.stdout and "peak RSS" in p.stdout
    assert "W4 quality: 0 of" in p.stdout
    costs = re.findall(r"  (W1|W4|W5 through a config): ([0-9.]+) ms / ([0-9.]+) ms = ([0-9.]+)x", p.stdout)
    assert [c[0] for c in costs] == ["W1", "W4", "W5 through a config"], p.stdout
    for _, with_ms, bare_ms, ratio in costs:
        assert float(with_ms) > 0 and float(bare_ms) > 0
        assert abs(float(with_ms) / float(bare_ms) / float(ratio) - 1) < 0.05  # printed to 0.1 ms


def test_serve_benchmark_runs_both_servers_and_prints_the_ratio():
    p = run_jaxfit(
        "bench",
        "--serve",
        "--serve-clients",
        "8",
        "--serve-requests",
        "3",
        "--serve-rounds",
        "1",
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    rows = [line.split() for line in p.stdout.splitlines() if line.startswith(("batching", "no batching"))]
    assert len(rows) == 2 and all(row[-2] == "0" for row in rows)  # no failed request
    assert "throughput ratio:" in p.stdout and "p99 ms" in p.stdout
    assert "server CPU us/request" in p.stdout
    bad = run_jaxfit("bench", "--serve", "--serve-rounds", "0")
    assert bad.returncode == 2 and "--serve-rounds" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_the_model_interval_and_global_benches_run_at_small_sizes():
    from jaxfit.benchmarks import globalfits, intervals, models

    rows = models.run(10, 2)
    assert [r["precision"] for r in rows] == ["float32", "float64"] and all(r["worse"] == 0 for r in rows)
    s = intervals.speed(20, 2)
    assert s["found"] == s["sides"] and s["worst_rel"] < 1e-3
    x, Y = globalfits.traces(200)
    fit = globalfits.ours(x, Y)["fit"]
    assert fit.status == jaxfit.Status.CONVERGED
    np.testing.assert_allclose(fit.shared, globalfits.RATES, rtol=0.05)
