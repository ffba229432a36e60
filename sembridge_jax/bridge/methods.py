"""Initialisation methods for the non-copied target tokens, chosen by name (METHOD.md sections 2-3).

Every method copies overlapping tokens (bridge/overlap.py); they differ on the new ones:

  sembridge    alpha-entmax (default alpha 4) over the bridge cosines to ALL source tokens (the paper)
  sparsemax    the same with alpha = 2                               (ablation point)
  softmax_all  the same with alpha = 1: dense softmax, stored as bridge vectors ("dense_softmax")
  focus        sparsemax over the cosines to the OVERLAPPING target tokens only, combining their
               copied source rows. FOCUS measures similarity in fastText vectors trained on target
               text; here the bridge space stands in for it (a bridge-space stand-in, not FOCUS as
               published).
  sembridge_unkfilter
               sembridge without the strings the bridge cannot read: source tokens whose bridge
               tokenisation is only the unknown token are dropped from the candidates, and target
               tokens in that case get the mean source row (their bridge vectors are one shared
               <unk> vector, so their cosines would pick the same arbitrary sources for all of them)
  wechsel      top-k (10) source neighbours by bridge cosine, softmax(sim / 0.1) (WECHSEL / OFA style;
               "ofa" is an alias)
  mean         the mean source row
  random       N(0, std^2) with std of the tensor being transformed
  gaussian     per-dimension N(mu_d, sigma_d^2)
  mvgauss      N(mu, Sigma) (Hewitt 2021)
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from sembridge_jax.bridge.entmax import RowSplit, similarity_entmax


@dataclasses.dataclass(frozen=True)
class MethodInputs:
    """What a method may use. Bridge vectors are unit rows over the FULL vocabularies."""

    copy_src: np.ndarray  # [V_t]
    source_size: int
    target_vectors: np.ndarray | None  # [V_t, d_b]
    source_vectors: np.ndarray | None  # [V_s, d_b]
    alpha: float = 4.0
    top_k: int = 10
    temperature: float = 0.1
    block_rows: int = 256
    solve_dtype: str = "float64"
    source_unknown: np.ndarray | None = None  # [V_s] bool: the bridge reads only <unk> (bridge_unknown)
    target_unknown: np.ndarray | None = None  # [V_t] bool


@dataclasses.dataclass
class NewTokenInit:
    """A method's answer for the non-copied ids: COO weights or a shared rule (see Alignment)."""

    new_kind: str
    rows: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int32))
    cols: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int32))
    weights: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.float32))
    dense_query: np.ndarray | None = None
    dense_keys: np.ndarray | None = None
    stats: dict = dataclasses.field(default_factory=dict)
    mean_ids: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int32))  # "sparse": mean row


@dataclasses.dataclass(frozen=True)
class Method:
    fn: Callable[[MethodInputs], NewTokenInit]
    needs_bridge: bool
    doc: str
    needs_unknown: bool = False  # wants MethodInputs.source_unknown / target_unknown


def _new_ids(x: MethodInputs) -> np.ndarray:
    return np.flatnonzero(x.copy_src < 0)


def _entmax_method(alpha_override: float | None):
    def run(x: MethodInputs) -> NewTokenInit:
        alpha = x.alpha if alpha_override is None else alpha_override
        if alpha == 1.0:
            return _softmax_all(x)
        new = _new_ids(x)
        r, c, w, stats = similarity_entmax(x.target_vectors[new], x.source_vectors, alpha, block_rows=x.block_rows,
                                           solve_dtype=x.solve_dtype)
        return NewTokenInit("sparse", new[r].astype(np.int32), c, w, stats={"entmax_alpha": alpha, **stats})
    return run


def _entmax_unkfilter(x: MethodInputs) -> NewTokenInit:
    # masks left out = nothing unknown (then this is plain sembridge)
    t_unk = np.zeros(len(x.copy_src), bool) if x.target_unknown is None else np.asarray(x.target_unknown, bool)
    s_unk = np.zeros(x.source_size, bool) if x.source_unknown is None else np.asarray(x.source_unknown, bool)
    new = _new_ids(x)
    fallback = new[t_unk[new]]
    queries = new[~t_unk[new]]
    keep = np.flatnonzero(~s_unk)
    r, c, w, stats = similarity_entmax(x.target_vectors[queries], x.source_vectors[keep], x.alpha,
                                       block_rows=x.block_rows, solve_dtype=x.solve_dtype)
    stats = {"entmax_alpha": x.alpha, **stats, "unknown_sources_dropped": int(s_unk.sum()),
             "unknown_targets_mean": len(fallback)}
    return NewTokenInit("sparse", queries[r].astype(np.int32), keep[c].astype(np.int32), w, stats=stats,
                        mean_ids=fallback.astype(np.int32))


