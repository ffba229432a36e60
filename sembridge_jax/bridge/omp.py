"""Orthogonal matching pursuit (Pati, Rezaiifar & Krishnaprasad 1993), batched, blocked, device-split (JAX).

For each target vector t, k greedy steps over a dictionary of atoms (unit rows) s_1..s_N:
  pick the unselected atom with the largest |<residual, s_i>|; refit t by least squares on every
  selected atom; residual = t - sum_j c_j s_j.
The coefficients c may be negative and need not sum to 1 (a reconstruction, not a convex weighting).

A block of target rows runs all k steps in one jitted loop: one [B, D] x [D, N] matmul per step (the
cost: n k N D multiply-adds in all), the normal equations of the selected atoms grown by one row and
column per step and solved by Cholesky in `solve_dtype` (float64 on CPU, float32 on GPU/TPU, as the
entmax solve). Blocks are split over the local devices (`entmax.RowSplit`); the atoms are replicated.
A target whose residual falls below `tol` |t| stops early: its later slots stay empty (an exact
reconstruction needs no more atoms, and refitting with duplicate atoms would be singular).
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from tqdm.auto import tqdm

from sembridge_jax.bridge.entmax import RowSplit


@functools.partial(jax.jit, static_argnames=("k", "solve_dtype"))
def _omp_block(t, atoms32, atoms, k, tol, solve_dtype):
    """t [B, D] float32, atoms32 / atoms [N, D] (float32 / solve_dtype) -> (sel [B, k], active [B, k], coef [B, k])."""
    b, _ = t.shape
    n = atoms32.shape[0]
    rows = jnp.arange(b)[:, None]
    ts = t.astype(solve_dtype)
    stop = tol * jnp.linalg.norm(ts, axis=1)
    eye = jnp.eye(k, dtype=solve_dtype)
    jitter = 1e-6 if solve_dtype == jnp.float32 else 1e-12

    def step(j, state):
        sel, active, gram, rhs, _, res = state
        corr = jnp.abs(jnp.matmul(res.astype(jnp.float32), atoms32.T, precision=lax.Precision.HIGHEST))
        corr = corr.at[rows, jnp.where(active, sel, n)].set(-1.0, mode="drop")  # selected atoms are out
        go = jnp.linalg.norm(res, axis=1) > stop
        pick = jnp.where(go, jnp.argmax(corr, axis=1), 0).astype(jnp.int32)
        sel, active = sel.at[:, j].set(pick), active.at[:, j].set(go)
        chosen = atoms[sel] * active[..., None].astype(solve_dtype)  # [B, k, D], empty slots zero
        g = jnp.einsum("bkd,bd->bk", chosen, chosen[:, j], precision=lax.Precision.HIGHEST)
        g = g.at[:, j].set(jnp.where(go, g[:, j], 1.0))  # an empty slot keeps a 1 on the diagonal
        gram = gram.at[:, j, :].set(g).at[:, :, j].set(g)
        rhs = rhs.at[:, j].set(jnp.einsum("bd,bd->b", chosen[:, j], ts, precision=lax.Precision.HIGHEST))
        chol = jnp.linalg.cholesky(gram + jitter * eye)
        coef = jax.scipy.linalg.cho_solve((chol, True), rhs[..., None])[..., 0]
        res = ts - jnp.einsum("bk,bkd->bd", coef, chosen, precision=lax.Precision.HIGHEST)
        return sel, active, gram, rhs, coef, res

    init = (jnp.zeros((b, k), jnp.int32), jnp.zeros((b, k), bool), jnp.broadcast_to(eye, (b, k, k)),
            jnp.zeros((b, k), solve_dtype), jnp.zeros((b, k), solve_dtype), ts)
    sel, active, _, _, coef, res = lax.fori_loop(0, k, step, init)
    return sel, active, coef, jnp.linalg.norm(res, axis=1) / jnp.maximum(jnp.linalg.norm(ts, axis=1), 1e-30)


def omp(targets: np.ndarray, atoms: np.ndarray, k: int, *, block_rows: int = 256, solve_dtype: str = "float64",
        tol: float = 1e-4, progress: bool = True, devices: Sequence[jax.Device] | None = None
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """k-sparse OMP codes of targets [n, D] over atoms [N, D] (unit rows expected).

    Returns COO (rows: target index, cols: atom index, coefs float32; rows ascending, atoms in selection
    order within a row) and stats (median relative residual |t - sum c s| / |t|)."""
    if k < 1:
        raise ValueError(f"omp: k must be >= 1, got {k}")
    targets = np.asarray(targets, np.float32)
    atoms = np.asarray(atoms, np.float32)
    if targets.ndim != 2 or atoms.ndim != 2 or targets.shape[1] != atoms.shape[1]:
        raise ValueError(f"omp: targets {targets.shape} and atoms {atoms.shape} must be [n, D], [N, D]")
    k = min(k, len(atoms))
    # identical target rows (strings the bridge reads the same way) are coded once
    targets, inverse = np.unique(targets, axis=0, return_inverse=True)
    inverse, n_unique = inverse.reshape(-1), len(targets)
    split = RowSplit(devices)
    step = block_rows * split.n
    sels, actives, coefs, resid = [], [], [], []
    with jax.enable_x64(solve_dtype == "float64"):
        sdt = jnp.dtype(solve_dtype)
        atoms32, atoms_s = split.replicate((atoms, atoms.astype(sdt)))
        for s in tqdm(range(0, len(targets), step), desc=f"omp k={k}", disable=not progress, unit="block"):
            part = targets[s:s + step]
            out = jax.device_get(_omp_block(split.block(part, block_rows), atoms32, atoms_s, k, tol, sdt))
            for acc, x in zip((sels, actives, coefs, resid), out, strict=True):
                acc.append(np.asarray(x)[:len(part)])
    if not sels:
        return np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32), {"omp_k": k}
    sel, active, coef, res = (np.concatenate(x)[inverse] for x in (sels, actives, coefs, resid))
    r, j = np.nonzero(active)
    stats = {"omp_k": k, "unique_rows": n_unique,
             "omp_residual_median": float(np.median(res)),
             "omp_atoms_median": float(np.median(active.sum(1)))}
    return r.astype(np.int32), sel[r, j].astype(np.int32), coef[r, j].astype(np.float32), stats
