"""Host-side presentation: aligned terminal tables, JSON and CSV of results."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxfit.output.results import BatchResult, FitResult


def num(value: float, digits: int = 6) -> str:
    """A number with ``digits`` significant digits; scientific only when very small/large."""
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) < 1e-4 or abs(value) >= 1e7):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


def table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[bool] | None = None
) -> str:
    """An aligned plain-text table: numbers right-aligned, text left-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    numeric = numeric or [True] * len(headers)
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule] + [line(r) for r in cells])


def _optimizer_line(result_precision: str, config: dict[str, Any]) -> str:
    t = config["train"]
    return (
        f"optimizer {t['optimizer']['name']}, learning rate {num(t['learning_rate'])}, "
        f"tolerance {num(t['tolerance'])}, max {t['max_steps']} steps, {result_precision}"
    )


def fit_text(result: FitResult, config: dict[str, Any], source: str, head: int = 30, tail: int = 5) -> str:
    """The seed's story for one fit: start, step table, end (``config`` as a plain dict)."""
    out = [
        f"jaxfit: {source}",
        f"  trains {', '.join(result.trainable)}; " + _optimizer_line(result.precision, config),
    ]
    out.append(f"\nStarting SSR: {num(result.init_loss)}\n")
    steps = result.trace_rows()
    shown = steps if len(steps) <= head + tail else steps[:head] + steps[-tail:]
    rows, many = [], len(result.trainable) > 1
    for i, row in enumerate(shown):
        if i == head and len(shown) < len(steps):
            rows.append(
                [
                    "...",
                    f"({len(steps) - head - tail} steps not shown; --format json has them all)",
                    "",
                    "",
                    "",
                    "",
                    "",
                ]
            )
        for j, name in enumerate(result.trainable):
            value, size = row["params"][name], row["step_size"][name]
            rows.append(
                [
                    row["step"] if j == 0 else "",
                    name,
                    num(value),
                    num(row["grad"][name]),
                    num(size),
                    num(value - size),
                    num(row["loss"]) if j == 0 else "",
                ]
            )
        if many and i < len(shown) - 1:
            rows.append([""] * 7)
    out.append(
        table(
            ["step", "param", "value", "dSSR/dparam", "step size", "new value", "SSR before"],
            rows,
            [True, False, True, True, True, True, True],
        )
    )
    if not result.trace_complete:
        out.append(f"(trace thinned: the first {len(steps)} of {result.steps} steps are recorded)")
    out.append("\nFinal parameters:")
    out.append(parameter_table(result))
    out.append("\n" + statistics_text(result))
    out.append(f"\nSSR {num(result.loss)} after {result.steps} steps: {result.status.label}")
    return "\n".join(out)


def parameter_table(result: FitResult) -> str:
    """Start and final value of every parameter; for the trained ones the standard
    error (and relative to the value) and the confidence interval."""
    level = f"{100 * result.confidence:g}% interval" + ("" if result.profile is None else " (profile)")
    intervals = result.intervals
    rows = []
    for n in result.params:
        row = [n, num(result.init[n]), num(result.params[n]), "yes" if n in result.trainable else ""]
        if n in result.stderr:
            err, value = result.stderr[n], result.params[n]
            relative = f"({100 * abs(err / value):.3g}%)" if value != 0 and math.isfinite(err) else ""
            lo, hi = intervals[n]
            row += [f"± {num(err, 5)}", relative, f"[{num(lo)}, {num(hi)}]"]
        else:
            row += ["", "", ""]
        rows.append(row)
    return table(
        ["param", "start", "final", "trained", "stderr", "(relative)", level],
        rows,
        [False, True, True, False, False, False, False],
    )


def statistics_text(result: FitResult, threshold: float = 0.1) -> str:
    """The fit's statistics (n, dof, χ², reduced χ², AIC, BIC, R²) and its correlations
    above ``threshold`` in size, as lmfit's report gives them."""
    k = len(result.trainable)
    lines = [
        f"Fit statistics: {result.dof + k} points, {k} trained, dof {result.dof}, R² {num(result.rsquared)}",
        f"  chi-square {num(result.chisqr)}, reduced chi-square {num(result.redchi)}, "
        f"AIC {num(result.aic)}, BIC {num(result.bic)}",
    ]
    if result.singular:
        why = "fewer points than trained parameters" if result.dof <= 0 else "JᵀJ is singular"
        lines.append(f"Standard errors: not defined ({why}: some parameters are not determined by the data)")
        return "\n".join(lines)
    corr = result.correlation
    pairs = [
        (abs(corr[i, j]), f"C({a}, {b}) = {corr[i, j]:+.4f}")
        for i, a in enumerate(result.trainable)
        for j, b in enumerate(result.trainable)
        if i < j and abs(corr[i, j]) > threshold
    ]
    if k > 1:
        shown = ", ".join(text for _, text in sorted(pairs, reverse=True)) or "none"
        lines.append(f"Correlations above {threshold:g}: {shown}")
    return "\n".join(lines)


def with_error(value: float, err: float | None) -> str:
    """``value ± err`` (the value alone without an error)."""
    return num(value) if err is None else f"{num(value)} ± {num(err, 3)}"


