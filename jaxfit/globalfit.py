"""Global fits: many data sets fitted as one problem, some parameters shared by all
of them, the rest local to each (one rate across many traces, one width across many
spots).

``JᵀJ`` of such a problem is block-arrow shaped: a block ``A_g = J_gᵀJ_g`` of each
data set's local parameters, a border ``B_g = J_gᵀK_g`` (``K_g``: the derivatives of
data set ``g`` by the shared parameters) and ``C = Σ K_gᵀK_g``. Levenberg–Marquardt
(damping on the whole diagonal, one accept/reject for the whole problem) solves each
step by the Schur complement: ``S = C − Σ B_gᵀ A_g⁻¹ B_g``, ``S δ_s = −g_s + Σ B_gᵀ
A_g⁻¹ g_g``, ``δ_g = −A_g⁻¹(g_g + B_g δ_s)`` — ``O(G·n_l³ + n_s³)`` a step instead of
``O((G·n_l + n_s)³)``, each data set's blocks by ``vmap``. The joint covariance comes
from the same factors: ``S⁻¹`` for the shared block, ``A_g⁻¹ + E_g S⁻¹ E_gᵀ`` (``E_g =
A_g⁻¹ B_g``) for each local block, ``−E_g S⁻¹`` between them, ``E_g S⁻¹ E_hᵀ``
between two data sets' locals; times ``χ²/dof`` unless ``absolute_sigma``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxfit.core.status import Status


class _State(NamedTuple):
    local: jax.Array
    shared: jax.Array
    chisqr: jax.Array
    normal: tuple
    """The normal equations' blocks at ``(local, shared)``: ``A, B, C, g_l, g_s``."""
    lam: jax.Array
    steps: jax.Array
    status: jax.Array


@dataclasses.dataclass(frozen=True)
class GlobalFit:
    """A global fit of ``G`` data sets: ``n_l`` local parameters each and ``n_s`` shared."""

    names: tuple[str, ...]
    """Every parameter of the model, in order."""
    shared_names: tuple[str, ...]
    local_names: tuple[str, ...]
    shared: np.ndarray
    """``(n_s,)`` the shared parameters' values."""
    shared_err: np.ndarray
    local: np.ndarray
    """``(G, n_l)`` each data set's local parameters."""
    local_err: np.ndarray
    """``(G, n_l)`` their standard errors from the joint covariance."""
    cov_shared: np.ndarray
    """``(n_s, n_s)``."""
    cov_local: np.ndarray
    """``(G, n_l, n_l)`` each data set's local block of the joint covariance."""
    cov_cross: np.ndarray
    """``(G, n_l, n_s)`` each data set's locals against the shared parameters."""
    chisqr: float
    """χ² of the whole problem (with a robust loss: the loss, twice scipy's cost)."""
    dof: int
    chisqr_per_set: np.ndarray
    points_per_set: np.ndarray
    status: Status
    steps: int
    scale: float
    """The covariance's factor: ``χ²/dof``, or 1 with ``absolute_sigma``."""
    _E: np.ndarray = dataclasses.field(repr=False, default=None)  # type: ignore[assignment]
    _S_inv: np.ndarray = dataclasses.field(repr=False, default=None)  # type: ignore[assignment]

    @property
    def redchi(self) -> float:
        return self.chisqr / self.dof if self.dof > 0 else float("inf")

    @property
    def popt(self) -> np.ndarray:
        """``(G, k)``: every data set's parameters in the model's order (the shared in
        every row)."""
        out = np.empty((len(self.local), len(self.names)))
        for j, n in enumerate(self.names):
            out[:, j] = (
                self.shared[self.shared_names.index(n)]
                if n in self.shared_names
                else self.local[:, self.local_names.index(n)]
            )
        return out

    def covariance(self) -> np.ndarray:
        """The joint covariance ``(G·n_l + n_s)²``: every data set's locals in turn,
        then the shared — for a few data sets (it grows as ``G²``)."""
        G, nl = self.local.shape
        ns = len(self.shared)
        E, S_inv = self._E, self._S_inv
        full = np.zeros((G * nl + ns, G * nl + ns))
        ES = np.einsum("gij,jk->gik", E, S_inv)
        full[: G * nl, : G * nl] = np.einsum("gik,hjk->gihj", ES, E).reshape(G * nl, G * nl)
        for g in range(G):
            full[g * nl : (g + 1) * nl, g * nl : (g + 1) * nl] = self.cov_local[g]
        full[: G * nl, G * nl :] = self.cov_cross.reshape(G * nl, ns)
        full[G * nl :, : G * nl] = full[: G * nl, G * nl :].T
        full[G * nl :, G * nl :] = self.cov_shared
        return full

    def report(self, labels: Any = None, rows: int = 20) -> str:
        """The shared parameters, each data set's locals (± joint standard errors) and
        the fit's statistics, as text: the first ``rows`` data sets (by ``labels``, else
        their index) and, with more, how many were left out."""
        from jaxfit.report import num, table

        labels = range(len(self.local)) if labels is None else labels
        shown = min(rows, len(self.local))

        lines = [
            f"Global fit of {len(self.local):,} data sets: {self.status.label} after {self.steps} steps; "
            f"chi-square {num(self.chisqr)}, dof {self.dof}, reduced chi-square {num(self.redchi)}",
            "Shared:",
            table(
                ["param", "value", "stderr"],
                [
                    [n, num(v), f"± {num(e, 5)}"]
                    for n, v, e in zip(self.shared_names, self.shared, self.shared_err)
                ],
                [False, True, False],
            ),
            "Local (± from the joint covariance):",
            table(
                ["set", *self.local_names, "chi-square"],
                [
                    [
                        str(label),
                        *(f"{num(v)} ± {num(e, 3)}" for v, e in zip(self.local[g], self.local_err[g])),
                        num(self.chisqr_per_set[g]),
                    ]
                    for g, label in zip(range(shown), labels)
                ],
                [True, *([True] * len(self.local_names)), True],
            ),
        ]
        if shown < len(self.local):
            lines.append(
                f"… and {len(self.local) - shown:,} more data sets (every one: --format csv, or fits.csv)"
            )
        return "\n".join(lines)


