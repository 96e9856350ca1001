"""``python -m jaxfit startup``: whole-process start-up time of the CLI against
``python -c "import jax, optax"``, median of interleaved runs."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence


def _wall(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def main(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m jaxfit startup", description=__doc__)
    ap.add_argument("--config", default="configs/b3.yaml")
    ap.add_argument("--runs", type=int, default=11)
    args = ap.parse_args(argv)
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
