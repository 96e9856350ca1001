"""One compiled program for any number of data sets, and few for any length: the
batch's size never enters a program's shapes (its data sets reach the devices a
window at a time) and lengths are padded to ``curvefit_args.bucket`` (quarter-octave
steps). Compilations are counted by JAX itself, in a fresh process."""

from __future__ import annotations

import json

import pytest
from conftest import ENV, run_python

from jaxfit.curvefit_args import bucket

COUNTED = """
import json
import jax, jax.numpy as jnp, numpy as np
from jax import monitoring
import jaxfit

compiles = []
monitoring.register_event_duration_secs_listener(
    lambda event, seconds, **kw: compiles.append(1) if event == "/jax/core/compile/backend_compile_duration" else None
)
rng = np.random.default_rng(0)

def data(groups, n):
    x = np.linspace(0, 4, n)
    return x, 2 * np.exp(-1.3 * x) + 0.5 + 0.05 * rng.standard_normal((groups, n))

def warm_up(x, a, k, c):  # another model: JAX's own small programs compile here
    return a * jnp.exp(-k * x) - c

def decay(x, a, k, c):
    return a * jnp.exp(-k * x) + c

x, y = data(3, 30)
jaxfit.curve_fit(warm_up, x, y, [1.0, 1.0, 0.0])
counts = {}
before = len(compiles)
for groups in (1, 2, 5000, 6000, 7000, 20000):
    x, y = data(groups, 30)
    popt, _ = jaxfit.curve_fit(decay, x, y[0] if groups == 1 else y, [1.0, 1.0, 0.0])
    assert np.allclose(np.reshape(popt, (-1, 3)).mean(axis=0), [2, 1.3, 0.5], atol=0.1), popt
counts["sizes"] = len(compiles) - before
before = len(compiles)
for n in (13, 14, 15, 16):
    x, y = data(50, n)
    jaxfit.curve_fit(decay, x, y, [1.0, 1.0, 0.0])
counts["lengths"] = len(compiles) - before
print(json.dumps(counts))
"""


@pytest.mark.slow
def test_any_batch_size_one_compile_and_lengths_by_bucket():
    p = run_python(COUNTED, env={**ENV, "JAXFIT_CACHE_DIR": "off"}, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    counts = json.loads(p.stdout.strip().splitlines()[-1])
    # G = 1 (one data set, scipy's call), 2, 5,000, 6,000, 7,000, 20,000 at n = 30: one program
    assert counts["sizes"] == 1, counts
    # n = 13 and 14 pad to 14, 15 and 16 to 16: two programs
    assert counts["lengths"] == 2, counts


def test_buckets_are_quarter_octaves_and_few():
    sizes = [bucket(n) for n in range(1, 1001)]
    assert all(n <= b for n, b in zip(range(1, 1001), sizes))
    assert all(b <= max(8, 1.25 * n) for n, b in zip(range(1, 1001), sizes))  # at most a quarter more
    assert len(set(sizes[9:])) == 28 and bucket(25) == 28 and bucket(30) == 32 and bucket(1000) == 1024


def test_a_padded_fit_is_the_fit_of_its_points():
    """Padding changes no answer: the padded points are masked out of every sum."""
    import jax.numpy as jnp
    import numpy as np
    from scipy.optimize import curve_fit as scipy_curve_fit

    import jaxfit

    x = np.linspace(0.5, 4, 13)  # pads to 14: x repeats its last point
    y = 3 * x**0.7 + 0.05 * np.random.default_rng(1).standard_normal(13)

    def power(x, a, b):  # log(x) in its derivative: a padded x of 0 would make it NaN
        return a * x**b

    fit = jaxfit.curve_fit(power, x, y, [1.0, 1.0], precision="float64", result=True)
    ref, ref_cov = scipy_curve_fit(lambda x, a, b: a * x**b, x, y, [1.0, 1.0])
    assert np.allclose(fit.popt, ref, rtol=1e-7)
    assert np.allclose(fit.pcov, ref_cov, rtol=1e-5)
    assert int(fit.dof) == 11
    assert np.isfinite(jnp.asarray(fit.perr)).all()
