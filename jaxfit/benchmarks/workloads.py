"""``python -m jaxfit bench``: jaxfit against peers measured in the same process.

Workloads (from the issue tracker's definition):
  W1 seed sweep      N initial b3 in [-10, 10], b3 only, sgd lr 0.1, tol 1e-4, float32
  W2 random restarts N fits of all seven params from N(0, 1) (seed 0), sgd lr 0.05,
                     tol 1e-5, max 5000 steps, float32 (agreement checked in float64)

Peers: vectorised NumPy gradient descent with the same stopping rule (always),
PyTorch ``torch.func.vmap`` (when torch is installed), SciPy per-fit BFGS (small N).
Times are end to end through ``fit_batch`` after its first (compiling) call.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from jaxfit.core.example import PARAM_NAMES, SEED_X, SEED_Y

CONVERGED, MAX_STEPS, DIVERGED = 1, 2, 3


def w1_config(n: int, precision: str = "float32") -> dict[str, Any]:
    return {
        "precision": precision,
        "train": {"trainable": ["b3"], "learning_rate": 0.1, "tolerance": 1e-4, "max_steps": 1000},
        "batch": {"init": {"b3": {"linspace": [-10.0, 10.0, n]}}},
    }


def w2_config(n: int, precision: str = "float32") -> dict[str, Any]:
    return {
        "precision": precision,
        "train": {
            "trainable": list(PARAM_NAMES),
            "learning_rate": 0.05,
            "tolerance": 1e-5,
            "max_steps": 5000,
        },
        "batch": {
            "init": {p: {"normal": {"mean": 0.0, "std": 1.0}} for p in PARAM_NAMES},
            "seed": 0,
            "count": n,
        },
    }


# -- the NumPy peer: all fits at once, finished ones dropped from the active set


BLUE, ORANGE = ("w1", "b1", "w3"), ("w2", "b2", "w4")


def _np_node(w: np.ndarray, b: np.ndarray, x: np.ndarray, need_sigmoid: bool):
    z = w[:, None] * x + b[:, None]
    e = np.exp(-np.abs(z))
    s = np.maximum(z, 0) + np.log1p(e)
    return s, (np.where(z >= 0, 1, e) / (1 + e) if need_sigmoid else None)


class _NumpyModel:
    """The seed's network and its gradient, vectorised over fits, written as a NumPy
    expert would: a hidden node none of whose parameters train is computed once."""

    def __init__(self, p: dict[str, np.ndarray], x: np.ndarray, trainable: Sequence[str]):
        self.x, self.trainable = x, set(trainable)
        self.const = np.zeros((len(p["b3"]), len(x)), x.dtype)
        for w, b, v in (BLUE, ORANGE):
            if not self.trainable & {w, b, v}:
                self.const += p[v][:, None] * _np_node(p[w], p[b], x, False)[0]
        self.live = [nm for nm in (BLUE, ORANGE) if self.trainable & set(nm)]

    def keep(self, rows: np.ndarray) -> None:
        self.const = self.const[rows]

    def loss_grad(self, p: dict[str, np.ndarray], y: np.ndarray):
        x = self.x
        pred = self.const + p["b3"][:, None]
        nodes = {}
        for w, b, v in self.live:
            s, sig = _np_node(p[w], p[b], x, bool(self.trainable & {w, b}))
            nodes[v] = (s, sig)
            pred = pred + p[v][:, None] * s
        r = y - pred
        d = -2 * r
        g: dict[str, np.ndarray] = {"b3": d.sum(1)} if "b3" in self.trainable else {}
        for w, b, v in self.live:
            s, sig = nodes[v]
            if v in self.trainable:
                g[v] = (d * s).sum(1)
            if sig is not None:
                t = d * p[v][:, None] * sig
                if w in self.trainable:
                    g[w] = (t * x).sum(1)
                if b in self.trainable:
                    g[b] = t.sum(1)
        return np.sum(r * r, axis=1), g


def numpy_gd(
    init: dict[str, np.ndarray], trainable: Sequence[str], lr: float, tol: float, max_steps: int, dtype: Any
):
    """Vectorised gradient descent with jaxfit's stopping rule; returns (params, loss, steps, status)."""
    x, y = np.asarray(SEED_X, dtype), np.asarray(SEED_Y, dtype)
    n = len(next(iter(init.values())))
    p = {k: np.array(v, dtype) for k, v in init.items()}
    lr, tol = dtype(lr), dtype(tol)
    steps, status = np.zeros(n, np.int32), np.zeros(n, np.int8)
    loss = np.empty(n, dtype)
    active = np.arange(n)
    with np.errstate(all="ignore"):
        cur = {k: v[active] for k, v in p.items()}
        model = _NumpyModel(cur, x, trainable)
        lo, g = model.loss_grad(cur, y)
        while active.size:
            sizes = {k: lr * g[k] for k in trainable}
            for k in trainable:
                cur[k] = cur[k] - sizes[k]
            lo, g = model.loss_grad(cur, y)
            count = steps[active] + 1
            finite = np.isfinite(lo)
            small = np.ones(active.size, bool)
            for k in trainable:
                finite &= np.isfinite(g[k]) & np.isfinite(cur[k]) & np.isfinite(sizes[k])
                small &= np.abs(sizes[k]) < tol
            st = np.select([~finite, small, count >= max_steps], [DIVERGED, CONVERGED, MAX_STEPS], 0)
            steps[active] = count
            done = st != 0
            if done.any():
                idx = active[done]
                status[idx], loss[idx] = st[done], lo[done]
                for k in trainable:
                    p[k][idx] = cur[k][done]
                keep = ~done
                active = active[keep]
                cur = {k: v[keep] for k, v in cur.items()}
                g = {k: v[keep] for k, v in g.items()}
                model.keep(keep)
    return p, loss, steps, status


