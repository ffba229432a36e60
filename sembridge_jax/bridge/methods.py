"""Initialisation methods for the non-copied target tokens: the registry `METHODS` (one entry each).

Every method copies the overlapping tokens (bridge/overlap.py) and differs on the new ones. An entry
holds everything about its method (docs/methods.md shows the same one-line docs with the reasoning
and sources); adding a method is one entry plus its function.
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
from sembridge_jax.bridge.identity import unit_rows
from sembridge_jax.bridge.omp import omp


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
    identity_weight: float = 0.5
    identity_noise: str = "mvgauss"
    omp_k: int = 64
    ridge_lambda: float = 1.0
    map_fit: str = "source"


@dataclasses.dataclass
class NewTokenInit:
    """A method's answer for the non-copied ids: COO weights or the vectors of a shared rule (see Alignment)."""

    rows: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int32))
    cols: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int32))
    weights: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.float32))
    dense_query: np.ndarray | None = None
    dense_keys: np.ndarray | None = None
    stats: dict = dataclasses.field(default_factory=dict)
    mean_ids: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int32))  # "sparse": mean row
    params: dict = dataclasses.field(default_factory=dict)  # what the row kind reads (Alignment.params)


# `Method.alpha` when the method uses the configured alpha (`init.alpha`, `--alpha`).
FROM_CONFIG = "init.alpha"


@dataclasses.dataclass(frozen=True)
class Method:
    """Everything about one init method: one entry of METHODS.

    rows: the row kind it produces (alignment.ROW_KINDS): per-token source weights ("sparse", "residual",
          "affine") or a rule shared by all new tokens ("dense_softmax", "linear_map", "mean", "random",
          "gaussian", "mvgauss");
    fn: computes the per-token part from MethodInputs (None: the rule needs nothing precomputed);
    alpha: the entmax alpha it uses: a fixed value, FROM_CONFIG, or None (no alpha);
    needs_bridge: encodes both vocabularies with the bridge model; needs_unknown: wants the masks of
    strings the bridge cannot read; doc: the one line shown by `--help` and in docs/methods.md;
    bias: the output bias that bias_init "auto" gives it (apply.BIAS_INIT);
    settings: the other `init.*` keys it reads; they are stored with the alignment (Alignment.params).
    """

    doc: str
    rows: str
    fn: Callable[[MethodInputs], NewTokenInit] | None = None
    alpha: float | str | None = None
    needs_bridge: bool = False
    needs_unknown: bool = False
    aliases: tuple[str, ...] = ()
    bias: str = "remap"
    settings: tuple[str, ...] = ()

    def resolve_alpha(self, configured: float) -> float | None:
        return configured if self.alpha == FROM_CONFIG else self.alpha

    def initialise(self, x: MethodInputs) -> NewTokenInit:
        """The per-token part for `x` (alpha resolved from this entry; empty for a shared rule), its params
        holding this method's settings."""
        init = NewTokenInit() if self.fn is None else self.fn(dataclasses.replace(x, alpha=self.resolve_alpha(x.alpha)))
        init.params = {**{k: getattr(x, k) for k in self.settings}, **init.params}
        return init


def _new_ids(x: MethodInputs) -> np.ndarray:
    return np.flatnonzero(x.copy_src < 0)


def _entmax(x: MethodInputs) -> NewTokenInit:
    new = _new_ids(x)
    r, c, w, stats = similarity_entmax(x.target_vectors[new], x.source_vectors, x.alpha, block_rows=x.block_rows,
                                       solve_dtype=x.solve_dtype)
    return NewTokenInit(new[r].astype(np.int32), c, w, stats={"entmax_alpha": x.alpha, **stats})


