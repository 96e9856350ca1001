"""The run directory: every file written atomically (temp file + rename), so an
interrupted run never leaves a half-written file that looks complete."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from jaxfit.jsonout import dumps
from jaxfit.report import csv_text

_UMASK = os.umask(0)
os.umask(_UMASK)


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and a rename
    (with the permissions an ordinary write would give, not the temp file's 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, value: Any) -> None:
    """Strict JSON (non-finite numbers as null), atomically."""
    write_atomic(path, dumps(value, indent=2) + "\n")


def write_columns(path: Path, columns: dict[str, np.ndarray]) -> None:
    """Columns as an uncompressed ``.npz`` (one array per column), atomically."""
    import io

    buf = io.BytesIO()
    np.savez(buf, **{k: np.ascontiguousarray(v) for k, v in columns.items()})
    write_atomic(path, buf.getvalue())


def write_csv(path: Path, columns: dict[str, np.ndarray]) -> None:
    """Columns as CSV, atomically."""
    write_atomic(path, csv_text(columns))


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
        raise FileExistsError(f"{path}: exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not (overwrite or resume):
        raise FileExistsError(
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