def torch_peer(
    init: dict[str, np.ndarray], trainable: Sequence[str], lr: float, tol: float, max_steps: int
) -> float | None:
    """Seconds for the same fits with ``torch.func.vmap(grad)`` (fixed-shape masked loop)."""
    try:
        import torch
        from torch.func import grad, vmap
    except ImportError:
        return None
    x, y = torch.tensor(SEED_X), torch.tensor(SEED_Y)

    def ssr(tr, fr):
        p = {**fr, **tr}
        pred = (
            p["w3"] * torch.nn.functional.softplus(p["w1"] * x + p["b1"])
            + p["w4"] * torch.nn.functional.softplus(p["w2"] * x + p["b2"])
            + p["b3"]
        )
        return ((y - pred) ** 2).sum()

    g_fn = vmap(grad(ssr))
    t0 = time.perf_counter()
    tr = {k: torch.tensor(init[k]) for k in trainable}
    fr = {k: torch.tensor(v) for k, v in init.items() if k not in trainable}
    running = torch.ones(len(init["b3"]), dtype=torch.bool)
    with torch.no_grad():
        for _ in range(max_steps):
            g = g_fn(tr, fr)
            small = torch.ones_like(running)
            for k in trainable:
                s = lr * g[k]
                tr[k] = torch.where(running, tr[k] - s, tr[k])
                small &= s.abs() < tol
            running &= ~small & torch.isfinite(sum(tr.values()))
            if not running.any():
                break
    return time.perf_counter() - t0


def scipy_peer(init: dict[str, np.ndarray], trainable: Sequence[str], n: int) -> float | None:
    """Seconds for ``n`` per-fit SciPy BFGS minimisations (a different algorithm: a speed reference)."""
    try:
        from scipy.optimize import minimize
    except ImportError:
        return None
    x, y = np.asarray(SEED_X), np.asarray(SEED_Y)
    t0 = time.perf_counter()
    for i in range(n):
        base = {k: np.asarray([float(v[i])]) for k, v in init.items()}

        def f(v, base=base):
            p = {**base, **{k: np.asarray([v[j]]) for j, k in enumerate(trainable)}}
            loss, g = _NumpyModel(p, x, trainable).loss_grad(p, y)
            return float(loss[0]), np.array([g[k][0] for k in trainable])

        minimize(
            f,
            np.array([float(init[k][i]) for k in trainable]),
            jac=True,
            method="BFGS",
            options={"gtol": 1e-5},
        )
    return time.perf_counter() - t0


