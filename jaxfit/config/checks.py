"""The checks that need the whole config: bounds against starts, a loss against its
data, the starts table and the guess (each wrong thing as one line)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from jaxfit.config.batch import Linspace, Normal, Uniform, Values
from jaxfit.config.messages import refuse
from jaxfit.config.schema import Config


def bounds_errors(config: Config) -> list:
    """What is wrong with ``bounds``: an unknown or frozen parameter, lower ≥ upper, a
    start (``params``, the batch's starting values, the starts table) outside."""
    import numpy as np

    errors: list[tuple[list[str | int], str]] = []
    for name, (low, high) in config.bounds_by_set().items():
        where = ["bounds", name] if name in config.bounds else ["starts", "file"]
        lo, hi = (None if np.ndim(b) == 0 and np.isinf(b) else b for b in (low, high))
        if np.ndim(low) or np.ndim(high):  # per data set: name the first one that is wrong
            errors += _bounds_by_set_errors(config, name, np.broadcast_arrays(low, high))
            continue
        if name not in config.names:
            return [(where, f"unknown parameter {name!r} (the model's: {', '.join(config.names)})")]
        if name not in config.train.trainable:
            return [(where, f"{name!r} is not trained (train.trainable): a frozen parameter has no bounds")]
        if not low < high:
            return [(where, f"lower {lo} must be below upper {hi}")]
        starts = {"params": [config.params[name]]}
        init = (config.batch.init if config.batch else {}).get(name)
        if isinstance(init, Linspace):
            starts["batch.init"] = list(init.linspace[:2])
        elif isinstance(init, Values):
            starts["batch.init"] = init.values
        elif isinstance(init, Uniform):
            starts["batch.init"] = [init.uniform.low, init.uniform.high]
        elif isinstance(init, Normal):
            return [(["batch", "init", name], "a normal draw can fall outside the bounds: use uniform")]
        given = config.start_values
        if given is not None and name in given:
            starts["the starts of the data sets"] = [float(v) for v in given[name]]
        if init is not None:
            starts.pop("params")
        for what, values in starts.items():
            bad = [v for v in values if not low <= v <= high]
            if bad:
                return [(where, f"{what}: start {bad[0]:g} is outside [{lo}, {hi}]")]
    return errors


def _bounds_by_set_errors(config: Config, name: str, bounds: list) -> list:
    """``bounds_errors`` for a parameter with bounds per data set (starts table columns)."""
    import numpy as np

    where, (low, high) = ["starts", "file"], bounds
    labels = config.data.table.labels
    if name not in config.train.trainable:
        return [(where, f"{name}.lower/upper: {name!r} is not trained (train.trainable)")]
    start = (config.start_values or {}).get(name, np.full(len(labels), config.params[name]))
    for g in range(len(labels)):
        if not low[g] < high[g]:
            return [
                (where, f"data set {labels[g]!r}: {name}: lower {low[g]:g} must be below upper {high[g]:g}")
            ]
        if not low[g] <= start[g] <= high[g]:
            return [
                (
                    where,
                    f"data set {labels[g]!r}: {name}: start {start[g]:g} is outside [{low[g]:g}, {high[g]:g}]",
                )
            ]
    return []


def interval_errors(config: Config) -> list:
    """``report.intervals: profile``: one fit, least squares."""
    if config.report.intervals != "profile":
        return []
    if config.is_batch:
        return [
            (
                ["report", "intervals"],
                "profile intervals are a single fit's here; for a batch use "
                "jaxfit.curve_fit(..., result=True).profile()",
            )
        ]
    if config.train.loss != "ssr":
        return [
            (["report", "intervals"], f"profile intervals need train.loss: ssr (got {config.train.loss})")
        ]
    return []


def shared_errors(config: Config) -> list:
    """``shared``: trained parameters of grouped data, fitted by lm, one fit per set."""
    shared, trainable = config.shared, config.train.trainable
    if not shared:
        return []
    if not config.data.grouped:
        return [(["shared"], "a global fit needs grouped data (data.group: the column of data-set labels)")]
    for name in shared:
        if name not in trainable:
            return [
                (
                    ["shared"],
                    f"{name!r} is not one of the trained parameters (train.trainable: {', '.join(trainable)})",
                )
            ]
    if len(set(shared)) != len(shared):
        return [(["shared"], "a parameter is named twice")]
    if set(trainable) <= set(shared):
        return [(["shared"], "leave at least one trained parameter local to each data set")]
    if config.train.optimizer.name != "lm":
        return [(["train", "optimizer"], "a global fit (shared) runs Levenberg-Marquardt: set it to lm")]
    if config.batch is not None:
        return [(["batch"], "a global fit (shared) is one fit of every data set; remove the batch section")]
    import numpy as np

    for name, sides in config.bounds_by_set().items():
        if name in shared and any(np.ndim(b) and np.ptp(b) > 0 for b in sides):
            return [(["starts", "file"], f"{name!r} is shared: give it one bound for every data set")]
    return []


def loss_errors(config: Config) -> list:
    """``train.loss: poisson`` needs counts (y ≥ 0) and no sigma."""
    if config.train.loss != "poisson":
        return []
    if config.data.sigma is not None:
        return [(["data", "sigma"], "a Poisson fit weighs each count by the model itself; give no sigma")]
    import numpy as np

    y = config.data.table.y if config.data.file is not None else np.asarray(config.data.y, float)
    if (np.asarray(y)[np.isfinite(y)] < 0).any():
        return [(["data", "y"], "counts must be >= 0 for train.loss: poisson")]
    return []


def run_guess(config: Config, source: str, text: str | None) -> None:
    """Run ``model.guess`` on every data set (one error line if it fails)."""
    from jaxfit.plan import functions

    where = [(["model", "guess"])]
    if not config.data.grouped or config.starts is not None:
        why = (
            "needs grouped data (data.group)" if not config.data.grouped else "give starts or guess, not both"
        )
        refuse(source, text, [(where[0], why)])
    try:
        guess = functions.load_callable(config.model.guess)
        x, y, mask, _ = config.data.padded()
        config._starts = functions.guess_starts(
            guess, x, y, mask, tuple(config.train.trainable), config.model.guess, config.precision
        )
    except ValueError as err:
        refuse(source, text, [(where[0], str(err))])


def guess_builtin(config: Config, given: set[str], source: str, text: str | None) -> None:
    """A built-in model's starts for the trained parameters ``params`` leaves out, from
    its guess: every data set's (grouped data: a start per set) or the one data set's."""
    import jax.numpy as jnp
    import numpy as np

    from jaxfit.plan import functions

    model = config.model.built_in()
    wanted = [n for n in config.train.trainable if n not in given]
    if not wanted:
        return
    if config.data.grouped:
        x, y, mask, _ = config.data.padded()
    else:
        x, y = (np.asarray(a, np.float64)[None] for a in config.data.arrays())
        mask = np.isfinite(y) & (np.isfinite(x).all(axis=-1) if x.ndim == 3 else np.isfinite(x))

    def guess(x: Any, y: Any, mask: Any) -> dict[str, Any]:
        found = model.guess(x, jnp.where(mask, y, 0), mask)
        return {n: found[n] for n in wanted if n in found}

    try:
        starts = functions.guess_starts(
            guess, x, y, mask, tuple(config.train.trainable), config.model.builtin, config.precision
        )
    except ValueError as err:
        refuse(source, text, [(["model", "builtin"], str(err))])
    if config.data.grouped:
        config._starts = starts
    else:
        config.params.update({n: float(v[0]) for n, v in starts.items()})


def read_starts(config: Config, source: str, text: str | None) -> None:
    """Read the starts table into ``config`` (one error line for whatever is wrong)."""
    import csv

    import numpy as np

    where = ["starts", "file"]
    path = Path(config.starts.file)
    if not config.data.grouped:
        refuse(source, text, [(["starts"], "needs grouped data (data.group): a start per data set")])
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as err:
        refuse(source, text, [(where, f"{path}: cannot read: {getattr(err, 'strerror', None) or err}")])
    if not rows:
        refuse(source, text, [(where, f"{path}: the file is empty")])
    header = [h.strip() for h in rows[0]]
    group = config.starts.group
    if group not in header:
        refuse(source, text, [(where, f"{path}: no column {group!r} (the header has {', '.join(header)})")])
    names = [h for h in header if h != group]
    for name in names:
        name = name.removesuffix(".lower").removesuffix(".upper")  # a bound of the data set's fit
        if name not in config.names:
            refuse(source, text, [(where, f"{path}: column {name!r} is not a parameter of the model")])
        if name not in config.train.trainable:
            refuse(source, text, [(where, f"{path}: column {name!r} is not trained (train.trainable)")])
    table: dict[str, list[float]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        cells = dict(zip(header, (c.strip() for c in row)))
        try:  # an empty bound cell: no bound on that side
            values = [_bound_cell(n) if _is_bound(n) and cells[n] == "" else float(cells[n]) for n in names]
        except (KeyError, ValueError):
            refuse(source, text, [(where, f"{path}: row {line}: every start must be a number")])
        if not all(math.isfinite(v) or _is_bound(n) for n, v in zip(names, values)):
            refuse(source, text, [(where, f"{path}: row {line}: a start is not finite")])
        table[cells.get(group, "")] = values
    labels = config.data.table.labels
    missing = [g for g in labels if g not in table]
    if missing:
        refuse(
            source,
            text,
            [(where, f"{path}: no start for data set {missing[0]!r} ({len(missing):,} missing)")],
        )
    columns = np.array([table[g] for g in labels], np.float64).reshape(len(labels), len(names))
    config._starts = {n: columns[:, i] for i, n in enumerate(names) if not _is_bound(n)}
    config._start_bounds = {n: columns[:, i] for i, n in enumerate(names) if _is_bound(n)}


def _is_bound(column: str) -> bool:
    """A starts-table column ``P.lower`` or ``P.upper``: a bound per data set."""
    return column.endswith((".lower", ".upper"))


def _bound_cell(column: str) -> float:
    return -math.inf if column.endswith(".lower") else math.inf
