"""Test set-up: four simulated CPU devices (before JAX starts), so multi-device
code runs for real on any machine."""

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("JAX_NUM_CPU_DEVICES", "4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "JAXFIT_CACHE_DIR" not in os.environ:
    # one persistent compilation cache for this session (made by the first process,
    # inherited by xdist's workers and the processes tests start), not the user's own
    import atexit
    import shutil
    import tempfile

    _cache = tempfile.mkdtemp(prefix="jaxfit-tests-cache-")
    os.environ["JAXFIT_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parents[1]


ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}
"""The environment of the jaxfit processes tests start."""
JAXFIT = [sys.executable, "-m", "jaxfit"]


def run_jaxfit(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m jaxfit ARGS`` as a real process in the repository root."""
    return subprocess.run(
        [*JAXFIT, *args], cwd=ROOT, env=env or ENV, capture_output=True, text=True, timeout=timeout
    )


def run_python(
    code: str, cwd: Path = ROOT, env: dict | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """``python -c CODE`` as a real, fresh process (nothing traced or compiled in it yet)."""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env or ENV, capture_output=True, text=True, timeout=timeout
    )


def chunk_hlo(cfg: object, block_size: int = 256) -> str:
    """The compiled HLO text of the batch program (one chunk) of ``cfg`` on every local device."""
    import jax
    import numpy as np

    import jaxfit
    from jaxfit.plan.lowering import batch_data, hyper_of, plan_of, spec_of
    from jaxfit.plan.sweep import tables_as
    from jaxfit.run.batching import Inputs, Program, chunk_buffers, compiled_chunk, default_layout

    config = jaxfit.load_config(cfg)
    plan, tables = plan_of(config)
    devices = tuple(jax.local_devices())
    program, layout = Program(spec_of(config), plan), default_layout("cpu", len(devices), block_size)
    data, per_group = batch_data(config)
    inputs = Inputs(tables_as(tables, np.float32), hyper_of(config), data, per_group)
    out = chunk_buffers(program, layout, devices, inputs)
    lowered = compiled_chunk(program, layout, devices).lower(np.int32(0), np.int32(10), inputs, out)
    return lowered.compile().as_text()