def _timed(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _inits(result: Any) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in result.init.items()}


def run_workload(
    name: str,
    cfg: dict[str, Any],
    trainable: Sequence[str],
    lr: float,
    tol: float,
    max_steps: int,
    scipy_n: int,
) -> dict[str, Any]:
    from jaxfit.batch import fit_batch

    first = fit_batch(cfg)  # compiles
    t_jax, res = _timed(lambda: fit_batch(cfg))
    inits = _inits(res)
    t_np, (_p, _l, np_steps, np_status) = _timed(
        lambda: numpy_gd(inits, trainable, lr, tol, max_steps, np.float32), repeat=1
    )
    row = {
        "workload": name,
        "fits": res.fits,
        "jaxfit_s": t_jax,
        "jaxfit_fits_per_s": res.fits / t_jax,
        "fit_steps_per_s": float(res.steps.sum(dtype=np.int64)) / t_jax,
        "compile_s": first.compile_s,
        "numpy_s": t_np,
        "speedup_vs_numpy": t_np / t_jax,
        "same_steps": float(np.mean(np_steps == res.steps)),
        "same_status": float(np.mean(np_status == res.status)),
        "peak_rss_mb": _rss_mb(),
        "devices": res.devices,
    }
    t_torch = torch_peer(inits, trainable, lr, tol, max_steps) if res.fits <= 100_000 else None
    row["torch_s"] = t_torch
    sub = {k: v[:scipy_n] for k, v in inits.items()}
    t_scipy = scipy_peer(sub, trainable, scipy_n)
    row["scipy_fits_per_s"] = scipy_n / t_scipy if t_scipy else None
    if name == "W1":
        final = numpy_gd(inits, trainable, lr, tol, max_steps, np.float32)[0]["b3"]
        row["max_abs_diff_b3"] = float(np.max(np.abs(final - res.params["b3"])))
    return row


def w2_float64_agreement(n: int) -> dict[str, float]:
    from jaxfit.batch import fit_batch

    res = fit_batch(w2_config(n, "float64"))
    _p, loss, steps, status = numpy_gd(_inits(res), PARAM_NAMES, 0.05, 1e-5, 5000, np.float64)
    both = (status == CONVERGED) & (res.status == CONVERGED)
    return {
        "same_status": float(np.mean(status == res.status)),
        "same_steps": float(np.mean(steps == res.steps)),
        "max_loss_diff_converged": float(np.max(np.abs(loss[both] - res.loss[both]))) if both.any() else 0.0,
    }


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m jaxfit bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    ap.add_argument("--gpu", action="store_true", help="GPU sizes: W1 at 1e8, W2 at 1e6 (jaxfit only)")
    ap.add_argument(
        "--serve", action="store_true", help="the HTTP service under load, with and without dynamic batching"
    )
    ap.add_argument(
        "--no-trace", action="store_true", help="--serve requests ask for no trace (?trace=false)"
    )
    ap.add_argument(
        "--serve-lr",
        type=float,
        default=0.1,
        help="learning rate of the --serve requests (smaller: more steps per fit)",
    )
    ap.add_argument("--serve-clients", type=int, default=200, help="--serve: concurrent clients")
    ap.add_argument("--serve-requests", type=int, default=20, help="--serve: requests per client")
    ap.add_argument("--serve-rounds", type=int, default=3, help="--serve: interleaved rounds (median)")
    return ap


