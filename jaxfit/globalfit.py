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

from jaxfit.core.losses import rho
from jaxfit.core.status import Status


class _State(NamedTuple):
    local: jax.Array
    shared: jax.Array
    chisqr: jax.Array
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

    def report(self) -> str:
        """The shared parameters, each data set's locals (± joint standard errors) and
        the fit's statistics, as text."""
        from jaxfit.report import num, table

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
                        str(g),
                        *(f"{num(v)} ± {num(e, 3)}" for v, e in zip(self.local[g], self.local_err[g])),
                        num(c),
                    ]
                    for g, c in enumerate(self.chisqr_per_set)
                ],
                [True, *([True] * len(self.local_names)), True],
            ),
        ]
        return "\n".join(lines)


def _blocks(resid: Any, local: jax.Array, shared: jax.Array, loss: tuple[str, float], final: bool) -> tuple:
    """One data set's ``A``, ``B``, ``C`` blocks and gradients of its loss's
    least-squares form (``core.losses``: a robust loss steps by its reweighted form,
    and its covariance takes scipy's rescaled one, ``final``)."""
    r = resid(local, shared)
    Jl, Js = jax.jacfwd(resid, argnums=(0, 1))(local, shared)
    kind, f_scale = loss
    if kind != "ssr":
        c2 = f_scale * f_scale
        _, rho1, rho2 = rho(kind, r * r / c2)
        if final:
            w = jnp.sqrt(jnp.maximum(rho1 + 2 * (rho2 / c2) * r * r, jnp.finfo(r.dtype).eps))
            r = r * rho1 / w
        else:
            w = jnp.sqrt(rho1)
            r = r * w
        Jl, Js = Jl * w[:, None], Js * w[:, None]
    return Jl.T @ Jl, Jl.T @ Js, Js.T @ Js, Jl.T @ r, Js.T @ r


def _schur(A: jax.Array, B: jax.Array, C: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``E_g = A_g⁻¹ B_g``, ``S = C − Σ B_gᵀ E_g`` and ``A_g⁻¹``."""
    A_inv = jnp.linalg.inv(A)
    E = A_inv @ B
    S = C - jnp.einsum("gij,gik->jk", B, E)
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
) -> Any:
    from jaxfit.core.model import Data, residuals

    k = len(names)

    def full(local: jax.Array, shared: jax.Array) -> jax.Array:
        p = jnp.zeros(k, local.dtype).at[jnp.array(local_idx, int)].set(local)
        return p.at[jnp.array(shared_idx, int)].set(shared)

    def resid_of(x: Any, y: Any, m: Any, s: Any) -> Any:
        data = Data(x, y, m, s)
        return lambda local, shared: residuals(dict(zip(names, full(local, shared))), data, model)

    axes = (0 if per_set else None, 0, 0, 0, 0, None)

    def blocks(x, y, m, s, local, shared, final=False):  # all data sets at once
        return jax.vmap(lambda *a: _blocks(resid_of(*a[:4]), a[4], a[5], loss, final), in_axes=axes)(
            x, y, m, s, local, shared
        )

    def chi_per_set(x, y, m, s, local, shared):
        """Each data set's loss (χ² for least squares)."""
        r = jax.vmap(lambda *a: resid_of(*a[:4])(a[4], a[5]), in_axes=axes)(x, y, m, s, local, shared)
        if loss[0] == "ssr":
            return jnp.sum(r * r, axis=1)
        c2 = loss[1] * loss[1]
        return jnp.sum(c2 * rho(loss[0], r * r / c2)[0], axis=1)

    def run(x, y, m, s, local, shared, bounds, max_steps, ftol, xtol):
        lo_l, hi_l, lo_s, hi_s = bounds

        def body(st: _State) -> _State:
            A, B, Cg, gl, gsg = blocks(x, y, m, s, st.local, st.shared)
            C, gs = Cg.sum(0), gsg.sum(0)
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
            Ag = jnp.einsum("gij,gj->gi", A_inv, gl)
            d_s = jnp.linalg.solve(S, -gs + jnp.einsum("gij,gi->j", B, Ag))
            d_l = -Ag - jnp.einsum("gij,j->gi", E, d_s)
            new_l = jnp.clip(st.local + d_l, lo_l, hi_l)
            new_s = jnp.clip(st.shared + d_s, lo_s, hi_s)
            d_l, d_s = new_l - st.local, new_s - st.shared
            chi = chi_per_set(x, y, m, s, new_l, new_s).sum()
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
                jnp.where(better, jnp.maximum(st.lam * 0.3, 1e-15), st.lam * 4.0),
                steps,
                status.astype(jnp.int32),
            )

        chi0 = chi_per_set(x, y, m, s, local, shared).sum()
        start = _State(
            local,
            shared,
            chi0,
            jnp.asarray(1e-3, local.dtype),
            jnp.asarray(0),
            jnp.asarray(int(Status.RUNNING), jnp.int32),
        )
        st = jax.lax.while_loop(lambda st: st.status == Status.RUNNING, body, start)
        A, B, Cg, _, _ = blocks(x, y, m, s, st.local, st.shared, final=True)
        E, S, A_inv = _schur(A, B, Cg.sum(0))
        return st, E, jnp.linalg.inv(S), A_inv, chi_per_set(x, y, m, s, st.local, st.shared)

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


def global_fit(
    arrays: Any,
    shared: Any,
    absolute_sigma: bool = False,
    max_steps: int = 200,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
    loss: tuple[str, float] = ("ssr", 1.0),
    ftol: float | None = None,
    xtol: float | None = None,
) -> GlobalFit:
    """``arrays`` (``curvefit_args.Arrays`` of ``G`` data sets) fitted as one problem
    with the parameters ``shared`` common to all; each data set's start row gives its
    locals, the shared start is the median of its column; ``bounds`` ``(G, k)`` each
    side (a shared parameter's the same in every row); ``loss`` ``(kind, f_scale)``:
    least squares or a robust loss of ``core.losses``."""
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
    sigma = np.ones((G, n)) if arrays.sigma is None else np.asarray(arrays.sigma)
    per_set = arrays.x.ndim == (3 if arrays.model.dims else 2)
    run = _program(names, arrays.model, li, si, per_set, loss)
    with jax.enable_x64(f64):
        st, E, S_inv, A_inv, chi_sets = run(
            np.asarray(arrays.x, dtype),
            np.where(mask, arrays.y, 0).astype(dtype),
            mask,
            sigma.astype(dtype),
            np.asarray(arrays.starts[:, li], dtype),
            np.median(arrays.starts[:, si], axis=0).astype(dtype),
            _bounds(bounds, G, len(names), li, si, shared, dtype),
            max_steps,
            ftol,
            xtol,
        )
    E, S_inv, A_inv = (np.asarray(a, np.float64) for a in (E, S_inv, A_inv))
    points = mask.sum(axis=1)
    chisqr = float(np.asarray(st.chisqr))
    dof = int(points.sum()) - G * len(li) - len(si)
    scale = 1.0 if absolute_sigma else (chisqr / dof if dof > 0 else np.inf)
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
