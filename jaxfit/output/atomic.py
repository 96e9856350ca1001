"""Atomic file writes (temp file + fsync + rename): an interrupted run never leaves
a half-written file that looks complete."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from jaxfit.output.jsonout import dumps
from jaxfit.output.report import csv_text

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
