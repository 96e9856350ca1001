"""``python -m jaxfit startup``: whole-process start-up time of the CLI against
``python -c "import jax, optax"``, median of interleaved runs; ``--library``: the first
``jaxfit.curve_fit`` of a fresh process, its persistent compilation cache cold and warm."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

FIRST_FIT = """
import time
t0 = time.perf_counter()
import jax.numpy as jnp, numpy as np
import jaxfit
t1 = time.perf_counter()
x = np.linspace(0, 4, 30)
y = 2 * np.exp(-1.3 * x) + 0.5 + 0.05 * np.random.default_rng(0).standard_normal(({groups}, 30))
jaxfit.curve_fit(lambda x, a, k, c: a * jnp.exp(-k * x) + c, x, y, [1.0, 1.0, 0.0])
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def _wall(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def main(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m jaxfit startup", description=__doc__)
    ap.add_argument("--config", default="configs/b3.yaml")
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument(
        "--library", action="store_true", help="the first jaxfit.curve_fit of a process, cache cold and warm"
    )
    ap.add_argument("--groups", type=int, default=1000, help="--library: data sets of 30 points")
    args = ap.parse_args(argv)
    if args.library:
        return library(args.runs, args.groups)
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "JAXFIT_CACHE_DIR": cache}
        py = sys.executable
        base = [py, "-c", "import jax, optax"]
        cold = [py, "-m", "jaxfit", "--config", args.config, "--no-cache"]
        warm = [py, "-m", "jaxfit", "--config", args.config]
        _wall(warm, env)  # fill the cache
        times: dict[str, list[float]] = {
            "import jax, optax": [],
            "cold (--no-cache)": [],
            "warm (cached)": [],
        }
        for _ in range(args.runs):
            for (_name, series), cmd in zip(times.items(), (base, cold, warm)):
                series.append(_wall(cmd, env))
    ref = statistics.median(times["import jax, optax"])
    for name, series in times.items():
        med = statistics.median(series)
        print(
            f"{name:20s} median {med:.3f} s  ({med / ref:.2f}x import)  min {min(series):.3f}  max {max(series):.3f}"
        )
    return 0


def _first_fit(env: dict[str, str], groups: int) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, "-c", FIRST_FIT.format(groups=groups)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    imported, fitted = map(float, out.stdout.split())
    return imported, fitted


def library(runs: int, groups: int) -> int:
    """The first ``curve_fit`` (``groups`` decays of 30 points) of fresh processes: each
    cold run with an empty cache directory of its own, each warm run with one filled
    before (medians of interleaved runs)."""
    with tempfile.TemporaryDirectory() as tmp:
        warm = {**os.environ, "JAXFIT_CACHE_DIR": str(Path(tmp, "warm"))}
        _first_fit(warm, groups)  # fill it
        cold_fit, warm_fit, imports = [], [], []
        for i in range(runs):
            cold = {**os.environ, "JAXFIT_CACHE_DIR": str(Path(tmp, f"cold{i}"))}
            imported, fitted = _first_fit(cold, groups)
            imports.append(imported)
            cold_fit.append(fitted)
            warm_fit.append(_first_fit(warm, groups)[1])
    print(f"first jaxfit.curve_fit of a process ({groups:,} data sets of 30 points), median of {runs}:")
    print(f"  import jaxfit          {statistics.median(imports):.3f} s")
    print(f"  cache cold (compiles)  {statistics.median(cold_fit):.3f} s  min {min(cold_fit):.3f}")
    print(f"  cache warm             {statistics.median(warm_fit):.3f} s  min {min(warm_fit):.3f}")
    return 0
