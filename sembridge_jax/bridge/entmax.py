"""alpha-entmax over bridge similarities, exact and blocked (pure JAX; docs/methods.md, "The paper's algorithm", step 4).

    entmax_alpha(z)_i = [(alpha - 1) z_i - tau]_+ ^ (1 / (alpha - 1)),  tau such that sum_i = 1.

alpha = 1 is softmax, alpha = 2 sparsemax. For every target row we need the weights over ALL source
tokens. Doing that row by row over 30k sources (the released code) is slow, so:

1. similarities of a block of target rows against all source rows (one float32 matmul);
2. exact `lax.top_k` of k+1 candidates per row; their scores recomputed exactly (solve_dtype);
3. the exact threshold of entmax restricted to the candidates (closed form for alpha = 2,
   bisection to machine precision for other alpha);
4. proof of exactness: entmax over the full row has the same threshold if every non-candidate
   scores at or below tau; non-candidates score at most the (k+1)-th float32 score plus the
   float32 matmul error bound, so that is checked. Then every excluded weight is 0 and the
   equation for tau is unchanged. Rows that fail the check are redone with a larger k, and
   finally over the full row. Identical query rows are solved once.

Precision: alpha > 2 is ill-conditioned at the support boundary (d w / d tau ~ x^(1/(alpha-1) - 1)),
so the threshold is solved in `solve_dtype`: float64 (under `jax.enable_x64`) on CPU, float32 on
GPU/TPU (TPUs have no float64; `resolve_solve_dtype`, config `init.solve_dtype`), with weights within
FLOAT32_WEIGHT_ERROR of the float64 ones. The similarities themselves stay float32. The proof of step 4
holds in both: in float32 its margin also covers the rounding of the recomputed candidate scores.

Devices: every block of target rows is split over the local devices and the source side is
replicated, so each device scores its own rows against all source tokens with no communication;
a device holds block_rows x N similarities (a 250k x 250k matrix is never built anywhere).
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

SOLVE_DTYPES = ("auto", "float64", "float32")
# Worst-case |weight - float64 weight| of a float32 solve, alpha in [1.5, 4] (tests/test_bridge_solve_dtype.py).
FLOAT32_WEIGHT_ERROR = 1e-4


def resolve_solve_dtype(solve_dtype: str, platform: str | None = None) -> str:
    """The dtype of the entmax solve on `platform` (default: JAX's default backend): "auto" is float64
    on CPU and float32 on GPU/TPU; float64 on a TPU is refused (it has none)."""
    platform = platform or jax.default_backend()
    if solve_dtype not in SOLVE_DTYPES:
        raise ValueError(f"init.solve_dtype must be one of {SOLVE_DTYPES}, got {solve_dtype!r}")
    if solve_dtype == "auto":
        return "float64" if platform == "cpu" else "float32"
    if solve_dtype == "float64" and platform == "tpu":
        raise ValueError("init.solve_dtype='float64': TPUs have no float64; use 'auto' or 'float32'")
    return solve_dtype


def _check_alpha(alpha: float) -> None:
    if not alpha >= 1.0:
        raise ValueError(f"entmax alpha must be >= 1 (1 = softmax, 2 = sparsemax), got {alpha}")


def entmax_threshold(c: jax.Array, alpha: float, n_iter: int = 64) -> jax.Array:
    """tau [B] with sum_i relu(c_i - tau)^(1/(alpha-1)) = 1 for rows c [B, n] whose max is 0
    (c = (alpha - 1) * (z - max z)). Bisection on the `entmax` package's bracket
    [-1, -(1/n)^(alpha-1)], run to machine precision; returns the lower end (sum >= 1)."""
    p = 1.0 / (alpha - 1.0)
    n = c.shape[-1]
    lo = jnp.full(c.shape[:-1], -1.0, c.dtype)
    hi = jnp.full(c.shape[:-1], -((1.0 / n) ** (alpha - 1.0)), c.dtype)

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        f = jnp.sum(jnp.maximum(c - mid[..., None], 0.0) ** p, axis=-1) - 1.0
        above = f >= 0
        return jnp.where(above, mid, lo), jnp.where(above, hi, mid)

    lo, _ = lax.fori_loop(0, n_iter, body, (lo, hi))
    return lo


def sparsemax_threshold_sorted(c: jax.Array) -> jax.Array:
    """Closed-form sparsemax threshold for rows c [B, k] sorted in descending order."""
    ks = jnp.arange(1, c.shape[-1] + 1, dtype=c.dtype)
    cs = jnp.cumsum(c, axis=-1)
    support = jnp.sum((1.0 + ks * c > cs).astype(jnp.int32), axis=-1)
    cs_s = jnp.take_along_axis(cs, (support - 1)[..., None], axis=-1)[..., 0]
    return (cs_s - 1.0) / support.astype(c.dtype)


def entmax_from_scores(z: jax.Array, alpha: float, *, solve_dtype=jnp.float64, sorted_desc: bool = False,
                       n_iter: int = 64) -> tuple[jax.Array, jax.Array]:
    """Exact alpha-entmax of rows z [B, n] (alpha > 1). Returns (weights [B, n] in solve_dtype,
    tau [B] on the (alpha - 1) * (z - max) scale). Weights are renormalised to sum to one, as
    `entmax.entmax_bisect` does."""
    z = z.astype(solve_dtype)
    zmax = z[..., :1] if sorted_desc else jnp.max(z, axis=-1, keepdims=True)
    c = (alpha - 1.0) * (z - zmax)
    if alpha == 2.0 and sorted_desc:
        tau = sparsemax_threshold_sorted(c)
    else:
        tau = entmax_threshold(c, alpha, n_iter)
    w = jnp.maximum(c - tau[..., None], 0.0) ** (1.0 / (alpha - 1.0))
    return w / jnp.sum(w, axis=-1, keepdims=True), tau


def entmax_rows(z: jax.Array, alpha: float, *, solve_dtype=jnp.float64) -> jax.Array:
    """alpha-entmax of full rows z [B, n]; alpha = 1 is softmax."""
    _check_alpha(alpha)
    if alpha == 1.0:
        return jax.nn.softmax(z.astype(solve_dtype), axis=-1)
    return entmax_from_scores(z, alpha, solve_dtype=solve_dtype)[0]


def entmax_on_candidates(cand: jax.Array, outside_max: jax.Array, alpha: float, *, solve_dtype=jnp.float64
                         ) -> tuple[jax.Array, jax.Array]:
    """Entmax of rows restricted to candidate scores cand [B, m] (any order), with its proof.

    Returns (weights [B, m] aligned with cand, exact [B] bool). `exact` proves that the full-row
    entmax equals these weights (zeros elsewhere): every non-candidate scores at most
    outside_max [B], and that bound lies at or below the threshold, so non-candidates get weight 0
    and do not change the equation for tau."""
    order = jnp.argsort(-cand, axis=-1)
    srt = jnp.take_along_axis(cand.astype(solve_dtype), order, axis=-1)
    w_srt, tau = entmax_from_scores(srt, alpha, solve_dtype=solve_dtype, sorted_desc=True)
    w = jnp.zeros_like(w_srt).at[jnp.arange(cand.shape[0])[:, None], order].set(w_srt)
    bound = (alpha - 1.0) * (outside_max.astype(solve_dtype) - srt[:, 0])
    return w, bound <= tau


def entmax_topk(z: jax.Array, alpha: float, k: int, *, solve_dtype=jnp.float64
                ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Entmax of rows z [B, n] (alpha > 1, k < n) solved on their top k values.
    Returns (indices [B, k], weights [B, k], exact [B] bool); see `entmax_on_candidates`."""
    vals, idx = lax.top_k(z, k + 1)
    w, exact = entmax_on_candidates(vals[:, :k], vals[:, k], alpha, solve_dtype=solve_dtype)
    return idx[:, :k], w, exact


def matmul_error_bound(queries: np.ndarray, keys: np.ndarray) -> float:
    """Bound on |fl32(q . k) - q . k| for every pair: d * 2^-24 * max|q| * max|k| (Higham's gamma_d)."""
    d = queries.shape[1]
    qn = float(np.linalg.norm(queries, axis=1).max(initial=0.0))
    kn = float(np.linalg.norm(keys, axis=1).max(initial=0.0))
    return 1.01 * d * 2.0 ** -24 * qn * kn


@functools.partial(jax.jit, static_argnames=("k",))
def _block_candidates(q, keys32, k):
    return lax.top_k(jnp.matmul(q, keys32.T, precision=lax.Precision.HIGHEST), k + 1)


@functools.partial(jax.jit, static_argnames=("alpha", "solve_dtype"))
def _block_solve(q, keys_exact, vals, idx, margin, alpha, solve_dtype):
    cand = jnp.einsum("bd,bkd->bk", q.astype(solve_dtype), keys_exact[idx], precision=lax.Precision.HIGHEST)
    return entmax_on_candidates(cand, vals[:, -1] + margin, alpha, solve_dtype=solve_dtype)


def _block_topk(q, keys32, keys_exact, margin, alpha, k, solve_dtype):
    # candidates from the float32 similarities; their scores recomputed exactly (solve_dtype); the
    # proof bounds every non-candidate's exact score by the (k+1)-th float32 score + the matmul error.
    # Two jits on purpose: fused into one, XLA:CPU runs this ~40x slower.
    vals, idx = _block_candidates(q, keys32, k)
    w, exact = _block_solve(q, keys_exact, vals, idx, margin, alpha, solve_dtype)
    return idx, w, exact


@functools.partial(jax.jit, static_argnames=("alpha", "solve_dtype"))
def _block_full(q, keys_exact, alpha, solve_dtype):
    z = jnp.matmul(q.astype(solve_dtype), keys_exact.T, precision=lax.Precision.HIGHEST)
    return entmax_rows(z, alpha, solve_dtype=solve_dtype)


def _pad_rows(x: np.ndarray, n: int) -> np.ndarray:
    return x if x.shape[0] == n else np.concatenate([x, np.zeros((n - x.shape[0], x.shape[1]), x.dtype)])


class RowSplit:
    """Blocks of target rows split over ``devices`` (default: every local device), the other
    operands replicated. The jitted block functions follow their inputs' shardings, so row-local
    work (matmul against replicated keys, top-k, solve) stays on each device, with no communication."""

    def __init__(self, devices: Sequence[jax.Device] | None = None):
        self.devices = list(devices or jax.local_devices())
        mesh = Mesh(np.asarray(self.devices), ("rows",))
        self._rows, self._replicated = NamedSharding(mesh, P("rows", None)), NamedSharding(mesh, P())

    @property
    def n(self) -> int:
        return len(self.devices)

    def block(self, x: np.ndarray, per_device: int) -> jax.Array:
        """``x`` (at most per_device * n rows) zero-padded to per_device * n rows, split over the devices."""
        return jax.device_put(_pad_rows(x, per_device * self.n), self._rows)

    def replicate(self, tree):
        return jax.device_put(tree, self._replicated)


def similarity_entmax(queries: np.ndarray, keys: np.ndarray, alpha: float, *, k: tuple[int, ...] = (64, 1024),
                      block_rows: int = 256, solve_dtype: str = "float64", progress: bool = True,
                      devices: Sequence[jax.Device] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """alpha-entmax (alpha > 1) of the similarity rows queries @ keys.T, exactly, as COO triplets.

    queries [Q, d], keys [N, d] (unit rows give cosines). The result is the entmax of the exact
    scores of the float32 vectors, independent of matmul summation order (solve_dtype "float64"), or
    of their float32 scores in any summation order (solve_dtype "float32": within FLOAT32_WEIGHT_ERROR).
    Rows are processed in blocks of block_rows per device (memory O(block_rows * N) per device),
    split over ``devices`` (default: every local device); each row is first solved on its top
    k[0] candidates, rows whose proof fails are retried with k[1], ..., then over the full row.
    Returns (rows, cols, weights float32, stats) with rows ascending and weights > 0; stats counts
    the rows settled at each stage."""
    _check_alpha(alpha)
    if alpha == 1.0:
        raise ValueError("softmax (alpha = 1) is dense: use dense_softmax_combine instead")
    if queries.ndim != 2 or keys.ndim != 2 or queries.shape[1] != keys.shape[1]:
        raise ValueError(f"similarity_entmax: queries {queries.shape} and keys {keys.shape} must be [Q, d], [N, d]")
    # identical query rows (e.g. strings the bridge tokenises to the same pieces) are solved once
    q_all, inverse = np.unique(np.asarray(queries, np.float32), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    keys = np.asarray(keys, np.float32)
    n_keys, dim = keys.shape
    ks = [kk for kk in k if kk < n_keys]
    stats = {f"top{kk}": 0 for kk in ks} | {"full": 0}
    # float32 rounds the recomputed candidate scores as well: twice the bound covers both roundings
    margin = matmul_error_bound(q_all, keys) * (1.0 if solve_dtype == "float64" else 2.0)
    out_rows, out_cols, out_w = [], [], []

    def emit(rows, idx, w):
        r, j = np.nonzero(w > 0)
        out_rows.append(rows[r])
        out_cols.append(idx[r, j] if idx is not None else j)
        out_w.append(w[r, j])

    split = RowSplit(devices)
    n_dev = split.n
    with jax.enable_x64(solve_dtype == "float64"):
        sdt = jnp.dtype(solve_dtype)
        keys32, keys_exact = split.replicate((keys, np.asarray(keys, sdt)))
        block = block_rows * n_dev
        for start in tqdm(range(0, len(q_all), block), desc=f"entmax alpha={alpha}", disable=not progress,
                          unit="block"):
            pending = np.arange(start, min(start + block, len(q_all)))
            for kk in ks:
                # retries gather [rows, k+1, d] candidates: keep that near 2^24 elements per device
                sub = block_rows if kk == ks[0] else max(1, min(block_rows, (1 << 24) // ((kk + 1) * dim)))
                failed = []
                for s in range(0, len(pending), sub * n_dev):
                    part = pending[s:s + sub * n_dev]
                    idx, w, exact = jax.device_get(_block_topk(split.block(q_all[part], sub), keys32, keys_exact, margin,
                                                               alpha, kk, sdt))
                    exact = exact[:len(part)]
                    emit(part[exact], idx[:len(part)][exact], w[:len(part)][exact])
                    stats[f"top{kk}"] += int(exact.sum())
                    failed.append(part[~exact])
                pending = np.concatenate([pending[:0], *failed])
            sub = max(1, min(block_rows, (1 << 24) // n_keys))
            for s in range(0, len(pending), sub * n_dev):  # full rows: the proof failed at every k
                part = pending[s:s + sub * n_dev]
                w = jax.device_get(_block_full(split.block(q_all[part], sub), keys_exact, alpha, sdt))
                emit(part, None, w[:len(part)])
                stats["full"] += len(part)
    rows, cols, weights = (np.concatenate(x) if x else np.zeros(0) for x in (out_rows, out_cols, out_w))
    order = np.lexsort((cols, rows))
    rows, cols, weights = rows[order], cols[order], weights[order]
    # expand unique rows back to every query row (COO, rows ascending)
    counts = np.bincount(rows.astype(np.int64), minlength=len(q_all))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    lengths = counts[inverse]
    out_r = np.repeat(np.arange(len(inverse)), lengths)
    offsets = np.arange(len(out_r)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    pick = np.repeat(starts[inverse], lengths) + offsets
    stats["unique_rows"] = len(q_all)
    return out_r.astype(np.int32), cols[pick].astype(np.int32), weights[pick].astype(np.float32), stats


@jax.jit
def _softmax_block_combine(q, keys, values):
    z = jnp.matmul(q, keys.T, precision=lax.Precision.HIGHEST)
    return jnp.matmul(jax.nn.softmax(z, axis=-1), values, precision=lax.Precision.HIGHEST)


def dense_softmax_combine(queries: np.ndarray, keys: np.ndarray, values: np.ndarray, *, temperature: float = 1.0,
                          block_rows: int = 256, devices: Sequence[jax.Device] | None = None) -> np.ndarray:
    """softmax(queries @ keys.T / temperature) @ values, blocked over query rows (block_rows per
    device, split over ``devices``), float32. values [N, ...] (any trailing shape; a bias [N] works too)."""
    vals = np.asarray(values, np.float32)
    flat = vals.reshape(vals.shape[0], -1)
    q_all = np.asarray(queries, np.float32) / temperature
    split = RowSplit(devices)
    keys_dev, vals_dev = split.replicate((np.asarray(keys, np.float32), flat))
    step = block_rows * split.n
    out = [np.asarray(_softmax_block_combine(split.block(q_all[s:s + step], block_rows), keys_dev,
                                             vals_dev))[:min(step, len(q_all) - s)]
           for s in range(0, len(q_all), step)]
    res = np.concatenate(out) if out else np.zeros((0, flat.shape[1]), np.float32)
    return res.reshape((len(q_all),) + vals.shape[1:])