def _blocks(
    r: jax.Array, cols: tuple[jax.Array, ...], li: tuple[int, ...], si: tuple[int, ...], real: jax.Array
) -> tuple:
    """One data set's ``A``, ``B``, ``C`` blocks and gradients from its loss's
    least-squares form ``(r̃, J̃)`` (``core.losses.linearized``), each entry a dot
    product of two columns (under ``vmap``: elementwise work across the data sets,
    where a batched matrix product runs set by set). A padding set (``real`` False: no
    points) gets ``A = I`` (its locals stay put, nothing is shared)."""
    Jl, Js = [cols[i] for i in li], [cols[i] for i in si]
    A = _gram(Jl, Jl, symmetric=True)
    A = jnp.where(real, A, jnp.eye(len(li), dtype=r.dtype))
    gl = jnp.stack([jnp.sum(u * r) for u in Jl])
    gs = jnp.stack([jnp.sum(u * r) for u in Js])
    return A, _gram(Jl, Js), _gram(Js, Js, symmetric=True), gl, gs


def _gram(U: list[jax.Array], V: list[jax.Array], symmetric: bool = False) -> jax.Array:
    """``[[uᵢ·vⱼ]]`` (each product once where symmetric)."""
    dots: dict[tuple[int, int], jax.Array] = {}
    for i, u in enumerate(U):
        for j, v in enumerate(V):
            dots[i, j] = dots[j, i] if symmetric and j < i else jnp.sum(u * v)
    return jnp.stack([jnp.stack([dots[i, j] for j in range(len(V))]) for i in range(len(U))])


def _spd_inverse(A: jax.Array) -> jax.Array:
    """The inverses of many small symmetric positive-definite matrices ``(G, n, n)``:
    Cholesky and its triangular inverse unrolled entry by entry, each operation across
    all ``G`` (vector work; XLA:CPU's batched LU runs matrix by matrix). ``n > 8``:
    ``jnp.linalg.inv``."""
    n = A.shape[-1]
    if n > 8:
        return jnp.linalg.inv(A)
    a = [[A[..., i, j] for j in range(n)] for i in range(n)]
    L: list[list[Any]] = [[None] * n for _ in range(n)]
    for j in range(n):
        L[j][j] = jnp.sqrt(a[j][j] - sum(L[j][k] ** 2 for k in range(j)))
        for i in range(j + 1, n):
            L[i][j] = (a[i][j] - sum(L[i][k] * L[j][k] for k in range(j))) / L[j][j]
    M: list[list[Any]] = [[None] * n for _ in range(n)]  # M = L⁻¹, lower triangular
    for i in range(n):
        M[i][i] = 1 / L[i][i]
        for j in range(i):
            M[i][j] = -sum(L[i][k] * M[k][j] for k in range(j, i)) / L[i][i]
    inv = [[sum(M[k][i] * M[k][j] for k in range(max(i, j), n)) for j in range(n)] for i in range(n)]
    return jnp.stack([jnp.stack(row, axis=-1) for row in inv], axis=-2)


