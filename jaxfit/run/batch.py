"""``fit_batch``: run a batch on the local devices and gather a ``BatchResult``; a
config is lowered to a ``BatchPlan`` first (``lowering.plan_batch``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import jax
import numpy as np

from jaxfit.core.status import Status
from jaxfit.errors import ResourceError
from jaxfit.output.results import BatchResult, per_fit
from jaxfit.plan import lowering
from jaxfit.plan.plans import BatchPlan
from jaxfit.run import hostmem, memory
from jaxfit.run.batching import Chunk, Layout, Timing, default_layout, run_chunks


def select_devices(plan: BatchPlan, devices: int | None = None) -> list[jax.Device]:
    """The local devices a batch runs on: all of them, or the first ``devices``."""
    available = jax.local_devices()
    wanted = devices or plan.devices or len(available)
    if wanted > len(available):
        raise ResourceError(
            f"devices: {wanted} requested but only {len(available)} "
            f"{available[0].platform.upper()} device(s) are visible"
        )
    return available[:wanted]


def layout_of(plan: BatchPlan, devices: Sequence[jax.Device], block_size: int | None = None) -> Layout:
    """Chunk layout for ``devices`` (block size from the argument, the plan or the platform)."""
    spec = plan.program.spec
    return default_layout(
        devices[0].platform,
        len(devices),
        block_size or plan.block_size,
        len(spec.trainable),
        spec.optimizer.name,
    )


def preflight(
    plan: BatchPlan, devices: int | None = None, block_size: int | None = None
) -> tuple[list[jax.Device], Layout]:
    """Check, before anything runs or is written, that the devices exist and the
    batch fits in memory (``ResourceError`` otherwise); returns the devices and layout."""
    used = select_devices(plan, devices)
    layout = layout_of(plan, used, block_size)
    need = memory.Need(
        plan.fits, plan.dtype.itemsize, len(plan.trainable), len(plan.varying()), plan.covariance
    )
    memory.check(need, layout.chunk, memory.device_memory(used[0]))
    return used, layout


def fit_batch(
    config: lowering.ConfigLike,
    *,
    devices: int | None = None,
    block_size: int | None = None,
    ranges: Sequence[tuple[int, int]] | None = None,
    on_chunk: Callable[[int, Chunk], None] | None = None,
    statistics: bool = True,
) -> BatchResult:
    """Run every fit of the config's ``batch`` (one fit if it has none).

    Args:
        config: the run's config.
        devices: use the first ``devices`` local devices (default: config, else all).
        block_size: fits per vmapped block (default: config, else by platform).
        ranges: run only these ``[lo, hi)`` fit-index ranges (for resuming or for one
            process's share); fits outside them are left as ``NOT_RUN`` with NaN loss.
        on_chunk: called with ``(first_index, chunk)`` as each chunk reaches the host;
            its arrays are views of the output buffers (copy what you keep: while a
            view lives, the next calls cannot write over its buffers and take new ones).
        statistics: compute each fit's standard errors and statistics (``core.stats``)
            in the batch's program; False skips them (their fields are then None).

    Returns:
        a ``BatchResult`` with per-fit arrays in fit-index order.

    Example:
        >>> r = fit_batch({"batch": {"init": {"b3": {"linspace": [-10, 10, 101]}}}})
        >>> r.status_counts()["converged"], round(r.minima()[0]["params"]["b3"], 3)
        (101, 2.609)
    """
    plan = lowering.plan_batch(config, statistics=statistics)
    return run_batch(plan, devices=devices, block_size=block_size, ranges=ranges, on_chunk=on_chunk)


def run_batch(
    plan: BatchPlan,
    *,
    devices: int | None = None,
    block_size: int | None = None,
    ranges: Sequence[tuple[int, int]] | None = None,
    on_chunk: Callable[[int, Chunk], None] | None = None,
) -> BatchResult:
    """Run a lowered batch (``fit_batch``'s arguments) and gather its ``BatchResult``."""
    n = plan.fits
    ranges = [(0, n)] if ranges is None else list(ranges)
    used, layout = preflight(plan, devices, block_size)
    store = empty_store(plan, filled=ranges != [(0, n)])

    def gather(first: int, chunk: Chunk) -> None:
        put(store, first, chunk_columns(chunk))
        if on_chunk is not None:
            on_chunk(first, chunk)

    timing: list[Timing] = []
    with jax.enable_x64(plan.precision == "float64"):
        run_chunks(
            plan.program,
            plan.inputs,
            layout=layout,
            devices=used,
            ranges=ranges,
            on_chunk=gather,
            timing=timing,
        )
    facts = RunFacts(len(used), used[0].device_kind, layout.block_size, *timing[0])
    return assemble(plan, store, facts)


def empty_store(plan: BatchPlan, *, filled: bool = True) -> dict[str, np.ndarray]:
    """Per-fit columns for the plan's fits, not yet run (status ``NOT_RUN``, NaN loss),
    and the statistics if the plan computes them (a ``(n, k, k)`` ``covariance`` if it
    keeps it).

    ``filled=False`` leaves them uninitialised, for callers that write every row.
    """
    dtype, n, trainable = plan.dtype, plan.fits, plan.trainable
    kinds = {
        **{f"params.{p}": (dtype, np.nan) for p in trainable},
        **{f"init.{q}": (np.int32, 0) if q == "max_steps" else (dtype, np.nan) for q in plan.varying()},
        "loss": (dtype, np.nan),
        "steps": (np.int32, 0),
        "status": (np.int8, Status.NOT_RUN),
    }
    if plan.program.stats is not None:
        kinds |= {f"stderr.{p}": (dtype, np.nan) for p in trainable} | {"singular": (np.bool_, False)}
    store = {name: hostmem.empty(n, kind) for name, (kind, _) in kinds.items()}
    if filled:
        for name, (_, fill) in kinds.items():
            store[name].fill(fill)
    if plan.covariance:
        store["covariance"] = np.full((n, len(trainable), len(trainable)), np.nan, dtype)
    return store


def chunk_columns(chunk: Chunk) -> dict[str, np.ndarray]:
    """A chunk's per-fit arrays under their store column names."""
    columns = {
        **{f"params.{p}": v for p, v in chunk.params.items()},
        **{f"init.{q}": v for q, v in chunk.init.items()},
        "loss": chunk.loss,
        "steps": chunk.steps,
        "status": chunk.status,
    }
    stats = chunk.stats
    if stats is not None:
        columns |= {f"stderr.{p}": v for p, v in stats.stderr.items()}
        columns["singular"] = stats.singular
        if stats.covariance is not None:
            columns["covariance"] = stats.covariance
    return columns


def put(store: dict[str, np.ndarray], first: int, columns: Mapping[str, np.ndarray]) -> None:
    """Copy ``columns`` (fits ``first ..``) into ``store``."""
    for name, values in columns.items():
        store[name][first : first + len(values)] = values


class RunFacts(NamedTuple):
    """How a batch ran (copied into its ``BatchResult``)."""

    devices: int
    device_kind: str
    block_size: int
    compile_s: float
    run_s: float


def facts_of(result: BatchResult) -> RunFacts:
    return RunFacts(*(getattr(result, f) for f in RunFacts._fields))


def assemble(plan: BatchPlan, store: Mapping[str, np.ndarray], facts: RunFacts) -> BatchResult:
    """A ``BatchResult`` from stored columns (``params.P``, ``init.Q``, loss, steps,
    status, statistics)."""
    dtype, trainable = plan.dtype, plan.trainable
    n = len(store["loss"])

    def column(name: str, q: str, kind: type = dtype) -> np.ndarray:
        if name in store:
            return store[name]
        return np.broadcast_to(np.asarray(plan.base[q], kind), (n,))

    init = {p: column(f"init.{p}", p) for p in plan.names}
    params = {p: store[f"params.{p}"] if p in trainable else init[p] for p in plan.names}
    return BatchResult(
        params=params,
        init=init,
        loss=store["loss"],
        steps=store["steps"],
        status=store["status"],
        learning_rate=column("init.learning_rate", "learning_rate"),
        tolerance=column("init.tolerance", "tolerance"),
        max_steps=column("init.max_steps", "max_steps", np.int32),
        trainable=trainable,
        precision=plan.precision,
        group=None if plan.labels is None else per_fit(plan.labels, n, plan.per_group),
        stderr={p: store[f"stderr.{p}"] for p in trainable if f"stderr.{p}" in store},
        data=plan.inputs.data,
        per_group=plan.per_group,
        singular=store.get("singular"),
        covariance=store.get("covariance"),
        confidence=plan.confidence,
        loss_kind=plan.program.spec.loss,
        at_bound=at_bound(plan, params, n),
        **facts._asdict(),
    )


def at_bound(plan: BatchPlan, params: Mapping[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """For each bounded parameter, per fit: whether it ended on a bound."""
    bounds = plan.inputs.bounds
    if bounds is None:
        return {}
    lower, upper = bounds

    def side(a: np.ndarray) -> np.ndarray:
        return per_fit(a, n, plan.per_group)

    return {p: (params[p] <= side(lower[p])) | (params[p] >= side(upper[p])) for p in lower}
