import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref

from jaxfit.core.model import PARAM_NAMES, SEED_PARAMS, Data, predict, ssr, sum_points

DATA = Data(jnp.asarray(ref.X, jnp.float32), jnp.asarray(ref.Y, jnp.float32))


@pytest.mark.parametrize(("b3", "expected"), [(0, 20.424), (1, 7.768), (2, 1.113), (3, 0.458)])
def test_pink_curve_matches_seed_table(b3, expected):
    p = {**SEED_PARAMS, "b3": float(b3)}
    assert float(ssr(p, DATA)) == pytest.approx(expected, abs=0.01)
    assert float(ssr(p, DATA)) == pytest.approx(ref.ssr(p), rel=1e-6)


def test_predict_float64_matches_numpy():
    with jax.enable_x64(True):
        p = {n: jnp.float64(v) for n, v in SEED_PARAMS.items()}
        got = np.asarray(predict(p, jnp.asarray(ref.X)))
    np.testing.assert_allclose(got, ref.predict(SEED_PARAMS), rtol=0, atol=1e-14)


def test_grad_float64_matches_hand_derived_chain_rule():
    with jax.enable_x64(True):
        data = Data(jnp.asarray(ref.X), jnp.asarray(ref.Y))
        p = {n: jnp.float64(v) for n, v in SEED_PARAMS.items()}
        g = jax.grad(ssr)(p, data)
    expected = ref.grad(SEED_PARAMS)
    for n in PARAM_NAMES:
        assert float(g[n]) == pytest.approx(expected[n], abs=1e-12)
    assert float(g["b3"]) == pytest.approx(-15.655, abs=0.001)


def test_model_vmaps_over_params():
    b3 = jnp.arange(4.0)
    batched = jax.vmap(lambda b: ssr({**SEED_PARAMS, "b3": b}, DATA))(b3)
    np.testing.assert_allclose(
        batched, [ref.ssr({**SEED_PARAMS, "b3": float(b)}) for b in range(4)], rtol=1e-6
    )


@pytest.mark.parametrize("n", [1, 2, 3, 5, 25, 40, 64])
def test_a_sum_over_points_is_the_in_order_sum_within_its_bound_of_the_float64_sum(n):
    # each fit's own column (points first, fits trailing, as on the vector lanes); values
    # of one sign and of mixed sign
    rng = np.random.default_rng(n)
    a = np.concatenate([rng.uniform(0, 1, (n, 50)), rng.normal(0, 1, (n, 50))], axis=1).astype(np.float32)
    # and 1, then half an ulp of 1 at each later point: added in order, each is lost
    # (in order, not pairwise: with pairwise sums the lanes' layouts gave 5% of a
    # batch's fits other bits, test_lanes' every-layout test)
    a = np.concatenate([a, np.r_[1.0, np.full(n - 1, 2.0**-24)].astype(np.float32)[:, None]], axis=1)
    got = np.asarray(sum_points(jnp.asarray(a)), np.float64)
    exact = a.astype(np.float64).sum(axis=0)
    bound = n * np.finfo(np.float32).eps * np.abs(a).astype(np.float64).sum(axis=0)
    assert np.all(np.abs(got - exact) <= bound)
    chain = a[0]
    for row in a[1:]:
        chain = chain + row
    assert np.array_equal(got, chain.astype(np.float64))