def _softmax_all(x: MethodInputs) -> NewTokenInit:
    q = np.zeros_like(x.target_vectors)
    new = _new_ids(x)
    q[new] = x.target_vectors[new]
    return NewTokenInit("dense_softmax", dense_query=q, dense_keys=x.source_vectors)


def _focus(x: MethodInputs) -> NewTokenInit:
    new = _new_ids(x)
    overlap = np.flatnonzero(x.copy_src >= 0)
    if len(overlap) == 0:
        raise ValueError("focus: no overlapping tokens to combine (turn on an overlap rule)")
    r, c, w, stats = similarity_entmax(x.target_vectors[new], x.target_vectors[overlap], 2.0,
                                       block_rows=x.block_rows, solve_dtype=x.solve_dtype)
    return _merge(new[r], x.copy_src[overlap][c], w, stats)


@functools.partial(jax.jit, static_argnames=("k",))
def _topk_softmax(q, keys, k, temperature):
    vals, idx = lax.top_k(jnp.matmul(q, keys.T, precision=lax.Precision.HIGHEST), k)
    return idx, jax.nn.softmax(vals / temperature, axis=-1)


def _wechsel(x: MethodInputs) -> NewTokenInit:
    new = _new_ids(x)
    k = min(x.top_k, x.source_size)
    split = RowSplit()
    keys = split.replicate(np.asarray(x.source_vectors, np.float32))
    step = x.block_rows * split.n
    idx, w = [], []
    for s in range(0, len(new), step):
        part = np.asarray(x.target_vectors[new[s:s + step]], np.float32)
        i, ww = jax.device_get(_topk_softmax(split.block(part, x.block_rows), keys, k, x.temperature))
        idx.append(i[:len(part)])
        w.append(ww[:len(part)])
    idx = np.concatenate(idx) if idx else np.zeros((0, k), np.int32)
    w = np.concatenate(w) if w else np.zeros((0, k), np.float32)
    return _merge(np.repeat(new, k), idx.reshape(-1), w.reshape(-1), {"top_k": k, "temperature": x.temperature})


def _merge(rows, cols, weights, stats) -> NewTokenInit:
    """COO with duplicate (row, col) pairs summed and zero weights dropped, rows ascending."""
    key = rows.astype(np.int64) * (1 << 31) + cols.astype(np.int64)
    uniq, inv = np.unique(key, return_inverse=True)
    w = np.bincount(inv, weights=weights.astype(np.float64)).astype(np.float32)
    keep = w > 0
    return NewTokenInit("sparse", (uniq // (1 << 31))[keep].astype(np.int32), (uniq % (1 << 31))[keep].astype(np.int32),
                        w[keep], stats=stats)


def _rule(kind: str):
    return lambda x: NewTokenInit(kind)


METHODS: dict[str, Method] = {
    "sembridge": Method(_entmax_method(None), True, "alpha-entmax over all source tokens (paper)"),
    "sembridge_unkfilter": Method(_entmax_unkfilter, True, "sembridge without bridge-unknown strings; those "
                                  "targets get the mean row", needs_unknown=True),
    "sparsemax": Method(_entmax_method(2.0), True, "sparsemax over all source tokens"),
    "softmax_all": Method(_softmax_all, True, "softmax over all source tokens (dense)"),
    "focus": Method(_focus, True, "sparsemax over overlapping tokens, bridge-space stand-in for FOCUS"),
    "wechsel": Method(_wechsel, True, "top-k neighbours, softmax(sim / temperature)"),
    "mean": Method(_rule("mean"), False, "mean source row"),
    "random": Method(_rule("random"), False, "N(0, std^2)"),
    "gaussian": Method(_rule("gaussian"), False, "per-dimension Gaussian"),
    "mvgauss": Method(_rule("mvgauss"), False, "multivariate Gaussian"),
}
ALIASES = {"ofa": "wechsel", "softmax": "softmax_all"}


def get_method(name: str) -> tuple[str, Method]:
    """(canonical name, Method); aliases "ofa" -> wechsel, "softmax" -> softmax_all."""
    canonical = ALIASES.get(name, name)
    if canonical not in METHODS:
        raise ValueError(f"unknown init method {name!r}; choose from {sorted(METHODS) + sorted(ALIASES)}")
    return canonical, METHODS[canonical]