def batch_text(result: BatchResult, source: str) -> str:
    """Summary of a batch: status counts, minima, speed, devices."""
    s = result.summary()
    out = [
        f"jaxfit: {source}",
        f"  {s['fits']:,} fits, training {', '.join(result.trainable)}, {result.precision}",
        "",
    ]
    out.append(
        table(
            ["status", "fits", "share"],
            [[k, f"{v:,}", f"{100 * v / max(s['fits'], 1):.2f}%"] for k, v in s["status_counts"].items()],
            [False, True, True],
        )
    )
    if s["minima"]:
        names = list(result.trainable)
        out.append(
            f"\nDistinct minima reached by converged fits ({s['minima_total']} in all, top {len(s['minima'])}):"
        )
        out.append(
            table(
                names + ["SSR", "fits"],
                [
                    [num(m["params"][n]) for n in names] + [num(m["loss"]), f"{m['fits']:,}"]
                    for m in s["minima"]
                ],
            )
        )
    if s.get("per_group"):
        names = list(result.trainable)
        out.append(
            f"\nBest fit of each data set ({len(s['per_group'])} of {s['groups']:,} shown; ± standard errors):"
        )
        out.append(
            table(
                ["group", *names, "SSR", "steps", "status"],
                [
                    [
                        g["group"],
                        *[with_error(g["params"][n], g.get("stderr", {}).get(n)) for n in names],
                        num(g["loss"]),
                        g["steps"],
                        g["status"],
                    ]
                    for g in s["per_group"]
                ],
                [False, *[True] * (len(names) + 2), False],
            )
        )
    if s["best"]:
        b = s["best"]
        out.append(
            f"\nBest fit #{b['index']}"
            + (f" ({b['group']})" if "group" in b else "")
            + f": SSR {num(b['loss'])}, {b['steps']} steps, {b['status']}; "
            + ", ".join(
                f"{n}={with_error(v, b['stderr'][n]) if n in b.get('stderr', {}) else num(v)}"
                for n, v in b["params"].items()
            )
        )
    rate = s["fits_per_s"]
    out.append(
        f"\n{s['steps']['total']:,} steps (mean {s['steps']['mean']:.1f}, max {s['steps']['max']:,}); "
        f"run {s['run_s']:.3f} s"
        + (f" ({rate:,.0f} fits/s)" if rate else "")
        + f", compile {s['compile_s']:.3f} s; {s['devices']} x {s['device_kind']} device(s), block {s['block_size']}"
    )
    return "\n".join(out)


def csv_text(columns: dict[str, np.ndarray]) -> str:
    """Columns as CSV text (the csv module's quoting): numbers at full precision,
    labels as plain values."""
    names = list(columns)
    cols = [np.asarray(columns[n]).tolist() for n in names]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    writer.writerows(zip(*cols))
    return out.getvalue()


def fit_csv(result: FitResult) -> str:
    """The trace of one fit as CSV: step, loss, then value/grad/step_size per parameter."""
    rows = len(result.trace_loss)
    columns = {"step": np.arange(1, rows + 1), "loss": result.trace_loss}
    for n in result.trainable:
        columns |= {
            f"value_{n}": result.trace_params[n],
            f"grad_{n}": result.trace_grad[n],
            f"step_size_{n}": result.trace_step_size[n],
        }
    return csv_text(columns)


def _g(value: float) -> str:
    """lmfit's number format: 9 significant digits, scientific when very small/large."""
    return num(float(value), 9)


def fit_report(
    model: str,
    names: Sequence[str],
    values: np.ndarray,
    stderr: np.ndarray,
    init: np.ndarray,
    facts: dict[str, Any],
    covariance: np.ndarray,
    intervals: tuple[np.ndarray, np.ndarray],
    confidence: float,
    min_correl: float = 0.1,
    method: str = "Student's t",
) -> str:
    """One fit in lmfit's ``fit_report`` layout (statistics, variables with their
    errors, correlations), plus its status in words and Student's t intervals.
    ``facts``: ``steps``, ``points``, ``chisqr``, ``redchi``, ``aic``, ``bic``,
    ``rsquared``, ``status`` (a label)."""
    k = len(names)
    lines = [
        "[[Model]]",
        f"    Model({model})",
        "[[Fit Statistics]]",
        "    # fitting method   = Levenberg-Marquardt (jaxfit)",
        f"    # function evals   = {facts['steps'] + 1}",
        f"    # data points      = {facts['points']}",
        f"    # variables        = {k}",
        f"    chi-square         = {_g(facts['chisqr'])}",
        f"    reduced chi-square = {_g(facts['redchi'])}",
        f"    Akaike info crit   = {_g(facts['aic'])}",
        f"    Bayesian info crit = {_g(facts['bic'])}",
        f"    R-squared          = {_g(facts['rsquared'])}",
        f"    status             = {facts['status']} after {facts['steps']} steps",
        "[[Variables]]",
    ]
    width = max(len(n) for n in names) + 1
    for i, n in enumerate(names):
        v, e = float(values[i]), float(stderr[i])
        rel = f" ({abs(e / v) * 100:.2f}%)" if v != 0 and math.isfinite(e) else ""
        err = f" +/- {_g(e)}{rel}" if math.isfinite(e) else " +/- inf (the covariance could not be estimated)"
        lines.append(f"    {(n + ':').ljust(width)}  {_g(v)}{err} (init = {num(float(init[i]), 9)})")
    lines.append(f"[[Confidence intervals]] ({confidence:.0%}, {method} at {facts['points'] - k} dof)")
    for i, n in enumerate(names):
        lines.append(f"    {(n + ':').ljust(width)}  [{_g(intervals[0][i])}, {_g(intervals[1][i])}]")
    corr = np.asarray(covariance, np.float64)
    d = np.sqrt(np.diag(corr))
    pairs = []
    if np.isfinite(corr).all() and (d > 0).all():
        corr = corr / np.outer(d, d)
        pairs = [
            (corr[i, j], i, j) for i in range(k) for j in range(i + 1, k) if abs(corr[i, j]) >= min_correl
        ]
    lines.append(f"[[Correlations]] (unreported correlations are < {min_correl:.3f})")
    for c, i, j in sorted(pairs, key=lambda p: -abs(p[0])):
        lines.append(f"    C({names[i]}, {names[j]}) = {c:+.4f}")
    return "\n".join(lines)
