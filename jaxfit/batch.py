"""``fit_batch``: run a config's batch on the local devices and gather a ``BatchResult``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import jax
import numpy as np

from jaxfit import hostmem, memory
from jaxfit.chunks import Chunk, Inputs, Layout, Program, Timing, default_layout, run_chunks
from jaxfit.config import Config, ConfigLike, load_config
from jaxfit.errors import ResourceError
from jaxfit.problem import batch_data, dtype_of, hyper_of, plan_of, precision, spec_of, stats_spec_of
from jaxfit.results import BatchResult
from jaxfit.sweep import HYPER_NAMES, Plan, tables_as


def select_devices(config: Config, devices: int | None = None) -> list[jax.Device]:
    """The local devices a batch runs on: all of them, or the first ``devices``."""
    available = jax.local_devices()
    wanted = devices or config.devices or len(available)
    if wanted > len(available):
        raise ResourceError(
            f"devices: {wanted} requested but only {len(available)} "
            f"{available[0].platform.upper()} device(s) are visible"
        )
    return available[:wanted]


def layout_of(config: Config, devices: Sequence[jax.Device], block_size: int | None = None) -> Layout:
    """Chunk layout for ``devices`` (block size from the argument, the config or the platform)."""
    return default_layout(
        devices[0].platform,
        len(devices),
        block_size or config.block_size,
        len(config.train.trainable),
        config.train.optimizer.name,
    )


def preflight(
    config: Config, devices: int | None = None, block_size: int | None = None, *, plan: Plan | None = None
) -> tuple[list[jax.Device], Layout]:
    """Check, before anything runs or is written, that the devices exist and the
    batch fits in memory (``ResourceError`` otherwise); returns the devices and layout."""
    used = select_devices(config, devices)
    layout = layout_of(config, used, block_size)
    varying = (plan or plan_of(config)[0]).varying()
    memory.check(config, layout.chunk, len(varying), memory.device_memory(used[0]))
    return used, layout


def fit_batch(
    config: ConfigLike,
    *,
    devices: int | None = None,
    block_size: int | None = None,
    ranges: Sequence[tuple[int, int]] | None = None,
    on_chunk: Callable[[int, Chunk], None] | None = None,
) -> BatchResult:
    """Run every fit of the config's ``batch`` (one fit if it has none).

    Args:
        config: the run's config.
        devices: use the first ``devices`` local devices (default: config, else all).
        block_size: fits per vmapped block (default: config, else by platform).
        ranges: run only these ``[lo, hi)`` fit-index ranges (for resuming or for one
            process's share); fits outside them are left as ``RUNNING`` with NaN loss.
        on_chunk: called with ``(first_index, chunk)`` as each chunk reaches the host;
            its arrays are views of the output buffers (copy what you keep: while a
            view lives, the next calls cannot write over its buffers and take new ones).

    Returns:
        a ``BatchResult`` with per-fit arrays in fit-index order.

    Example:
        >>> r = fit_batch({"batch": {"init": {"b3": {"linspace": [-10, 10, 101]}}}})
        >>> r.status_counts()["converged"], round(r.minima()[0]["params"]["b3"], 3)
        (101, 2.609)
    """
    config = load_config(config)
    spec = spec_of(config)
    n = config.fits
    ranges = [(0, n)] if ranges is None else list(ranges)
    plan, tables = plan_of(config)
    used, layout = preflight(config, devices, block_size, plan=plan)
    dtype = dtype_of(config)
    store = empty_store(config, n, plan.varying(), filled=ranges != [(0, n)])

    def gather(first: int, chunk: Chunk) -> None:
        columns = chunk_columns(chunk)
        put(store, first, columns)
        if on_chunk is not None:
            on_chunk(first, chunk)

    timing: list[Timing] = []
    with precision(config):
        data, per_group = batch_data(config)
        inputs = Inputs(tables_as(tables, dtype), hyper_of(config), data, per_group)
        run_chunks(
            Program(spec, plan, stats_spec_of(config, batch=True)),
            inputs,
            layout=layout,
            devices=used,
            ranges=ranges,
            on_chunk=gather,
            timing=timing,
        )
    facts = RunFacts(len(used), used[0].device_kind, layout.block_size, *timing[0])
    return assemble(config, store, facts)


def empty_store(
    config: Config, n: int, varying: Sequence[str], *, filled: bool = True
) -> dict[str, np.ndarray]:
    """Per-fit columns for ``n`` fits, not yet run (status ``RUNNING``, NaN loss);
    ``varying`` names the quantities that differ between fits (``Plan.varying``).
    With ``report.covariance`` the store also holds a ``(n, k, k)`` ``covariance``.

    ``filled=False`` leaves them uninitialised, for callers that write every row.
    """
    dtype = dtype_of(config)
    trainable = config.train.trainable
    kinds = {
        **{f"params.{p}": (dtype, np.nan) for p in trainable},
        **{f"init.{q}": (np.int32, 0) if q == "max_steps" else (dtype, np.nan) for q in varying},
        "loss": (dtype, np.nan),
        "steps": (np.int32, 0),
        "status": (np.int8, 0),
        **{f"stderr.{p}": (dtype, np.nan) for p in trainable},
        **{f: (dtype, np.nan) for f in STAT_FLOATS},
        "dof": (np.int32, 0),
        "singular": (np.bool_, False),
    }
    store = {name: hostmem.empty(n, kind) for name, (kind, _) in kinds.items()}
    if filled:
        for name, (_, fill) in kinds.items():
            store[name].fill(fill)
    if config.report.covariance:
        store["covariance"] = np.full((n, len(trainable), len(trainable)), np.nan, dtype)
    return store


STAT_FLOATS = ("chisqr", "redchi", "aic", "bic", "rsquared")
"""The per-fit statistics stored as floats (besides standard errors, dof and the flag)."""


def chunk_columns(chunk: Chunk) -> dict[str, np.ndarray]:
    """A chunk's per-fit arrays under their store column names."""
    return {
        **{f"params.{p}": v for p, v in chunk.params.items()},
        **{f"init.{q}": v for q, v in chunk.init.items()},
        "loss": chunk.loss,
        "steps": chunk.steps,
        "status": chunk.status,
        **{f"stderr.{p}": v for p, v in chunk.stats.stderr.items()},
        **{f: getattr(chunk.stats, f) for f in (*STAT_FLOATS, "dof", "singular")},
        **({} if chunk.stats.covariance is None else {"covariance": chunk.stats.covariance}),
    }


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


def assemble(config: Config, store: Mapping[str, np.ndarray], facts: RunFacts) -> BatchResult:
    """A ``BatchResult`` from stored columns (``params.P``, ``init.Q``, loss, steps, status)."""
    dtype = dtype_of(config)
    spec = spec_of(config)
    n = len(store["loss"])
    base = {**config.params, **config.train.model_dump(include=set(HYPER_NAMES))}

    def column(name: str, q: str, kind: type = dtype) -> np.ndarray:
        if name in store:
            return store[name]
        return np.broadcast_to(np.asarray(base[q], kind), (n,))

    init = {p: column(f"init.{p}", p) for p in config.names}
    params = {p: store[f"params.{p}"] if p in spec.trainable else init[p] for p in config.names}
    return BatchResult(
        params=params,
        init=init,
        loss=store["loss"],
        steps=store["steps"],
        status=store["status"],
        learning_rate=column("init.learning_rate", "learning_rate"),
        tolerance=column("init.tolerance", "tolerance"),
        max_steps=column("init.max_steps", "max_steps", np.int32),
        trainable=spec.trainable,
        precision=config.precision,
        group=group_labels(config, n),
        stderr={p: store[f"stderr.{p}"] for p in spec.trainable},
        **{f: store[f] for f in (*STAT_FLOATS, "dof", "singular")},
        covariance=store.get("covariance"),
        confidence=config.report.confidence,
        **facts._asdict(),
    )


def group_labels(config: Config, n: int) -> np.ndarray | None:
    """Each fit's data-set label (fits run group by group), or None without groups."""
    if not config.data.grouped:
        return None
    labels = np.asarray(config.data.table.labels)
    return labels[np.arange(n) // config.per_group]
