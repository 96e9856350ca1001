"""The run directory of a batch: written as it goes, so nothing is lost when a run is cut.

    manifest.json       config hash and size, written first
    config.yaml         the resolved config
    parts/LO-HI.npz     per-fit columns of fits [LO, HI), one file per finished chunk
    fits.npz            the per-fit table (columnar: the columns that vary), at the end
    fits.csv            the same as CSV, for batches up to CSV_LIMIT fits
    best_trace.csv      the best fit, run again on its own: its step-by-step trace
                        (not for grouped data: fits of different data sets do not rank)
    summary.json        the summary (written last: its presence means complete)
    env.json            versions, devices, precision, timings

Every file is written atomically. ``--resume`` reads the parts back, runs only the
missing fits, and the merged result is bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxfit.errors import RunDirError
from jaxfit.output.report import fit_csv
from jaxfit.output.results import BatchResult, FitResult

if TYPE_CHECKING:
    from jaxfit.plan.plans import BatchPlan
    from jaxfit.run.batch import RunFacts
from jaxfit.core.status import Status
from jaxfit.output.atomic import write_atomic, write_columns, write_csv, write_json

CSV_LIMIT = 100_000
"""Batches up to this many fits also get ``fits.csv`` (all get ``fits.npz``)."""
PART = re.compile(r"^(\d+)-(\d+)\.npz$")
STATUS_LABELS = np.array([s.label for s in Status])
"""Status labels indexed by status code."""


def start(path: Path, n: int, digest: str, config_yaml: str, resume: bool) -> list[tuple[int, int]]:
    """Begin (or continue) a batch run of ``n`` fits in ``path`` (``digest``: the
    config's hash, ``lowering.config_hash``; ``config_yaml``: the resolved config);
    returns the fit ranges still to run (none when the run there is already complete)."""
    manifest = path / "manifest.json"
    if resume and manifest.exists():
        try:
            old = json.loads(manifest.read_text())
        except (OSError, ValueError) as err:
            raise RunDirError(f"{manifest}: cannot read the run's manifest ({err})") from None
        if old.get("config_hash") != digest:
            raise RunDirError(
                f"{path}: --resume refused: this run was made by a different config "
                f"(hash {str(old.get('config_hash'))[:12]}, now {digest[:12]}); use the same config or a new --output"
            )
        for stale in (path / "parts").glob(".*.tmp"):  # a write cut by SIGKILL
            stale.unlink()
        return [] if (path / "summary.json").exists() else missing(path, n)
    write_json(manifest, {"config_hash": digest, "fits": n, "format": 1})
    write_atomic(path / "config.yaml", config_yaml)
    return [(0, n)]


def done_ranges(path: Path) -> list[tuple[int, int]]:
    """Fit ranges that finished parts hold, sorted."""
    parts = path / "parts"
    found = [PART.match(p.name) for p in parts.iterdir()] if parts.is_dir() else []
    return sorted((int(m[1]), int(m[2])) for m in found if m)


def missing(path: Path, n: int) -> list[tuple[int, int]]:
    """Fit ranges in ``[0, n)`` that no finished part covers."""
    gaps, at = [], 0
    for lo, hi in done_ranges(path):
        if lo > at:
            gaps.append((at, lo))
        at = max(at, hi)
    if at < n:
        gaps.append((at, n))
    return gaps


def write_part(path: Path, first: int, columns: dict[str, np.ndarray]) -> None:
    """One finished chunk's columns, as ``parts/FIRST-END.npz``."""
    end = first + len(columns["loss"])
    write_columns(path / "parts" / f"{first:012d}-{end:012d}.npz", columns)


def read_parts(path: Path, plan: BatchPlan, facts: RunFacts) -> BatchResult:
    """The batch as its finished parts hold it (``facts``: how the last run went)."""
    from jaxfit.run.batch import assemble, empty_store, put

    store = empty_store(plan)
    for lo, hi in done_ranges(path):
        with np.load(path / "parts" / f"{lo:012d}-{hi:012d}.npz") as part:
            put(store, lo, {k: part[k] for k in part.files if k in store})
    return assemble(plan, store, facts)


def read_finished(path: Path, plan: BatchPlan) -> BatchResult:
    """A finished run's batch as its ``fits.npz`` holds it (``plan``: its config,
    lowered); nothing is fitted again."""
    from jaxfit.run.batch import RunFacts, assemble, empty_store, put

    if not (path / "summary.json").is_file() or not (path / "fits.npz").is_file():
        raise RunDirError(f"{path}: not a finished batch run (no summary.json or fits.npz)")
    store = empty_store(plan)
    renamed = {f"final_{p}": f"params.{p}" for p in plan.trainable}
    renamed |= {f"init_{q}": f"init.{q}" for q in plan.varying()}
    renamed |= {f"stderr_{p}": f"stderr.{p}" for p in plan.trainable}
    with np.load(path / "fits.npz") as table:
        columns = {renamed.get(k, k): table[k] for k in table.files if renamed.get(k, k) in store}
    if "covariance" not in store and "covariance" in columns:
        store["covariance"] = columns["covariance"]
    put(store, 0, columns)
    env = json.loads((path / "env.json").read_text()) if (path / "env.json").is_file() else {}
    kind = env.get("devices", {}).get("kind", "")
    facts = RunFacts(env.get("devices_used", 1), kind, env.get("block_size", 0), 0.0, 0.0)
    return assemble(plan, store, facts)


def per_fit_columns(result: BatchResult) -> dict[str, np.ndarray]:
    """The per-fit table: index, status, steps, loss, the learning rate (where it
    varies), init and final values, standard errors (``stderr_P``) and statistics
    (``chisqr`` where it is not the loss: a robust or Poisson loss)."""
    group = {} if result.group is None else {"group": result.group}
    rate = {} if result.learning_rate.strides == (0,) else {"learning_rate": result.learning_rate}
    stats = {}
    if result.dof is not None:
        stats = {f"stderr_{n}": v for n, v in result.stderr.items()}
        shown = ("chisqr", "dof", "redchi", "aic", "bic", "rsquared", "singular")
        stats |= {f: getattr(result, f) for f in shown if f != "chisqr" or result.loss_kind != "ssr"}
    return {
        "index": np.arange(result.fits),
        **group,
        "status": STATUS_LABELS[result.status.astype(np.int64)],
        "steps": result.steps,
        "loss": result.loss,
        **rate,
        **{f"init_{n}": v for n, v in result.init.items()},
        **{f"final_{n}": v for n, v in result.params.items()},
        **stats,
    }


def environment(result: BatchResult | None = None, **extra: Any) -> dict[str, Any]:
    """Versions, devices and timings, for ``env.json``."""
    import platform
    import sys
    from importlib.metadata import PackageNotFoundError, version

    import jax

    def ver(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    devices = jax.local_devices()
    env = {
        "versions": {n: ver(n) for n in ("jaxfit", "jax", "jaxlib", "optax", "pydantic", "numpy")},
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "devices": {
            "platform": devices[0].platform,
            "kind": devices[0].device_kind,
            "local_count": len(devices),
            "process_count": jax.process_count(),
        },
    }
    if result is not None:
        env.update(
            precision=result.precision,
            devices_used=result.devices,
            block_size=result.block_size,
            compile_s=result.compile_s,
            run_s=result.run_s,
        )
    env.update(extra)
    return env


def finish(path: Path, plan: BatchPlan, result: BatchResult, wall_s: float) -> None:
    """Write the merged table, the environment and (last) the summary; drop the parts."""
    cols = per_fit_columns(result)
    # columnar: status as int8 codes (labels alongside); columns constant across the
    # batch are left out (config.yaml has their value)
    varying = {k: v for k, v in cols.items() if k not in ("index", "status") and v.strides != (0,)}
    covariance = {} if result.covariance is None else {"covariance": result.covariance}
    write_columns(
        path / "fits.npz", {"status": result.status, "status_labels": STATUS_LABELS, **varying, **covariance}
    )
    if result.fits <= CSV_LIMIT:
        write_csv(path / "fits.csv", cols)
    best = result.best()
    if best is not None:
        write_atomic(path / "best_trace.csv", fit_csv(best_fit(plan, result, best)))
    write_json(path / "env.json", environment(result, wall_s=wall_s))
    write_json(path / "summary.json", result.summary())
    shutil.rmtree(path / "parts", ignore_errors=True)


def best_fit(plan: BatchPlan, result: BatchResult, index: int) -> FitResult:
    """Fit ``index`` of a batch again on its own, with its step-by-step trace."""
    from jaxfit.plan.plans import fit_of
    from jaxfit.run.single import fit_and_executable

    hyper = {
        "learning_rate": result.learning_rate,
        "tolerance": result.tolerance,
        "max_steps": result.max_steps,
    }
    return fit_and_executable(fit_of(plan, result.init, hyper, index))[0]


def share(ranges: list[tuple[int, int]], n: int, process: int, processes: int) -> list[tuple[int, int]]:
    """Process ``process``'s part of ``ranges``: the fits of its fixed slice of ``[0, n)``.

    Slices depend only on ``n`` and the process count, so processes that start at
    different times (or resume) never leave a gap between them.
    """
    lo, hi = n * process // processes, n * (process + 1) // processes
    return [(max(a, lo), min(b, hi)) for a, b in ranges if max(a, lo) < min(b, hi)]


def wait_complete(path: Path, n: int, timeout_s: float, poll_s: float = 0.2) -> bool:
    """Wait until finished parts cover all ``n`` fits; False on timeout."""
    import time

    deadline = time.monotonic() + timeout_s
    while missing(path, n):
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
    return True


RUN_FILES = (
    "manifest.json",
    "config.yaml",
    "parts",
    "fits.npz",
    "fits.csv",
    "best_trace.csv",
    "summary.json",
    "env.json",
    "result.json",
    "trace.csv",
    "plots",
)
"""Everything a run may write in its directory (what ``--overwrite`` replaces)."""


def check_output(path: Path, overwrite: bool, resume: bool = False) -> None:
    """Refuse a ``path`` that cannot take a run (a file, or a non-empty folder unless told)."""
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path}: exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not (overwrite or resume):
        raise RunDirError(
            f"{path}: directory is not empty; pass --overwrite to replace it or --resume to continue it"
        )


def prepare(path: Path, overwrite: bool, resume: bool = False) -> None:
    """Make ``path`` ready for a run (``check_output`` first; ``--overwrite`` clears a run's files)."""
    check_output(path, overwrite, resume)
    if overwrite and not resume:
        # remove only what a run writes: never a user's other files
        for name in RUN_FILES:
            target = path / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
    path.mkdir(parents=True, exist_ok=True)