def _num(v: float | None, fmt: str = "{:,.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def _gpu() -> int:
    from jaxfit.batch import fit_batch

    for name, cfg in (("W1", w1_config(100_000_000)), ("W2", w2_config(1_000_000))):
        first = fit_batch(cfg)
        t, res = _timed(lambda cfg=cfg: fit_batch(cfg), repeat=2)
        print(
            f"{name}: {res.fits:,} fits in {t:.3f} s = {res.fits / t:,.0f} fits/s; compile {first.compile_s:.2f} s; {res.status_counts()}"
        )
    return 0


def _workload_table(rows: list[dict[str, Any]]) -> str:
    from jaxfit.report import table

    headers = ["workload", "fits", "jaxfit fits/s", "fit-steps/s", "NumPy fits/s", "jaxfit/NumPy"]
    headers += ["torch fits/s", "SciPy BFGS fits/s", "compile s", "peak RSS MB"]
    return table(
        headers,
        [
            [
                r["workload"],
                f"{r['fits']:,}",
                _num(r["jaxfit_fits_per_s"]),
                _num(r["fit_steps_per_s"]),
                _num(r["fits"] / r["numpy_s"]),
                _num(r["speedup_vs_numpy"], "{:.1f}x"),
                _num(r["fits"] / r["torch_s"] if r["torch_s"] else None),
                _num(r["scipy_fits_per_s"]),
                _num(r["compile_s"], "{:.2f}"),
                _num(r["peak_rss_mb"]),
            ]
            for r in rows
        ],
    )


def _w1_scaling(sizes: Sequence[int]) -> str:
    from jaxfit.batch import fit_batch
    from jaxfit.report import table

    scale = []
    for n in sizes:
        t, _ = _timed(lambda n=n: fit_batch(w1_config(n)), repeat=2)
        scale.append([f"{n:,}", f"{t:.4f}", _num(n / t), _num(_rss_mb())])
    return table(["N", "seconds", "fits/s", "peak RSS MB"], scale)


def main(argv: Sequence[str]) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    if args.serve:
        for name in ("serve_clients", "serve_requests", "serve_rounds"):
            if getattr(args, name) < 1:
                ap.error(f"--{name.replace('_', '-')}: must be at least 1")
        from jaxfit.benchmarks.serving import serve_bench

        return serve_bench(
            args.serve_clients, args.serve_requests, args.serve_rounds, args.serve_lr, not args.no_trace
        )
    os.environ.setdefault("JAX_NUM_CPU_DEVICES", str(os.cpu_count() or 1))
    import jax

    dev = jax.local_devices()
    print(
        f"jaxfit bench: {len(dev)} x {dev[0].device_kind} ({dev[0].platform}), jax {jax.__version__}, python {sys.version.split()[0]}"
    )
    if args.gpu:
        return _gpu()
    n1, n2, scipy_n = (20_000, 500, 50) if args.quick else (1_000_000, 10_000, 300)
    rows = [
        run_workload("W1", w1_config(n1), ["b3"], 0.1, 1e-4, 1000, scipy_n),
        run_workload("W2", w2_config(n2), PARAM_NAMES, 0.05, 1e-5, 5000, scipy_n // 3),
    ]
    print(_workload_table(rows))
    w1 = rows[0]
    print(
        f"\nW1 agreement with NumPy (float32): same steps {100 * w1['same_steps']:.3f}% of fits, max |b3 diff| {w1['max_abs_diff_b3']:.2e}"
    )
    agree = w2_float64_agreement(n2 if not args.quick else 200)
    print(
        f"W2 agreement with NumPy (float64): same status {100 * agree['same_status']:.2f}%, same steps {100 * agree['same_steps']:.2f}%, max loss diff (converged in both) {agree['max_loss_diff_converged']:.2e}"
    )
    print("\nW1 scaling (jaxfit, end to end after compile):")
    print(_w1_scaling([10**3, 10**4, 10**5] if args.quick else [10**3, 10**4, 10**5, 10**6, 10**7]))
    return 0
