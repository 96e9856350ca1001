"""Memory estimates for a batch, checked before it starts.

A batch keeps one row of results per fit on the host (final trainable values, the
varying starting values, loss, steps, status, standard errors and statistics, the
covariance when ``report.covariance`` asks) and streams fits through the devices
one chunk at a time. ``check`` refuses, with the numbers, a batch whose result
table cannot fit in the memory available, or one whose single chunk cannot fit on
its device.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from jaxfit.errors import ResourceError

HEADROOM = 0.8
"""Use at most this share of the memory available."""


class Estimate(NamedTuple):
    host_bytes: int
    """The per-fit result table."""
    chunk_bytes: int
    """Device memory for one chunk (inputs, loop state, outputs), an upper bound."""


def _cgroup_room() -> int | None:
    """Bytes left under this process's cgroup (v2) memory limit, if it has one."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(int(limit) - used, 0)


def available_host_bytes() -> int:
    """Memory available to this process: MemAvailable from /proc/meminfo (else the
    physical memory size), capped by a cgroup limit."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    total = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    room = _cgroup_room()
    return total if room is None else min(total, room)


class Need(NamedTuple):
    """What a batch keeps per fit: ``fits`` rows of ``item``-byte floats for ``trainable``
    parameters and ``varying`` starting values, statistics, the covariance if kept."""

    fits: int
    item: int
    trainable: int
    varying: int
    covariance: bool = False


def estimate(need: Need, chunk: int) -> Estimate:
    """Bytes for a batch with ``chunk`` fits per compiled call."""
    item, k = need.item, need.trainable
    row = (k + need.varying + 1) * item + 4 + 1  # params, inits, loss; steps int32; status int8
    # statistics: standard errors, five floats, dof int32, the flag; the covariance if kept
    row += (k + 5 + (k * k if need.covariance else 0)) * item + 4 + 1
    # per fit on the device: 7 params, loop state (params, grad, step size, optimizer
    # moments: up to 5 per trainable), hyperparameters, outputs; doubled for copies
    state = (7 + 5 * k + 8 + row) * max(item, 4) * 2
    return Estimate(host_bytes=need.fits * row, chunk_bytes=chunk * state)


def _gib(b: float) -> str:
    return f"{b / 2**30:.2f} GiB"


def check(need: Need, chunk: int, device_bytes: int | None = None) -> Estimate:
    """Raise ``ResourceError`` when the batch's results or one chunk cannot fit."""
    est = estimate(need, chunk)
    host = available_host_bytes()
    n = need.fits
    if est.host_bytes > HEADROOM * host:
        raise ResourceError(
            f"batch: {n:,} fits need about {_gib(est.host_bytes)} for their results but only "
            f"{_gib(host)} of memory is available; run fewer fits per job (split the batch)"
        )
    device = device_bytes if device_bytes is not None else host
    if est.chunk_bytes > HEADROOM * device:
        raise ResourceError(
            f"block_size: one chunk of {chunk:,} fits needs about {_gib(est.chunk_bytes)} of device "
            f"memory but {_gib(device)} is available; use a smaller block_size"
        )
    return est


def device_memory(device: object) -> int | None:
    """Bytes a device may allocate (None where the runtime does not say, e.g. CPU)."""
    try:
        stats = device.memory_stats()  # type: ignore[attr-defined]
    except Exception:
        return None
    return int(stats["bytes_limit"]) if stats and "bytes_limit" in stats else None
