"""``clear_caches``: release what jaxfit keeps between calls to run the next one faster.

Kept, each bounded: compiled programs (``aot``, and the jitted functions of
``single`` and ``chunks``, 64 of each kind, least recently used first out), the
output buffers of the last batch on the devices (``chunks``: the next batch of the
same program writes into them) and up to 256 MB of recycled host memory for result
columns (``hostmem``). They pay in a loop of batches, the service and repeated CLI
runs; a library user who is done with jaxfit calls ``clear_caches()``.
"""

from __future__ import annotations

import sys


def clear_caches() -> None:
    """Release every compiled program, kept device buffer and pooled host memory (a
    module not imported yet holds nothing, and is not imported here)."""
    modules = sys.modules
    if "jaxfit.aot" in modules:
        modules["jaxfit.aot"]._CACHE.clear()
    if "jaxfit.single" in modules:
        single = modules["jaxfit.single"]
        for fn in (single._compiled_step, single._compiled_init, single.compiled_fit):
            fn.cache_clear()
    if "jaxfit.chunks" in modules:
        chunks = modules["jaxfit.chunks"]
        chunks.compiled_chunk.cache_clear()
        chunks._SPARE.clear()
    if "jaxfit.hostmem" in modules:
        modules["jaxfit.hostmem"].clear()
