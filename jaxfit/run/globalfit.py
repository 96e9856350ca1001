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
    """The normal equations at ``(local, shared)``: ``((A, B, g_l), (C, g_s))``."""
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
    chunks: int = 1
    """Chunks of data sets streamed from host memory at each step (1: all at once)."""
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
        from jaxfit.output.report import num, table

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
    product of two columns by ``jnp.sum`` (under ``vmap``: elementwise work across the
    data sets, then one reduction over the points; ``core.lm.gram``'s chain of adds,
    made for fits on the lanes, runs twice as slow here). A padding set (``real``
    False: no points) gets ``A = I`` (its locals stay put, nothing is shared)."""
    J = [cols[i] for i in li + si]
    k, n_l = len(J), len(li)
    M = [[None] * k for _ in range(k)]
    for i in range(k):
        for j in range(i + 1):
            M[i][j] = M[j][i] = jnp.sum(J[i] * J[j])
    M = jnp.stack([jnp.stack(row) for row in M])
    g = jnp.stack([jnp.sum(c * r) for c in J])
    A = jnp.where(real, M[:n_l, :n_l], jnp.eye(n_l, dtype=r.dtype))
    return A, M[:n_l, n_l:], M[n_l:, n_l:], g[:n_l], g[n_l:]


def _spd_inverse(A: jax.Array) -> jax.Array:
    """The inverses of many small symmetric positive-definite matrices ``(G, n, n)``
    (``core.stats.inverse_spd`` across the sets: its unrolled Cholesky is elementwise
    work over them, where XLA:CPU's batched LU runs matrix by matrix); inf where one is
    singular."""
    from jaxfit.core.stats import inverse_spd

    inv, singular = jax.vmap(inverse_spd)(A)
    return jnp.where(singular[:, None, None], jnp.inf, inv)


def _free(p: jax.Array, g: jax.Array, lower: jax.Array, upper: jax.Array) -> jax.Array:
    """1 where a parameter may move this step, 0 where it sits on a bound the descent
    ``−g`` points past (``g = Jᵀr``, ``r = (y − f)/σ``)."""
    held = ((p <= lower) & (g > 0)) | ((p >= upper) & (g < 0))
    return 1.0 - held.astype(p.dtype)


def _reduce(
    A: jax.Array,
    B: jax.Array,
    gl: jax.Array,
    local: jax.Array,
    lo_l: jax.Array,
    hi_l: jax.Array,
    fs: jax.Array,
    lam: jax.Array,
) -> tuple[jax.Array, ...]:
    """A part's (some data sets') share of a step: with the locals held where a bound
    stops them (``_free``) and damping on the diagonal, ``E_g = A_g⁻¹B_g``,
    ``A_g⁻¹g_g``, and their sums ``Σ B_gᵀE_g`` and ``Σ B_gᵀA_g⁻¹g_g`` over the part."""
    fl = _free(local, gl, lo_l, hi_l)
    A = A * fl[:, :, None] * fl[:, None, :] + jax.vmap(jnp.diag)(1 - fl)
    B = B * fl[:, :, None] * fs[None, None, :]
    damp = lam * jnp.maximum(jnp.diagonal(A, axis1=1, axis2=2), 1e-30) * fl
    A_inv = _spd_inverse(A + jax.vmap(jnp.diag)(damp))
    E = _times(A_inv, B)
    Ag = jnp.sum(A_inv * (gl * fl)[:, None, :], axis=2)
    return (
        E,
        Ag,
        _summed_bt(B, E),
        jnp.sum(B * Ag[:, :, None], axis=(0, 1)),
    )


def _times(A: jax.Array, B: jax.Array) -> jax.Array:
    """``A_g B_g`` for every set (written out elementwise: tiny matrices, many sets)."""
    return jnp.sum(A[:, :, :, None] * B[:, None, :, :], axis=2)


def _summed_bt(B: jax.Array, E: jax.Array) -> jax.Array:
    """``Σ_g B_gᵀ E_g`` (written out elementwise)."""
    return jnp.sum(B[:, :, :, None] * E[:, :, None, :], axis=(0, 1))


def _shared_step(
    C: jax.Array, gs: jax.Array, fs: jax.Array, BE: jax.Array, BAg: jax.Array, lam: jax.Array
) -> jax.Array:
    """``δ_s`` from the Schur complement ``S = C + damping − Σ BᵀE`` (the sums over
    every part), the shared parameters held by a bound fixed."""
    C = C * fs[:, None] * fs[None, :] + jnp.diag(1 - fs)
    S = C + jnp.diag(lam * jnp.maximum(jnp.diag(C), 1e-30) * fs) - BE
    return jnp.linalg.solve(S, -gs * fs + BAg)


def _advance(
    E: jax.Array, Ag: jax.Array, d_s: jax.Array, local: jax.Array, lo_l: jax.Array, hi_l: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A part's trial locals ``local − A⁻¹g − E δ_s`` (clipped into their bounds), and
    the sums of squares of its step and of its locals (for the ``xtol`` rule)."""
    new = jnp.clip(local - Ag - jnp.sum(E * d_s[None, None, :], axis=2), lo_l, hi_l)
    return new, jnp.sum((new - local) ** 2), jnp.sum(local**2)


