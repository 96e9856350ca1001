"""Many hosts (2 processes on loopback), the compilation cache, exported fits."""

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ENV, ROOT, run_jaxfit, run_python

import jaxfit

SWEEP = [
    "--config",
    "configs/b3_sweep.yaml",
    "--set",
    "batch.init.b3.linspace=[-10, 10, 30001]",
    "--set",
    "block_size=512",
    "--quiet",
]


def run(args, env=None):
    return run_jaxfit(*args, env=env)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_on_loopback_equal_one_process(tmp_path):
    single = run([*SWEEP, "--output", str(tmp_path / "one"), "--format", "json"])
    assert single.returncode == 0, single.stderr
    port, out = free_port(), tmp_path / "two"
    env = {**ENV, "JAX_NUM_CPU_DEVICES": "2"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jaxfit",
                *SWEEP,
                "--output",
                str(out),
                "--distributed",
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert "process 1 finished its share" in outs[1][1]
    with np.load(tmp_path / "one" / "fits.npz") as a, np.load(out / "fits.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])
    assert (
        json.loads((out / "summary.json").read_text())["status_counts"]
        == json.loads(single.stdout)["status_counts"]
    )


def test_share_covers_every_fit_once():
    from jaxfit.output.rundir import share

    n = 1001
    for processes in (1, 2, 3, 7):
        covered = np.zeros(n, int)
        for p in range(processes):
            for lo, hi in share([(0, 400), (600, n)], n, p, processes):
                covered[lo:hi] += 1
        assert (covered[:400] == 1).all() and (covered[400:600] == 0).all() and (covered[600:] == 1).all()


def test_merge_command_refuses_incomplete_and_merges(tmp_path):
    out = tmp_path / "run"
    p = run([*SWEEP, "--output", str(out)])
    assert p.returncode == 0
    p = run(["merge", str(out), "--format", "json"])
    assert p.returncode == 0 and json.loads(p.stdout)["fits"] == 30001
    p = run(["merge", str(tmp_path)])
    assert p.returncode == 2 and "manifest.json" in p.stderr


CACHE_PROBE = """
import sys, jax, jax.monitoring as m
from jaxfit.run import caches as cache
hits = []
m.register_event_listener(lambda name, **kw: hits.append(name) if name.endswith("cache_hits") else None)
cache.enable()
import jaxfit
jaxfit.fit({"train": {"trainable": ["w2", "b3"]}})
print(len(hits))
"""


def test_compilation_cache_is_private_and_reused(tmp_path):
    cache_dir = tmp_path / "cache"
    env = {**ENV, "JAXFIT_CACHE_DIR": str(cache_dir)}
    first = subprocess.run(
        [sys.executable, "-c", CACHE_PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert first.returncode == 0, first.stderr
    assert stat.S_IMODE(os.stat(cache_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(cache_dir / "xla").st_mode) == 0o700
    entries = sorted(p.name for p in (cache_dir / "xla").iterdir())
    assert entries
    second = subprocess.run(
        [sys.executable, "-c", CACHE_PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert int(first.stdout) == 0 and int(second.stdout) >= 1  # the second run hit the cache
    assert sorted(p.name for p in (cache_dir / "xla").iterdir()) == entries


def test_cache_tightens_loose_permissions(tmp_path):
    from jaxfit.run import caches as cache

    loose = tmp_path / "loose"
    loose.mkdir(mode=0o777)
    os.chmod(loose, 0o777)
    cache.private_dir(loose)
    assert stat.S_IMODE(os.stat(loose).st_mode) == 0o700


@pytest.mark.slow
def test_cli_runs_with_cache_and_without(tmp_path):
    env = {**ENV, "JAXFIT_CACHE_DIR": str(tmp_path / "c")}
    assert run([*SWEEP, "--format", "json"], env=env).returncode == 0
    assert any((tmp_path / "c" / "xla").iterdir())  # batches: JAX's compilation cache
    assert run(["--format", "json"], env=env).returncode == 0
    assert any((tmp_path / "c" / "warm").iterdir())  # single fits: a saved executable
    env_off = {**ENV, "JAXFIT_CACHE_DIR": str(tmp_path / "d")}
    assert run(["--format", "json", "--no-cache"], env=env_off).returncode == 0
    assert run([*SWEEP, "--format", "json", "--no-cache"], env=env_off).returncode == 0
    assert not (tmp_path / "d").exists()


@pytest.mark.slow
@pytest.mark.parametrize("cfg", ["configs/b3.yaml", "configs/all_params.yaml"])
def test_exported_step_loads_in_a_fresh_process(tmp_path, cfg):
    path = tmp_path / "step.jaxexport"
    p = run(["export", "--config", cfg, "--set", "train.optimizer=adam", "-o", str(path)])
    assert p.returncode == 0, p.stderr
    probe = f"""
import json, numpy as np, jax
import jaxfit, jaxfit.core.engine, jaxfit.core.model

def untouchable(*args, **kwargs):
    raise AssertionError("the model was traced")

# loading and running must not trace the model
jaxfit.core.model.ssr = jaxfit.core.model.predict = jaxfit.core.engine.ssr = untouchable
e = jaxfit.load_exported({str(path)!r})
p = e.problem(); s = e.init(p)
for _ in range(7):
    s = e.step(s, p)
r = e.fit_many({{"b3": np.linspace(-3, 3, 11)}})
print(json.dumps({{"b3": float(s.params["b3"]), "steps": r["steps"].tolist(), "final": r["params"]["b3"].tolist()}}))
"""
    p = run_python(probe, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    config = jaxfit.load_config(cfg, ["train.optimizer=adam"])
    step, problem = jaxfit.make_step(config), jaxfit.make_problem(config)
    state = jaxfit.make_state(config, problem)
    for _ in range(7):
        state = step(state, problem)
    assert got["b3"] == float(state.params["b3"])
    batch = jaxfit.fit_batch({**config.model_dump(), "batch": {"init": {"b3": {"linspace": [-3, 3, 11]}}}})
    assert got["steps"] == batch.steps.tolist()
    # a separately compiled program (XLA fuses it differently): float32 rounding summed
    # over up to ~2,700 Adam steps (a few dozen ulps), far inside the stopping tolerance
    np.testing.assert_allclose(got["final"], batch.params["b3"], rtol=1e-5)


def test_export_works_on_a_plain_install_and_steps_the_seed(tmp_path):
    # flatbuffers (which jax.export serialises with) is a dependency, not an extra
    from importlib.metadata import requires

    core = [r for r in requires("jaxfit") if "extra ==" not in r]
    assert any(r.startswith("flatbuffers") for r in core), core
    path = tmp_path / "seed.jaxexport"
    p = run(["export", "--config", "configs/b3.yaml", "-o", str(path)])
    assert p.returncode == 0, p.stderr
    probe = f"""
import jaxfit
e = jaxfit.load_exported({str(path)!r})
p = e.problem(); s = e.init(p)
while int(s.status) == 0:
    s = e.step(s, p)
print(round(float(s.params["b3"]), 4), int(s.step))
"""
    p = run_python(probe, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["2.6089", "10"]


def test_export_without_flatbuffers_is_one_error_line(tmp_path):
    # a process where flatbuffers cannot be imported (as on an install that lacks it)
    out = tmp_path / "seed.jaxexport"
    code = f"import sys; sys.modules['flatbuffers'] = None; from jaxfit.cli import main; sys.exit(main(['export', '-o', {str(out)!r}]))"
    p = run_python(code, cwd=ROOT, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.strip().count("\n") == 0 and "pip install flatbuffers" in p.stderr
    assert not out.exists()


def test_load_exported_rejects_other_files(tmp_path):
    bad = tmp_path / "x.jaxexport"
    bad.write_text("not a zip")
    with pytest.raises(jaxfit.ExportError, match="not a jaxfit export"):
        jaxfit.load_exported(bad)


def _fit_json(env, *extra):
    p = run(["--config", "configs/b3.yaml", "--format", "json", *extra], env=env)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    return {k: v for k, v in out.items() if k not in ("compile_s", "run_s")}, out


@pytest.mark.slow
def test_warm_start_gives_the_same_result_and_recovers_from_a_broken_entry(tmp_path):
    env = {**ENV, "JAXFIT_CACHE_DIR": str(tmp_path / "cache")}
    cold, _ = _fit_json(env)
    entries = list((tmp_path / "cache" / "warm").iterdir())
    assert len(entries) == 1 and stat.S_IMODE(os.stat(entries[0]).st_mode) == 0o700
    warm, raw = _fit_json(env)
    assert warm == cold and raw["compile_s"] == 0.0  # nothing compiled: the saved executable ran
    # another override is another computation: a new entry, a different result
    other, _ = _fit_json(env, "--set", "train.learning_rate=0.05")
    assert other != cold and len(list((tmp_path / "cache" / "warm").iterdir())) == 2
    # a corrupted executable is dropped and the fit runs the ordinary way
    (entries[0] / "exe.bin").write_bytes(b"garbage")
    again, raw = _fit_json(env)
    assert again == cold and raw["compile_s"] > 0.0
    # an edited config file is a new key
    cfg = tmp_path / "b3.yaml"
    cfg.write_text(
        (ROOT / "configs" / "b3.yaml").read_text().replace("learning_rate: 0.1", "learning_rate: 0.2")
    )
    p = run(["--config", str(cfg), "--format", "json"], env=env)
    assert json.loads(p.stdout)["steps"] != cold["steps"]


def test_warm_start_in_float64(tmp_path):
    env = {**ENV, "JAXFIT_CACHE_DIR": str(tmp_path / "cache")}
    cold, _ = _fit_json(env, "--set", "precision=float64")
    warm, raw = _fit_json(env, "--set", "precision=float64")
    assert warm == cold and raw["compile_s"] == 0.0 and warm["precision"] == "float64"
    assert warm["params"]["b3"] == jaxfit.fit({"precision": "float64"}).params["b3"]


def test_warm_start_key_covers_every_module_of_the_package():
    # an edit anywhere in the package (core/ included) must invalidate saved executables
    import jaxfit.core.engine
    from jaxfit.cli import warm

    source = Path(jaxfit.core.engine.__file__)
    before = warm.key("configs/b3.yaml", [])
    info = source.stat()
    try:
        os.utime(source, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000))
        assert warm.key("configs/b3.yaml", []) != before
    finally:
        os.utime(source, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert warm.key("configs/b3.yaml", []) == before