def _schur(A: jax.Array, B: jax.Array, C: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``E_g = A_g⁻¹ B_g``, ``S = C − Σ B_gᵀ E_g`` and ``A_g⁻¹`` (products written
    out elementwise: tiny matrices, many sets)."""
    A_inv = _spd_inverse(A)
    E = jnp.sum(A_inv[:, :, :, None] * B[:, None, :, :], axis=2)
    S = C - jnp.sum(B[:, :, :, None] * E[:, :, None, :], axis=(0, 1))
    return E, S, A_inv


def _free(p: jax.Array, g: jax.Array, lower: jax.Array, upper: jax.Array) -> jax.Array:
    """1 where a parameter may move this step, 0 where it sits on a bound the descent
    ``−g`` points past (``g = Jᵀr``, ``r = (y − f)/σ``)."""
    held = ((p <= lower) & (g > 0)) | ((p >= upper) & (g < 0))
    return 1.0 - held.astype(p.dtype)


@functools.lru_cache(maxsize=16)
def _program(
    names: tuple[str, ...],
    model: Any,
    local_idx: tuple[int, ...],
    shared_idx: tuple[int, ...],
    per_set: bool,
    loss: tuple[str, float],
    frozen: tuple[tuple[str, float], ...] = (),
) -> Any:
    from jaxfit.core import losses
    from jaxfit.core.model import Data

    k = len(names)
    kind, f_scale = loss

    def params_of(local: jax.Array, shared: jax.Array) -> dict[str, jax.Array]:
        p = jnp.zeros(k, local.dtype).at[jnp.array(local_idx, int)].set(local)
        p = p.at[jnp.array(shared_idx, int)].set(shared)
        return {**{n: jnp.asarray(v, local.dtype) for n, v in frozen}, **dict(zip(names, p))}

    axes = (0 if per_set else None, 0, 0, 0, 0, None)

    def one_set(x, y, m, s, local, shared, final):
        """One data set's blocks and its loss (least squares: ``Σ r²`` of the same ``r``)."""
        data, params = Data(x, y, m, s), params_of(local, shared)
        r, cols = losses.linearized(kind, model, names, params, {}, data, f_scale, majorize=not final)
        loss = jnp.sum(r * r) if kind == "ssr" else losses.value(kind, params, data, model, f_scale)
        return _blocks(r, cols, local_idx, shared_idx, m.any()), loss

    def blocks(x, y, m, s, local, shared, final=False):  # all data sets at once
        return jax.vmap(lambda *a: one_set(*a, final), in_axes=axes)(x, y, m, s, local, shared)

    def run(x, y, m, s, local, shared, bounds, max_steps, ftol, xtol):
        lo_l, hi_l, lo_s, hi_s = bounds

        def linearize(local, shared):
            """The normal equations' blocks and the loss at a point (one pass: the
            loss shares the model's values with the blocks)."""
            (A, B, Cg, gl, gsg), chi = blocks(x, y, m, s, local, shared)
            return (A, B, Cg.sum(0), gl, gsg.sum(0)), chi.sum()

        def body(st: _State) -> _State:
            A, B, C, gl, gs = st.normal
            # a parameter on a bound that the descent (−g) pushes out is held this step
            fl = _free(st.local, gl, lo_l, hi_l)
            fs = _free(st.shared, gs, lo_s, hi_s)
            A = A * fl[:, :, None] * fl[:, None, :] + jax.vmap(jnp.diag)(1 - fl)
            B = B * fl[:, :, None] * fs[None, None, :]
            C = C * fs[:, None] * fs[None, :] + jnp.diag(1 - fs)
            gl, gs = gl * fl, gs * fs
            damp_A = st.lam * jnp.maximum(jnp.diagonal(A, axis1=1, axis2=2), 1e-30) * fl
            damp_C = st.lam * jnp.maximum(jnp.diag(C), 1e-30) * fs
            Ad = A + jax.vmap(jnp.diag)(damp_A)
            E, S, A_inv = _schur(Ad, B, C + jnp.diag(damp_C))
            Ag = jnp.sum(A_inv * gl[:, None, :], axis=2)
            d_s = jnp.linalg.solve(S, -gs + jnp.sum(B * Ag[:, :, None], axis=(0, 1)))
            d_l = -Ag - jnp.sum(E * d_s[None, None, :], axis=2)
            new_l = jnp.clip(st.local + d_l, lo_l, hi_l)
            new_s = jnp.clip(st.shared + d_s, lo_s, hi_s)
            d_l, d_s = new_l - st.local, new_s - st.shared
            normal, chi = linearize(new_l, new_s)  # kept for the next step if accepted
            better = chi < st.chisqr
            small_gain = better & (st.chisqr - chi <= ftol * chi)
            size = jnp.sqrt(jnp.sum(d_l**2) + jnp.sum(d_s**2))
            norm = jnp.sqrt(jnp.sum(st.local**2) + jnp.sum(st.shared**2))
            small_step = size <= xtol * (xtol + norm)
            steps = st.steps + 1
            # damping this large and still no gain: stuck, not a minimum
            status = jnp.where(
                small_gain | small_step,
                Status.CONVERGED,
                jnp.where(
                    st.lam > 1e16,
                    Status.STALLED,
                    jnp.where(steps >= max_steps, Status.MAX_STEPS, Status.RUNNING),
                ),
            )
            return _State(
                jnp.where(better, new_l, st.local),
                jnp.where(better, new_s, st.shared),
                jnp.where(better, chi, st.chisqr),
                jax.tree.map(lambda new, old: jnp.where(better, new, old), normal, st.normal),
                jnp.where(better, jnp.maximum(st.lam * 0.3, 1e-15), st.lam * 4.0),
                steps,
                status.astype(jnp.int32),
            )

        normal, chi0 = linearize(local, shared)
        start = _State(
            local,
            shared,
            chi0,
            normal,
            jnp.asarray(1e-3, local.dtype),
            jnp.asarray(0),
            jnp.asarray(int(Status.RUNNING), jnp.int32),
        )
        st = jax.lax.while_loop(lambda st: st.status == Status.RUNNING, body, start)
        (A, B, Cg, _, _), chi_sets = blocks(x, y, m, s, st.local, st.shared, final=True)
        E, S, A_inv = _schur(A, B, Cg.sum(0))
        return st, E, jnp.linalg.inv(S), A_inv, chi_sets

    return jax.jit(run)


def _bounds(
    bounds: tuple[np.ndarray, np.ndarray] | None,
    groups: int,
    k: int,
    li: tuple[int, ...],
    si: tuple[int, ...],
    shared: tuple[str, ...],
    dtype: np.dtype,
) -> tuple[np.ndarray, ...]:
    """``(lower, upper)`` of the locals ``(G, n_l)`` and of the shared ``(n_s,)``."""
    lower, upper = (np.full((groups, k), -np.inf), np.full((groups, k), np.inf)) if bounds is None else bounds
    for side in (lower, upper):
        differs = [n for n, j in zip(shared, si) if (side[:, j] != side[0, j]).any()]
        if differs:
            raise ValueError(
                f"bounds: a shared parameter has one bound, the same for every data set ({differs[0]})"
            )
    return tuple(
        np.asarray(a, dtype) for a in (lower[:, li], upper[:, li], lower[0, list(si)], upper[0, list(si)])
    )


def _spread(per: tuple[np.ndarray, ...], devices: int | None) -> tuple[Any, ...]:
    """The per-set arrays (sets first, the mask second) over ``devices`` local devices:
    padded with empty sets (mask False) to a multiple of their number, each device
    holding a slice. One device: the arrays as they are."""
    devs = jax.local_devices()[: devices or None]
    G = len(per[0])
    pad = -G % len(devs)
    if pad:
        per = tuple(np.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1), mode="edge") for a in per)
        per[1][G:] = False
    if len(devs) == 1:
        return per
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    sharding = NamedSharding(Mesh(np.array(devs), ("sets",)), PartitionSpec("sets"))
    return tuple(jax.device_put(a, sharding) for a in per)


