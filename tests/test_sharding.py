"""Sharding over simulated CPU devices: local loops, padding, same results."""

import jax
import numpy as np
import pytest
from conftest import chunk_hlo

import jaxfit

CFG = {"train": {"trainable": ["w3", "b3"]}, "batch": {"init": {"b3": {"linspace": [-8, 8, 4099]}}}}


def test_four_devices_are_visible():
    assert len(jax.devices()) == 4


def test_compiled_chunk_has_no_cross_device_reduction():
    hlo = chunk_hlo(CFG)
    assert "while" in hlo
    for collective in ("all-reduce", "all-gather", "collective-permute", "all-to-all", "reduce-scatter"):
        assert collective not in hlo


def test_padding_for_batch_not_divisible_by_devices():
    b4 = jaxfit.fit_batch(CFG, devices=4, block_size=64)  # 4099 = 16 * 256 + 3: padded
    b1 = jaxfit.fit_batch(CFG, devices=1, block_size=64)
    assert b4.fits == 4099 and b4.devices == 4
    for name in ("w3", "b3"):
        np.testing.assert_array_equal(b4.params[name], b1.params[name])
    np.testing.assert_array_equal(b4.steps, b1.steps)
    assert (b4.status == jaxfit.Status.CONVERGED).all()


def test_too_many_devices_is_a_config_error():
    import pytest

    with pytest.raises(jaxfit.ResourceError, match="devices"):
        jaxfit.fit_batch(CFG, devices=64)


@pytest.mark.parametrize(
    ("env", "prelude", "expected"),
    [
        ({}, "", "cores"),
        ({"JAXFIT_ALL_CORES": "0"}, "", 1),
        ({"JAX_NUM_CPU_DEVICES": "1"}, "", 1),
        ({}, "import jax; jax.numpy.zeros(1); ", 1),  # JAX already started: what it has
    ],
)
def test_fit_batch_uses_every_core_by_default(env, prelude, expected):
    import os

    from conftest import ENV, ROOT, run_python

    base = {k: v for k, v in ENV.items() if k not in ("JAX_NUM_CPU_DEVICES", "JAXFIT_ALL_CORES")}
    code = (
        prelude + "import jaxfit; print(jaxfit.fit_batch('configs/b3_sweep.yaml', ranges=[(0, 100)]).devices)"
    )
    p = run_python(code, cwd=ROOT, env={**base, **env}, timeout=120)
    assert p.returncode == 0, p.stderr
    want = len(os.sched_getaffinity(0)) if expected == "cores" else expected
    assert int(p.stdout) == want


def test_a_short_batch_is_split_evenly_over_the_devices():
    # one b3 fit per start, fewer fits than one call holds: each device takes a quarter
    cfg = {"batch": {"init": {"b3": {"linspace": [-8, 8, 1001]}}}}
    handed = []
    b4 = jaxfit.fit_batch(
        cfg, devices=4, on_chunk=lambda first, chunk: handed.append((first, len(chunk.loss)))
    )
    assert handed == [(0, 251), (251, 251), (502, 251), (753, 248)]
    b1 = jaxfit.fit_batch(cfg, devices=1)
    np.testing.assert_array_equal(b4.params["b3"], b1.params["b3"])
    np.testing.assert_array_equal(b4.steps, b1.steps)