def centre_per_vocabulary(target_vectors: np.ndarray, source_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each vocabulary's bridge vectors minus that vocabulary's OWN mean vector, renormalised (float32).

    A multilingual encoder gives every string of one language a shared offset that says which language
    it is, not what it means (Libovicky, Rosa & Fraser 2020); with e5-small it holds 85% of the energy and
    squeezes all Korean-English cosines into a 0.09-wide band, which flattens any weighting over them.
    Removing each side's own mean keeps the within-language variation (a single pooled mean would leave
    the offset between the two languages in)."""
    return tuple(unit_rows(v - np.asarray(v, np.float64).mean(0)).astype(np.float32)
                 for v in (target_vectors, source_vectors))


def _centred(x: MethodInputs) -> MethodInputs:
    tv, sv = centre_per_vocabulary(x.target_vectors, x.source_vectors)
    return dataclasses.replace(x, target_vectors=tv, source_vectors=sv)


def _entmax_centred(x: MethodInputs) -> NewTokenInit:
    init = _entmax(_centred(x))
    init.stats["centred"] = True
    return init


def _omp(x: MethodInputs) -> NewTokenInit:
    c = _centred(x)
    new = _new_ids(x)
    r, cols, coefs, stats = omp(c.target_vectors[new], c.source_vectors, x.omp_k, block_rows=x.block_rows,
                                solve_dtype=x.solve_dtype)
    return NewTokenInit(new[r].astype(np.int32), cols, coefs, stats=stats)


def _linear_map(kind: str, x: MethodInputs) -> NewTokenInit:
    if x.map_fit == "overlap" and np.count_nonzero(x.copy_src >= 0) < 2:
        raise ValueError(f"{kind}: init.map_fit='overlap' needs at least 2 copied tokens (turn on an overlap rule)")
    c = _centred(x)
    return NewTokenInit(dense_query=c.target_vectors, dense_keys=c.source_vectors, params={"map": kind})


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
    return NewTokenInit(queries[r].astype(np.int32), keep[c].astype(np.int32), w, stats=stats,
                        mean_ids=fallback.astype(np.int32))


def _softmax_all(x: MethodInputs) -> NewTokenInit:
    q = np.zeros_like(x.target_vectors)
    new = _new_ids(x)
    q[new] = x.target_vectors[new]
    return NewTokenInit(dense_query=q, dense_keys=x.source_vectors)


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
    return NewTokenInit((uniq // (1 << 31))[keep].astype(np.int32), (uniq % (1 << 31))[keep].astype(np.int32),
                        w[keep], stats=stats)


METHODS: dict[str, Method] = {
    "identity_semantic": Method("centred sembridge made distinct: + an orthogonal token-unique draw, norm-matched "
                                "(recommended)", "residual", _entmax_centred, alpha=FROM_CONFIG, needs_bridge=True,
                                bias="mean", settings=("identity_weight", "identity_noise")),
    "sembridge": Method("alpha-entmax over the bridge cosines to all source tokens (the paper)", "sparse", _entmax,
                        alpha=FROM_CONFIG, needs_bridge=True),
    "sembridge_centred": Method("sembridge over per-vocabulary-centred bridge cosines", "sparse", _entmax_centred,
                                alpha=FROM_CONFIG, needs_bridge=True),
    "sembridge_unkfilter": Method("sembridge without bridge-unknown strings; those targets get the mean row",
                                  "sparse", _entmax_unkfilter, alpha=FROM_CONFIG, needs_bridge=True,
                                  needs_unknown=True),
    "sparsemax": Method("sparsemax (alpha 2) over all source tokens", "sparse", _entmax, alpha=2.0,
                        needs_bridge=True),
    "softmax_all": Method("softmax (alpha 1) over all source tokens (dense)", "dense_softmax", _softmax_all,
                          alpha=1.0, needs_bridge=True, aliases=("softmax",)),
    "focus": Method("sparsemax over overlapping tokens, bridge-space stand-in for FOCUS", "sparse", _focus,
                    alpha=2.0, needs_bridge=True),
    "wechsel": Method("top-k neighbours, softmax(sim / temperature) (WECHSEL / OFA style)", "sparse", _wechsel,
                      needs_bridge=True, aliases=("ofa",), settings=("top_k", "temperature")),
    "omp": Method("OMP code (k atoms, any sign) of the centred bridge vector, reused around the mean row",
                  "affine", _omp, needs_bridge=True, bias="mean", settings=("omp_k",)),
    "ridge": Method("ridge map centred bridge vector -> model row, norm-matched", "linear_map",
                    functools.partial(_linear_map, "ridge"), needs_bridge=True, bias="mean",
                    settings=("map_fit", "ridge_lambda")),
    "procrustes": Method("scaled orthogonal map centred bridge vector -> model row, norm-matched", "linear_map",
                         functools.partial(_linear_map, "procrustes"), needs_bridge=True, bias="mean",
                         settings=("map_fit",)),
    "mean": Method("the mean source row", "mean"),
    "random": Method("N(0, std^2) with the std of the tensor", "random"),
    "gaussian": Method("per-dimension Gaussian fitted to the source rows", "gaussian"),
    "mvgauss": Method("multivariate Gaussian fitted to the source rows (Hewitt 2021)", "mvgauss"),
    "mvgauss_nm": Method("mvgauss, each row's deviation from the mean set to the mean source one", "residual",
                         bias="mean", settings=("identity_noise",)),
}
ALIASES = {alias: name for name, m in METHODS.items() for alias in m.aliases}


def method_names() -> tuple[str, ...]:
    """Every name the registry accepts: canonical names, then aliases."""
    return (*METHODS, *ALIASES)


def get_method(name: str) -> tuple[str, Method]:
    """(canonical name, Method); aliases resolve to their method ("ofa" -> wechsel)."""
    canonical = ALIASES.get(name, name)
    if canonical not in METHODS:
        raise ValueError(f"unknown init method {name!r}; choose from {sorted(METHODS) + sorted(ALIASES)}")
    return canonical, METHODS[canonical]


def methods_table() -> str:
    """The registry as a markdown table (docs/methods.md holds the same; `bridge methods` prints it)."""
    lines = ["| name | non-copied target tokens get | rows | alpha | bridge | bias (auto) | settings |",
             "|---|---|---|---|---|---|---|"]
    for name, m in METHODS.items():
        alias = f" (alias {', '.join(f'`{a}`' for a in m.aliases)})" if m.aliases else ""
        alpha = "-" if m.alpha is None else f"`{m.alpha}`" if m.alpha == FROM_CONFIG else f"{m.alpha:g}"
        settings = ", ".join(f"`init.{k}`" for k in m.settings) or "-"
        lines.append(f"| `{name}`{alias} | {m.doc} | {m.rows} | {alpha} | {'yes' if m.needs_bridge else 'no'} "
                     f"| {m.bias} | {settings} |")
    return "\n".join(lines) + "\n"
