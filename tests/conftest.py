"""Test set-up: four simulated CPU devices (before JAX starts), so multi-device
code runs for real on any machine."""

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("JAX_NUM_CPU_DEVICES", "4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
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
