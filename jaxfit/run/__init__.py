"""The runners: one fit (``single``), a batch (``batch`` over ``batching``), many starts,
profile and bootstrap intervals, global fits; with compiling (``aot``, ``export``) and
what is kept between calls (``caches``, ``memory``, ``hostmem``)."""
