"""What a batch run leaves in its run directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxfit.config import Config, dump_yaml
from jaxfit.results import BatchResult
from jaxfit.rundir import write_atomic, write_columns, write_csv, write_json
from jaxfit.status import Status

CSV_LIMIT = 100_000
"""Batches up to this many fits also get a CSV per-fit table (all get ``fits.npz``)."""


def per_fit_columns(result: BatchResult) -> dict[str, np.ndarray]:
    """The per-fit table: index, status, steps, loss, learning rate, init and final values."""
    labels = np.array([s.label for s in Status])
    return {
        "index": np.arange(result.fits),
        "status": labels[result.status.astype(np.int64)],
        "steps": result.steps,
        "loss": result.loss,
        "learning_rate": result.learning_rate,
        **{f"init_{n}": v for n, v in result.init.items()},
        **{f"final_{n}": v for n, v in result.params.items()},
    }


def write_batch(path: Path, config: Config, result: BatchResult) -> None:
    """Resolved config, summary JSON, per-fit table (``fits.npz``; ``fits.csv`` when small)."""
    write_atomic(path / "config.yaml", dump_yaml(config))
    cols = per_fit_columns(result)
    write_columns(path / "fits.npz", {k: (v.astype(str) if k == "status" else v) for k, v in cols.items()})
    if result.fits <= CSV_LIMIT:
        write_csv(path / "fits.csv", cols)
    write_json(path / "summary.json", result.summary())
