"""Recycled host memory for result columns: reused only once nothing views it."""

import gc

import numpy as np

import jaxfit
from jaxfit.run import hostmem


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def test_memory_comes_back_once_every_view_is_gone(monkeypatch):
    monkeypatch.setattr(hostmem, "_free", type(hostmem._free)())  # an empty pool of its own
    a = hostmem.empty(100_003, np.float32)
    a[:] = 7.0
    where = _address(a)
    view = a[10:20]
    del a
    gc.collect()
    b = hostmem.empty(100_003, np.float32)  # the view still holds the first array's memory
    assert _address(b) != where
    b[:] = -1.0
    np.testing.assert_array_equal(view, 7.0)
    del view
    gc.collect()
    c = hostmem.empty(100_003, np.float32)
    assert _address(c) == where


def test_arrays_are_plain_writable_numpy_arrays():
    a = hostmem.empty(5, np.int8)
    a[:] = [1, 2, 3, 4, 5]
    assert a.flags.writeable and a.dtype == np.int8 and a.shape == (5,)
    assert hostmem.empty(0, np.float64).shape == (0,)


def test_the_pool_keeps_no_more_than_its_limit(monkeypatch):
    monkeypatch.setattr(hostmem, "_free", type(hostmem._free)())
    monkeypatch.setattr(hostmem, "LIMIT", 1 << 20)
    arrays = [hostmem.empty(100_000, np.float32) for _ in range(8)]  # 400 kB each
    del arrays
    gc.collect()
    assert hostmem.pooled() <= 1 << 20


def test_a_kept_result_is_never_written_over_by_the_next_batch():
    cfg = {"batch": {"init": {"b3": {"linspace": [-10, 10, 50_000]}}}}
    first = jaxfit.fit_batch(cfg)
    loss, b3 = first.loss.copy(), first.params["b3"].copy()
    kept_loss, kept_b3 = first.loss, first.params["b3"]
    del first
    gc.collect()
    other = jaxfit.fit_batch({"batch": {"init": {"b3": {"linspace": [0, 5, 50_000]}}}})
    np.testing.assert_array_equal(kept_loss, loss)
    np.testing.assert_array_equal(kept_b3, b3)
    assert other.status_counts()["converged"] == 50_000


def test_clear_caches_releases_programs_buffers_and_pooled_memory():
    import jaxfit
    from jaxfit.run import aot, hostmem
    from jaxfit.run.batching import pipeline, sharded

    r = jaxfit.fit_batch({"batch": {"init": {"b3": {"linspace": [-1, 1, 64]}}}})
    del r
    assert aot._CACHE and pipeline._SPARE and sharded._SHAPES and sharded.compiled_chunk.cache_info().currsize
    jaxfit.clear_caches()
    assert not aot._CACHE and not pipeline._SPARE and not sharded._SHAPES
    assert sharded.compiled_chunk.cache_info().currsize == 0
    assert hostmem.pooled() == 0
    again = jaxfit.fit_batch({"batch": {"init": {"b3": {"linspace": [-1, 1, 64]}}}})
    assert again.status_counts()["converged"] == 64
