"""Host memory for per-fit result columns, recycled from one batch to the next.

A batch writes its results into new memory, and the first write to each 4 KiB page
of fresh memory is a page fault: on a VM the faults cost more than the copy (1e6 W1
fits: 17 MB, ~4,100 faults, ~7 ms; into memory written before: ~1 ms). ``empty``
hands out arrays whose memory returns to a small pool once no array views it any
more, and the next batch writes into it.
"""

from __future__ import annotations

import collections
import threading
import weakref

import numpy as np
from numpy.typing import DTypeLike

LIMIT = 256 << 20
"""Bytes of free memory the pool keeps; beyond it the oldest goes back to the system."""

_free: collections.deque[np.ndarray] = collections.deque()
_lock = threading.RLock()  # re-entrant: a finalizer may run wherever a reference drops


def empty(n: int, dtype: DTypeLike) -> np.ndarray:
    """An uninitialised ``(n,)`` array of ``dtype``, in recycled memory when the pool
    holds a piece of the size (no larger than twice it)."""
    dtype = np.dtype(dtype)
    size = n * dtype.itemsize
    if size == 0:
        return np.empty(n, dtype)
    backing = _take(size)
    if backing is None:
        backing = np.empty(size, np.uint8)
    array = np.frombuffer(memoryview(backing), dtype, count=n)
    holder = array.base  # the buffer object that this array and every view of it hold
    if not isinstance(holder, memoryview) or holder.obj is not backing:
        return np.empty(n, dtype)  # a NumPy that keeps no buffer object of its own: no recycling
    weakref.finalize(holder, _give, backing).atexit = False
    return array


def clear() -> None:
    """Give the pool's free memory back to the system."""
    with _lock:
        _free.clear()


def pooled() -> int:
    """Bytes of free memory the pool holds now."""
    with _lock:
        return sum(b.nbytes for b in _free)


def _take(size: int) -> np.ndarray | None:
    with _lock:
        for i, backing in enumerate(_free):
            if size <= backing.nbytes <= 2 * size:
                del _free[i]
                return backing
    return None


def _give(backing: np.ndarray) -> None:
    with _lock:
        _free.append(backing)
        total = sum(b.nbytes for b in _free)
        while total > LIMIT:
            total -= _free.popleft().nbytes