def _verdict(
    chi: Any, old: Any, step2: Any, norm2: Any, lam: Any, steps: Any, max_steps: Any, ftol: Any, xtol: Any
) -> tuple[Any, Any]:
    """Whether a trial is kept (its loss is lower), and the fit's status after it."""
    better = chi < old
    small_gain = better & (old - chi <= ftol * chi)
    small_step = jnp.sqrt(step2) <= xtol * (xtol + jnp.sqrt(norm2))
    # damping this large and still no gain: stuck, not a minimum
    status = jnp.where(
        small_gain | small_step,
        Status.CONVERGED,
        jnp.where(
            lam > 1e16, Status.STALLED, jnp.where(steps >= max_steps, Status.MAX_STEPS, Status.RUNNING)
        ),
    )
    return better, status.astype(jnp.int32)


def _damping(lam: Any, better: Any) -> Any:
    return jnp.where(better, jnp.maximum(lam * 0.3, 1e-15), lam * 4.0)


def _covariance_part(A: jax.Array, B: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """At the optimum (no damping): a part's ``E_g``, ``A_g⁻¹`` and ``Σ B_gᵀE_g``."""
    A_inv = _spd_inverse(A)
    E = _times(A_inv, B)
    return E, A_inv, _summed_bt(B, E)


class _Pieces(NamedTuple):
    """A global fit's compiled programs: ``run`` the whole fit on the devices; the
    others a part (a chunk of data sets) at a time, for ``_streamed``."""

    run: Any
    linearize: Any
    reduce: Any
    advance: Any
    covariance: Any


@functools.lru_cache(maxsize=16)
def _program(
    names: tuple[str, ...],
    model: Any,
    local_idx: tuple[int, ...],
    shared_idx: tuple[int, ...],
    per_set: bool,
    loss: tuple[str, float],
    frozen: tuple[tuple[str, float], ...] = (),
) -> _Pieces:
    from jaxfit.core import losses
    from jaxfit.core.model import Data

    k = len(names)
    kind, f_scale = loss

    def params_of(local: jax.Array, shared: jax.Array) -> dict[str, jax.Array]:
        p = jnp.zeros(k, local.dtype).at[jnp.array(local_idx, int)].set(local)
        p = p.at[jnp.array(shared_idx, int)].set(shared)
        return {**{n: jnp.asarray(v, local.dtype) for n, v in frozen}, **dict(zip(names, p))}

    def one_set(x, y, m, s, local, shared, final):
        """One data set's blocks and its loss (least squares: ``Σ r²`` of the same ``r``)."""
        data, params = Data(x, y, m, s), params_of(local, shared)
        r, cols = losses.linearized(kind, model, names, params, {}, data, f_scale, majorize=not final)
        loss = jnp.sum(r * r) if kind == "ssr" else losses.value(kind, params, data, model, f_scale)
        return _blocks(r, cols, local_idx, shared_idx, m.any()), loss

    def linearize(x, y, m, s, local, shared, final=False):
        """The normal equations of some data sets at a point — each set's ``(A, B,
        g_l)``, their sums ``(C, g_s)`` — and each set's loss, in one pass."""
        axes = (0 if per_set else None, 0, 0, 0, 0, None)
        one = functools.partial(one_set, final=final)
        (A, B, C, gl, gs), chi = jax.vmap(one, in_axes=axes)(x, y, m, s, local, shared)
        return ((A, B, gl), (C.sum(0), gs.sum(0))), chi

    def run(x, y, m, s, local, shared, bounds, max_steps, ftol, xtol):
        lo_l, hi_l, lo_s, hi_s = bounds

        def body(st: _State) -> _State:
            (A, B, gl), (C, gs) = st.normal
            fs = _free(st.shared, gs, lo_s, hi_s)
            E, Ag, BE, BAg = _reduce(A, B, gl, st.local, lo_l, hi_l, fs, st.lam)
            d_s = _shared_step(C, gs, fs, BE, BAg, st.lam)
            new_s = jnp.clip(st.shared + d_s, lo_s, hi_s)
            new_l, step2, norm2 = _advance(E, Ag, d_s, st.local, lo_l, hi_l)
            normal, chi = linearize(x, y, m, s, new_l, new_s)  # kept for the next step if accepted
            chi = chi.sum()
            better, status = _verdict(
                chi,
                st.chisqr,
                step2 + jnp.sum((new_s - st.shared) ** 2),
                norm2 + jnp.sum(st.shared**2),
                st.lam,
                st.steps + 1,
                max_steps,
                ftol,
                xtol,
            )
            keep = functools.partial(jnp.where, better)
            return _State(
                keep(new_l, st.local),
                keep(new_s, st.shared),
                keep(chi, st.chisqr),
                jax.tree.map(keep, normal, st.normal),
                _damping(st.lam, better),
                st.steps + 1,
                status,
            )

        normal, chi0 = linearize(x, y, m, s, local, shared)
        start = _State(
            local,
            shared,
            chi0.sum(),
            normal,
            jnp.asarray(1e-3, local.dtype),
            jnp.asarray(0),
            jnp.asarray(int(Status.RUNNING), jnp.int32),
        )
        st = jax.lax.while_loop(lambda st: st.status == Status.RUNNING, body, start)
        ((A, B, _), (C, _)), chi_sets = linearize(x, y, m, s, st.local, st.shared, final=True)
        E, A_inv, BE = _covariance_part(A, B)
        return st, E, jnp.linalg.inv(C - BE), A_inv, chi_sets

    return _Pieces(
        jax.jit(run),
        jax.jit(linearize, static_argnames="final"),
        jax.jit(_reduce),
        jax.jit(_advance),
        jax.jit(_covariance_part),
    )


def _streamed(
    pieces: _Pieces,
    chunks: list[tuple[Any, ...]],
    local: list[Any],
    shared: Any,
    bounds: tuple[list[Any], list[Any], Any, Any],
    max_steps: int,
    ftol: float,
    xtol: float,
) -> tuple[_State, Any, Any, Any, Any]:
    """``_Pieces.run``'s fit with the data sets in chunks (each chunk's ``(x, y, m,
    s)``, moved to the devices in turn): every step is one pass over the chunks (their
    trial normal equations and losses), its sums over sets summed across chunks; each
    chunk's blocks, locals and ``E`` stay on the devices between passes (a few numbers
    per set). The same arithmetic as ``run``, the sums grouped by chunk."""
    lo_l, hi_l, lo_s, hi_s = bounds
    # one program at a time: on XLA:CPU, two programs in flight whose collectives (the
    # sums across devices) interleave wait for each other for ever
    synced = jax.block_until_ready

    def linearized(locals_: list[Any], shared_: Any, final: bool = False) -> tuple[list, Any, list]:
        out = [synced(pieces.linearize(*c, loc, shared_, final=final)) for c, loc in zip(chunks, locals_)]
        normals, chis = [o[0] for o in out], [np.asarray(o[1]) for o in out]
        return normals, sum(ch.sum(dtype=ch.dtype) for ch in chis), chis

    normals, chi, _ = linearized(local, shared)
    lam, steps, status = jnp.asarray(1e-3, shared.dtype), 0, int(Status.RUNNING)
    while status == Status.RUNNING:
        C, gs = (sum(nm[1][i] for nm in normals) for i in (0, 1))
        fs = _free(shared, gs, lo_s, hi_s)
        parts = [
            synced(pieces.reduce(*nm[0], loc, lo, hi, fs, lam))
            for nm, loc, lo, hi in zip(normals, local, lo_l, hi_l)
        ]
        d_s = _shared_step(C, gs, fs, sum(p[2] for p in parts), sum(p[3] for p in parts), lam)
        new_s = jnp.clip(shared + d_s, lo_s, hi_s)
        moved = [
            synced(pieces.advance(p[0], p[1], d_s, loc, lo, hi))
            for p, loc, lo, hi in zip(parts, local, lo_l, hi_l)
        ]
        new_l = [m[0] for m in moved]
        new_normals, new_chi, _ = linearized(new_l, new_s)
        steps += 1
        better, status = _verdict(
            new_chi,
            chi,
            sum(m[1] for m in moved) + jnp.sum((new_s - shared) ** 2),
            sum(m[2] for m in moved) + jnp.sum(shared**2),
            lam,
            steps,
            max_steps,
            ftol,
            xtol,
        )
        status = int(status)
        if better:
            local, shared, chi, normals = new_l, new_s, new_chi, new_normals
        lam = _damping(lam, better)
    normals, _, chis = linearized(local, shared, final=True)
    parts = [synced(pieces.covariance(nm[0][0], nm[0][1])) for nm in normals]
    S = sum(nm[1][0] for nm in normals) - sum(p[2] for p in parts)

    def cat(arrays: list[Any]) -> np.ndarray:  # on the host: no program across devices
        return np.concatenate([np.asarray(a) for a in arrays])

    st = _State(cat(local), shared, chi, (), lam, steps, status)
    return st, cat([p[0] for p in parts]), np.linalg.inv(np.asarray(S)), cat([p[1] for p in parts]), cat(chis)


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
    chunk: int | None = None,
) -> GlobalFit:
    """``arrays`` (``curvefit_args.Arrays`` of ``G`` data sets) fitted as one problem
    with the parameters ``shared`` common to all; each data set's start row gives its
    locals, the shared start is the median of its column; ``bounds`` ``(G, k)`` each
    side (a shared parameter's the same in every row); ``loss`` ``(kind, f_scale)``:
    any loss of ``core.losses``; ``frozen``: the model's parameters held at a value
    (not in ``arrays.names``). The data sets are split over ``devices`` local devices
    (default: all; padded with empty sets to a multiple): each device takes its sets'
    blocks, the sums over sets are one reduction across them. ``chunk``: more data
    sets than this are kept in host memory and streamed to the devices in chunks of
    this many at every step (one compiled program for any number of sets)."""
    names, shared = arrays.names, tuple(shared)
    local_names = _checked_names(names, shared)
    li, si = tuple(names.index(n) for n in local_names), tuple(names.index(n) for n in shared)
    dtype = arrays.dtype
    f64 = dtype == np.float64
    ftol = (1e-12 if f64 else 1e-6) if ftol is None else ftol
    xtol = (1e-12 if f64 else 1e-6) if xtol is None else xtol
    G, n = arrays.y.shape
    mask = np.isfinite(arrays.y) if arrays.mask is None else arrays.mask & np.isfinite(arrays.y)
    points = mask.sum(axis=1)
    _check_points(points, len(li))
    sigma = np.ones((G, n)) if arrays.sigma is None else np.asarray(arrays.sigma)
    per_set = arrays.x.ndim == (3 if arrays.model.dims else 2)
    frozen_items = tuple(sorted((frozen or {}).items()))
    pieces = _program(names, arrays.model, li, si, per_set, loss, frozen_items)
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
    streamed = chunk is not None and chunk < G
    with jax.enable_x64(f64):
        shared_start = np.median(arrays.starts[:, si], axis=0).astype(dtype)
        if not streamed:
            y, m, s, local, lo_l, hi_l, *xs = _spread(per, devices)
            st, E, S_inv, A_inv, chi_sets = _on_host(
                pieces.run(
                    xs[0] if per_set else x,
                    y,
                    m,
                    s,
                    local,
                    shared_start,
                    (lo_l, hi_l, lo_s, hi_s),
                    max_steps,
                    ftol,
                    xtol,
                )
            )
        else:
            st, E, S_inv, A_inv, chi_sets = _in_chunks(
                pieces, per, x, per_set, shared_start, (lo_s, hi_s), chunk, devices, (max_steps, ftol, xtol)
            )
        st = st._replace(local=st.local[:G])
        E, A_inv, chi_sets = E[:G], A_inv[:G], chi_sets[:G]
    scale_one = absolute_sigma or loss[0] == "poisson"
    fit = _result(st, E, S_inv, A_inv, chi_sets, points, (names, shared, local_names), scale_one)
    return dataclasses.replace(fit, chunks=-(-G // _chunk_rows(chunk, devices)) if streamed else 1)


def _on_host(out: Any) -> Any:
    """A finished program's outputs as host arrays (waiting for it first: slicing them
    on the devices would start programs across devices while it may still run)."""
    return jax.tree.map(np.asarray, jax.block_until_ready(out))


def _chunk_rows(chunk: int, devices: int | None) -> int:
    """Data sets per streamed chunk: ``chunk`` rounded up to a multiple of the devices."""
    count = len(jax.local_devices()[: devices or None])
    return -(-chunk // count) * count


def _checked_names(names: tuple[str, ...], shared: tuple[str, ...]) -> tuple[str, ...]:
    """The local parameters' names; a ``ValueError`` line for a bad ``shared``."""
    unknown = [n for n in shared if n not in names]
    if unknown:
        raise ValueError(
            f"shared: {', '.join(map(repr, unknown))} is not a parameter of the model; expected some of {', '.join(names)}"
        )
    if not shared or len(shared) == len(names):
        raise ValueError("shared: name at least one parameter, and leave at least one local to each data set")
    return tuple(n for n in names if n not in shared)


def _check_points(points: np.ndarray, locals_: int) -> None:
    """Every data set needs at least as many real points as it has locals."""
    if (few := np.flatnonzero(points < locals_)).size:
        g = int(few[0])
        raise ValueError(
            f"data set {g} has {int(points[g])} points, fewer than its {locals_} local parameters: "
            "each data set needs at least as many points as it has locals"
        )


def _result(
    st: _State,
    E: Any,
    S_inv: Any,
    A_inv: Any,
    chi_sets: Any,
    points: np.ndarray,
    names: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]],
    scale_one: bool,
) -> GlobalFit:
    """The ``GlobalFit`` of a finished fit: its joint covariance from the factors
    (times χ²/dof unless ``scale_one``)."""
    E, S_inv, A_inv = (np.asarray(a, np.float64) for a in (E, S_inv, A_inv))
    G, n_l = E.shape[:2]
    chisqr = float(np.asarray(st.chisqr))
    dof = int(points.sum()) - G * n_l - len(names[1])
    scale = 1.0 if scale_one else (chisqr / dof if dof > 0 else np.inf)
    ES = np.einsum("gij,jk->gik", E, S_inv)
    cov_local = scale * (A_inv + np.einsum("gik,gjk->gij", ES, E))
    cov_shared = scale * S_inv
    return GlobalFit(
        names=names[0],
        shared_names=names[1],
        local_names=names[2],
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


def _in_chunks(
    pieces: _Pieces,
    per: tuple[np.ndarray, ...],
    x: np.ndarray,
    per_set: bool,
    shared: np.ndarray,
    shared_bounds: tuple[np.ndarray, np.ndarray],
    chunk: int,
    devices: int | None,
    rules: tuple[int, float, float],
) -> tuple[_State, Any, Any, Any, Any]:
    """``per`` (the per-set arrays of ``global_fit``) in chunks of ``chunk`` data sets
    (a multiple of the devices; the last padded with empty sets), streamed from host
    memory at every step (``_streamed``): one compiled program for any number of sets."""
    chunk = _chunk_rows(chunk, devices)
    G = len(per[0])
    pad = -G % chunk
    if pad:
        per = tuple(np.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1), mode="edge") for a in per)
        per[1][G:] = False
    rows = [slice(i, i + chunk) for i in range(0, G + pad, chunk)]
    held = [_spread(tuple(a[r] for a in per[3:6]), devices) for r in rows]  # locals, bounds: stay
    chunks = [_Data(per, r, x, per_set, devices) for r in rows]
    bounds = ([h[1] for h in held], [h[2] for h in held], *shared_bounds)
    return _streamed(pieces, chunks, [h[0] for h in held], shared, bounds, *rules)


class _Data:
    """One chunk's ``(x, y, m, s)`` in host memory, sent to the devices each time it is
    iterated (``pieces.linearize(*chunk, …)``)."""

    def __init__(
        self, per: tuple[np.ndarray, ...], rows: slice, x: np.ndarray, per_set: bool, devices: int | None
    ):
        self.arrays = tuple(a[rows] for a in per[:3]) + ((per[6][rows],) if per_set else ())
        self.x, self.per_set, self.devices = x, per_set, devices

    def __iter__(self) -> Any:
        y, m, s, *xs = _spread(self.arrays, self.devices)
        return iter((xs[0] if self.per_set else self.x, y, m, s))
