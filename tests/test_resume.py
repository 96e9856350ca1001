"""Interrupted batch runs: nothing half-written looks complete, and --resume
finishes only the missing fits, bit-identical to an uninterrupted run."""

import json
import signal
import subprocess
import time

import numpy as np
import pytest
from conftest import ENV, JAXFIT, ROOT, run_jaxfit

ARGS = [
    "--config",
    "configs/random_restarts.yaml",
    "--set",
    "batch.count=24000",
    "--set",
    "block_size=64",
    "--quiet",
]


def cli(*args):
    return run_jaxfit(*ARGS, *args, timeout=600)


def interrupted(out, sig):
    proc = subprocess.Popen(
        [*JAXFIT, *ARGS, "--output", str(out)],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((out / "parts").glob("0*.npz")):
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "run"
    p = cli("--output", str(out))
    assert p.returncode == 0, p.stderr
    return out


def assert_same_tables(a, b):
    with np.load(a / "fits.npz") as x, np.load(b / "fits.npz") as y:
        assert sorted(x.files) == sorted(y.files)
        for k in x.files:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


@pytest.mark.parametrize(
    "sig",
    [
        pytest.param(signal.SIGINT, marks=pytest.mark.slow),
        pytest.param(signal.SIGTERM, marks=pytest.mark.slow),
        signal.SIGKILL,
    ],
)
def test_interrupt_then_resume_is_bit_identical(tmp_path, uninterrupted, sig):
    out = tmp_path / "run"
    code, err = interrupted(out, sig)
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL
    else:
        assert code == 130 and "--resume" in err and "Traceback" not in err
    # nothing that looks complete: no summary, no merged table; parts are whole files
    assert not (out / "summary.json").exists() and not (out / "fits.npz").exists()
    parts = sorted((out / "parts").glob("*.npz"))
    assert parts, "at least one chunk was saved"
    for part in parts:
        with np.load(part) as z:
            assert len(z["loss"]) > 0
    p = cli("--output", str(out), "--resume", "--format", "json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["fits"] == 24000
    assert_same_tables(out, uninterrupted)
    full = json.loads((uninterrupted / "summary.json").read_text())
    resumed = json.loads((out / "summary.json").read_text())
    for key in ("status_counts", "best", "minima", "steps"):
        assert resumed[key] == full[key]


def test_resume_with_a_different_config_is_refused(tmp_path, uninterrupted):
    out = tmp_path / "run"
    interrupted(out, signal.SIGTERM)
    p = cli("--output", str(out), "--resume", "--set", "train.learning_rate=0.01")
    assert p.returncode == 2 and "different config" in p.stderr and "Traceback" not in p.stderr


def test_resume_of_a_complete_run_does_nothing(uninterrupted):
    before = (uninterrupted / "fits.npz").stat().st_mtime_ns
    p = cli("--output", str(uninterrupted), "--resume")
    assert p.returncode == 0 and "already complete" in p.stderr
    assert (uninterrupted / "fits.npz").stat().st_mtime_ns == before


def test_run_directory_explains_itself(uninterrupted):
    names = {p.name for p in uninterrupted.iterdir()}
    assert {
        "manifest.json",
        "config.yaml",
        "fits.npz",
        "fits.csv",
        "best_trace.csv",
        "summary.json",
        "env.json",
    } <= names
    assert "parts" not in names and not [n for n in names if n.endswith(".tmp")]
    env = json.loads((uninterrupted / "env.json").read_text())
    assert env["versions"]["jax"] and env["devices"]["kind"] and env["precision"] == "float32"
    assert {"wall_s", "compile_s", "run_s"} <= set(env)
    summary = json.loads((uninterrupted / "summary.json").read_text())
    best = summary["best"]
    lines = (uninterrupted / "best_trace.csv").read_text().splitlines()
    assert lines[0].startswith("step,loss,value_w1") and len(lines) - 1 == min(best["steps"], 1000)