def global_fit(
    arrays: Any,
    shared: Any,
    absolute_sigma: bool = False,
    max_steps: int = 200,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
    loss: tuple[str, float] = ("ssr", 1.0),
    ftol: float | None = None,
    xtol: float | None = None,
    frozen: dict[str, float] | None = None,
    devices: int | None = None,
) -> GlobalFit:
    """``arrays`` (``curvefit_args.Arrays`` of ``G`` data sets) fitted as one problem
    with the parameters ``shared`` common to all; each data set's start row gives its
    locals, the shared start is the median of its column; ``bounds`` ``(G, k)`` each
    side (a shared parameter's the same in every row); ``loss`` ``(kind, f_scale)``:
    any loss of ``core.losses``; ``frozen``: the model's parameters held at a value
    (not in ``arrays.names``). The data sets are split over ``devices`` local devices
    (default: all; padded with empty sets to a multiple): each device takes its sets'
    blocks, the sums over sets are one reduction across them."""
    names = arrays.names
    shared = tuple(shared)
    unknown = [n for n in shared if n not in names]
    if unknown:
        raise ValueError(
            f"shared: {', '.join(map(repr, unknown))} is not a parameter of the model; expected some of {', '.join(names)}"
        )
    if not shared or len(shared) == len(names):
        raise ValueError("shared: name at least one parameter, and leave at least one local to each data set")
    local_names = tuple(n for n in names if n not in shared)
    li, si = tuple(names.index(n) for n in local_names), tuple(names.index(n) for n in shared)
    dtype = arrays.dtype
    f64 = dtype == np.float64
    ftol = (1e-12 if f64 else 1e-6) if ftol is None else ftol
    xtol = (1e-12 if f64 else 1e-6) if xtol is None else xtol
    G, n = arrays.y.shape
    mask = np.isfinite(arrays.y) if arrays.mask is None else arrays.mask & np.isfinite(arrays.y)
    points = mask.sum(axis=1)
    if (few := np.flatnonzero(points < len(li))).size:
        g = int(few[0])
        raise ValueError(
            f"data set {g} has {int(points[g])} points, fewer than its {len(li)} local parameters: "
            "each data set needs at least as many points as it has locals"
        )
    sigma = np.ones((G, n)) if arrays.sigma is None else np.asarray(arrays.sigma)
    per_set = arrays.x.ndim == (3 if arrays.model.dims else 2)
    frozen_items = tuple(sorted((frozen or {}).items()))
    run = _program(names, arrays.model, li, si, per_set, loss, frozen_items)
    lo_l, hi_l, lo_s, hi_s = _bounds(bounds, G, len(names), li, si, shared, dtype)
    x = np.asarray(arrays.x, dtype)
    per = (
        np.where(mask, arrays.y, 0).astype(dtype),
        mask,
        sigma.astype(dtype),
        np.asarray(arrays.starts[:, li], dtype),
        lo_l,
        hi_l,
        *((x,) if per_set else ()),
    )
    with jax.enable_x64(f64):
        y, m, s, local, lo_l, hi_l, *xs = _spread(per, devices)
        st, E, S_inv, A_inv, chi_sets = run(
            xs[0] if per_set else x,
            y,
            m,
            s,
            local,
            np.median(arrays.starts[:, si], axis=0).astype(dtype),
            (lo_l, hi_l, lo_s, hi_s),
            max_steps,
            ftol,
            xtol,
        )
        st = st._replace(local=st.local[:G])
        E, A_inv, chi_sets = E[:G], A_inv[:G], chi_sets[:G]
    E, S_inv, A_inv = (np.asarray(a, np.float64) for a in (E, S_inv, A_inv))
    chisqr = float(np.asarray(st.chisqr))
    dof = int(points.sum()) - G * len(li) - len(si)
    scale = 1.0 if absolute_sigma or loss[0] == "poisson" else (chisqr / dof if dof > 0 else np.inf)
    ES = np.einsum("gij,jk->gik", E, S_inv)
    cov_local = scale * (A_inv + np.einsum("gik,gjk->gij", ES, E))
    cov_shared = scale * S_inv
    return GlobalFit(
        names=names,
        shared_names=shared,
        local_names=local_names,
        shared=np.asarray(st.shared, np.float64),
        shared_err=np.sqrt(np.diag(cov_shared)),
        local=np.asarray(st.local, np.float64),
        local_err=np.sqrt(np.diagonal(cov_local, axis1=1, axis2=2)),
        cov_shared=cov_shared,
        cov_local=cov_local,
        cov_cross=-scale * ES,
        chisqr=chisqr,
        dof=dof,
        chisqr_per_set=np.asarray(chi_sets, np.float64),
        points_per_set=points,
        status=Status(int(st.status)),
        steps=int(st.steps),
        scale=scale,
        _E=E,
        _S_inv=scale * S_inv,
    )
