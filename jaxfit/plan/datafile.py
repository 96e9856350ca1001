"""Data from a CSV file: two numeric columns, and optionally a group column that
splits the rows into data sets (one fit per distinct label).

``read_table`` checks everything before anything runs and says what is wrong in one
line: the file, the column or the row. Rows of a group need not be contiguous;
groups keep the order in which their labels first appear.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np

MAX_ROWS = 50_000_000
"""Most data rows a file may hold."""
MAX_BYTES = 1 << 30
"""Largest data file (1 GiB)."""
MAX_GROUP_POINTS = 1 << 16
"""Most points in one group (groups are padded to ``padded_groups``' lengths)."""


class Table(NamedTuple):
    """A data file's observations (float64) and, with a group column, the group of
    each row (an index into ``labels``)."""

    x: np.ndarray
    y: np.ndarray
    group: np.ndarray | None = None
    labels: tuple[str, ...] = ()
    sigma: np.ndarray | None = None
    """Each row's standard deviation (> 0), from the ``sigma`` column if one is named."""
    finite: np.ndarray | None = None
    """Rows whose numbers are all finite (None: every row), read with ``omit``."""


def read_table(
    path: Path,
    x: str | list[str],
    y: str,
    group: str | None = None,
    sigma: str | None = None,
    omit: bool = False,
) -> Table:
    """Read columns ``x`` (one, or several: ``Table.x`` is then ``(rows, d)``), ``y``
    (and ``group``, ``sigma``) of the CSV file at ``path`` (``omit``: missing or
    non-finite numbers mark missing points, ``Table.finite``);
    ``ValueError`` with one line when the file or a cell is not as it must be."""
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, not a data file")
    if not path.is_file():
        raise ValueError(f"{path}: no such data file")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ValueError(f"{path}: {size:,} bytes; data files of at most {MAX_BYTES:,} bytes are read")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = csv.reader(f)
            header = next(rows, None)
            if header is None:
                raise ValueError(f"{path}: the file is empty (expected a header row naming the columns)")
            header = [h.strip() for h in header]
            xs_named = [x] if isinstance(x, str) else list(x)
            wanted = [c for c in dict.fromkeys((*xs_named, y, group, sigma)) if c is not None]
            for column in wanted:
                if column not in header:
                    raise ValueError(f"{path}: no column {column!r} (the header has {', '.join(header)})")
            at = [header.index(c) for c in wanted]
            cols: list[list[str]] = [[] for _ in wanted]
            for line, row in enumerate(rows, start=2):
                if not row:
                    continue
                if len(row) != len(header):
                    raise ValueError(f"{path}: row {line} has {len(row)} cells, the header {len(header)}")
                for values, i in zip(cols, at):
                    values.append(row[i].strip())
                if len(cols[0]) > MAX_ROWS:
                    raise ValueError(
                        f"{path}: more than {MAX_ROWS:,} rows; split the data into several files"
                    )
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a UTF-8 text file ({err.reason})") from None
    except csv.Error as err:
        raise ValueError(f"{path}: not a CSV file ({err})") from None
    if not cols[0]:
        raise ValueError(f"{path}: the file has a header but no data rows")
    by_name = dict(zip(wanted, cols))
    ys = _numbers(path, y, by_name[y], omit)
    xs = [_numbers(path, name, by_name[name], omit) for name in xs_named]
    xs = xs[0] if isinstance(x, str) else np.stack(xs, axis=-1)
    sigmas = None
    if sigma is not None:
        sigmas = _numbers(path, sigma, by_name[sigma], omit)
        bad = np.flatnonzero(sigmas <= 0)
        if bad.size:
            raise ValueError(
                f"{path}: row {int(bad[0]) + 2}, column {sigma!r}: sigma must be > 0 (got {sigmas[bad[0]]:g})"
            )
    finite = np.isfinite(ys) & np.isfinite(xs).reshape(len(ys), -1).all(axis=-1)
    if sigmas is not None:
        finite &= np.isfinite(sigmas)
    finite = None if finite.all() else finite
    if group is None:
        return Table(xs, ys, sigma=sigmas, finite=finite)
    labels: dict[str, int] = {}
    index = np.fromiter((labels.setdefault(v, len(labels)) for v in by_name[group]), np.int64, len(xs))
    counts = np.bincount(index)
    if counts.max() > MAX_GROUP_POINTS:
        big = list(labels)[int(counts.argmax())]
        raise ValueError(
            f"{path}: group {big!r} has {int(counts.max()):,} points; at most {MAX_GROUP_POINTS:,} per group"
        )
    return Table(xs, ys, index, tuple(labels), sigmas, finite)


def _numbers(path: Path, column: str, values: list[str], omit: bool = False) -> np.ndarray:
    """The cells as float64; ``omit``: an empty cell or a non-finite number is NaN (a
    missing point) rather than an error."""
    out = np.empty(len(values), np.float64)
    for i, text in enumerate(values):
        try:
            v = float(text) if text or not omit else math.nan
        except ValueError:
            v, text = math.nan, text or "an empty cell"
            if omit:
                raise ValueError(
                    f"{path}: row {i + 2}, column {column!r}: {text!r} is not a number"
                ) from None
        if not math.isfinite(v) and not omit:
            raise ValueError(
                f"{path}: row {i + 2}, column {column!r}: {text!r} is not a finite number "
                "(data.nan_policy: omit leaves such points out)"
            )
        out[i] = v
    return out


def padded_groups(table: Table) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """``(x, y, mask, sigma)``, each ``(groups, length)``: group ``g``'s points in file
    order, padded to ``length`` with ``mask`` False (sigma 1; None without a sigma
    column). ``length``: the largest group's, rounded up to the next power of two (at
    least 4) up to 8 points, above that to ``curvefit_args.bucket``'s sizes (a multiple
    of an eighth of the next power of two: 25 points take 28, not 32)."""
    from jaxfit.curvefit_args import bucket

    assert table.group is not None
    counts = np.bincount(table.group, minlength=len(table.labels))
    most = int(counts.max())
    length = max(4, 1 << (most - 1).bit_length()) if most <= 8 else bucket(most)
    order = np.argsort(table.group, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(len(order)) - np.repeat(starts, counts)
    rows = table.group[order]
    x = np.zeros((len(counts), length, *table.x.shape[1:]))
    y = np.zeros((len(counts), length))
    mask = np.zeros((len(counts), length), bool)
    real = True if table.finite is None else table.finite[order]
    x[rows, slot] = np.where(np.reshape(real, (-1,) + (1,) * (table.x.ndim - 1)), table.x[order], 0)
    y[rows, slot], mask[rows, slot] = np.where(real, table.y[order], 0), real
    sigma = None
    if table.sigma is not None:
        sigma = np.ones((len(counts), length))
        sigma[rows, slot] = np.where(real, table.sigma[order], 1)
    return x, y, mask, sigma
