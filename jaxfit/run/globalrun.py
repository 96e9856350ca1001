"""A config's global fit (``shared: [k]``): its data sets as one problem
(``jaxfit.run.globalfit``), its report and its run directory, both levels in each.

Run directory: ``config.yaml``; ``result.json`` (the shared parameters ± standard
errors, their covariance, χ², dof, status); ``fits.csv`` (a row per data set: its
label, each local parameter and its standard error from the joint covariance, its
χ² and points); ``env.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from jaxfit.config import Config, ConfigLike
from jaxfit.errors import ConfigError
from jaxfit.run.globalfit import GlobalFit


def fit_global(config: ConfigLike, devices: int | None = None) -> GlobalFit:
    """``jaxfit.fit_global``: a config with ``shared:`` (a ``Config``, a mapping or a
    YAML file's path) fitted as one problem (``fit_config``)."""
    from jaxfit.config import load_config

    config = load_config(config)
    if not config.shared:
        raise ConfigError("shared: fit_global needs a config that names its shared parameters (shared: [k])")
    return fit_config(config, devices)


def fit_config(config: Config, devices: int | None = None) -> GlobalFit:
    """Fit a config's grouped data with its ``shared`` parameters common to every set.
    Starts: a local per data set from the starts table (or the built-in model's guess),
    else ``params``; a shared one from ``params`` (the median of its column where the
    starts table gives it per set). ``train``'s ``ftol``/``xtol``, where set, replace
    the global fit's own (1e-6 in float32, 1e-12 in float64); ``block_size`` streams
    the data sets in chunks of that many."""
    from jaxfit.curvefit_args import Arrays
    from jaxfit.plan.lowering import batch_data
    from jaxfit.run.globalfit import global_fit

    data, _ = batch_data(config)
    dtype = np.dtype(config.precision)
    trainable = tuple(config.train.trainable)
    given = config.start_values or {}
    G = config.data.groups
    starts = np.stack([np.broadcast_to(given.get(n, config.params[n]), (G,)) for n in trainable], axis=1)
    frozen = {n: v for n, v in config.params.items() if n not in trainable}
    arrays = Arrays(data.x, data.y, data.mask, data.sigma, starts, trainable, config.core_model, dtype, False)
    train = config.train
    return global_fit(
        arrays,
        config.shared,
        absolute_sigma=train.absolute_sigma,
        max_steps=train.max_steps,
        bounds=_bounds(config, trainable, G),
        loss=(train.loss, train.f_scale),
        ftol=train.ftol or None,
        xtol=train.xtol or None,
        frozen=frozen,
        devices=devices or config.devices,
        chunk=config.block_size,
    )


def _bounds(config: Config, names: tuple[str, ...], groups: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(lower, upper)`` ``(G, k)`` from ``bounds`` and the starts table (None: none)."""
    given = config.bounds_by_set()
    if not given:
        return None
    lower, upper = np.full((groups, len(names)), -np.inf), np.full((groups, len(names)), np.inf)
    for name, (lo, hi) in given.items():
        lower[:, names.index(name)], upper[:, names.index(name)] = lo, hi
    return lower, upper


def per_set_columns(fit: GlobalFit, config: Config) -> dict[str, np.ndarray]:
    """``fits.csv``'s columns: each data set's label (under the data's group column),
    its locals ± standard errors, χ² and points."""
    columns: dict[str, np.ndarray] = {config.data.group: np.asarray(config.data.table.labels)}
    for j, name in enumerate(fit.local_names):
        columns[name] = fit.local[:, j]
        columns[f"{name}_err"] = fit.local_err[:, j]
    columns["chisqr"] = fit.chisqr_per_set
    columns["points"] = fit.points_per_set
    return columns


def summary(fit: GlobalFit, seconds: float | None = None) -> dict[str, Any]:
    """``result.json``: the shared level and the whole problem's statistics."""
    out: dict[str, Any] = {
        "kind": "global",
        "status": fit.status.label,
        "steps": fit.steps,
        "data_sets": len(fit.local),
        "shared": {n: float(v) for n, v in zip(fit.shared_names, fit.shared)},
        "shared_err": {n: float(e) for n, e in zip(fit.shared_names, fit.shared_err)},
        "shared_covariance": fit.cov_shared.tolist(),
        "local_names": list(fit.local_names),
        "chisqr": fit.chisqr,
        "dof": fit.dof,
        "redchi": fit.redchi,
    }
    if seconds is not None:
        out["seconds"] = seconds
    return out


def write(path: Path, config: Config, fit: GlobalFit, seconds: float) -> None:
    """The run directory of a global fit (the module docstring)."""
    from jaxfit.config import dump_yaml
    from jaxfit.output.atomic import write_atomic, write_json
    from jaxfit.output.report import csv_text
    from jaxfit.output.rundir import environment

    write_atomic(path / "config.yaml", dump_yaml(config))
    write_atomic(path / "fits.csv", csv_text(per_set_columns(fit, config)))
    write_json(path / "result.json", summary(fit, seconds))
    write_json(path / "env.json", environment(precision=config.precision, run_s=seconds))
