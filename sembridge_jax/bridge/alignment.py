"""The alignment artifact: how every target token's vocabulary row is made from source rows.

For every target id t exactly one of:
  * copy     copy_src[t] = s >= 0: row_t = row_s (overlapping token);
  * weights  (source id, weight) pairs in rows/cols/weights (COO, rows ascending), used by the kind:
             "sparse"    row_t = sum_i w_i row_{s_i}, a convex combination (SemBridge, sparsemax, FOCUS,
                         WECHSEL/OFA); ids listed in `mean_ids` instead get the mean source row
                         (sembridge_unkfilter: target tokens the bridge cannot read);
             "residual"  the same combination made distinct: around the source mean row m, the
                         deviation is sqrt(1 - w) (its direction) + sqrt(w) (a seeded draw of the
                         source rows' distribution, orthogonal to it), scaled to the mean source
                         deviation norm (bridge/identity.py; w = params["identity_weight"]; a token
                         without weights gets the draw alone: a norm-matched mvgauss row);
             "affine"    row_t = m + sum_i c_i (row_{s_i} - m): reconstruction coefficients of any
                         sign that need not sum to 1 (OMP), so the mean row is carried separately;
  * a rule shared by all non-copied ids, `new_kind`:
             "dense_softmax"  softmax(q_t . k_i) over ALL source ids (alpha = 1); a V_t x V_s weight
                              matrix is too big to store, so the unit bridge vectors q (target) and
                              k (source) are stored and rows are combined block by block;
             "linear_map"     a linear map (params["map"]: ridge | procrustes) fitted per tensor from
                              the bridge vectors k (source; or q of the copied targets, params["map_fit"])
                              to the rows, applied to q of the new ids, then norm-matched;
             "mean"           the mean source row;
             "random" | "gaussian" | "mvgauss"
                              samples of N(0, std^2) / per-dimension N(mu_d, sigma_d^2) / N(mu, Sigma)
                              fitted to the tensor being transformed, seeded per tensor.
Sampled kinds draw from `rng(name)`: deterministic per (seed, tensor name). A one-column tensor (the MLM
bias under bias_init "remap") gets the kind's scalar analogue: residual -> its weighted combination
(a Gaussian draw without weights), linear_map -> the map's prediction without norm matching.

On disk: alignment.npz (arrays, token strings, target-text counts) and alignment.json (metadata:
tokenizers, bridge, alpha, method, row params, counts, support-size stats, diagnostics, timings).
Format 2 added the kinds residual / affine / linear_map, `params` and `text_stats`; format 1 still loads.
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import zlib
from collections.abc import Callable

import numpy as np

from sembridge_jax.bridge.entmax import dense_softmax_combine
from sembridge_jax.bridge.identity import mean_deviation_norm, norm_match, orthogonal_residual
from sembridge_jax.bridge.linear_map import apply_map, fit_map
from sembridge_jax.storage import as_path

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
WEIGHT_KINDS = ("sparse", "residual", "affine")  # kinds that read the COO weights
SAMPLED_KINDS = ("random", "gaussian", "mvgauss", "residual")  # kinds that draw from rng(name)
MAP_FITS = ("source", "overlap", "both")
IDENTITY_NOISE = ("mvgauss", "isotropic")


@dataclasses.dataclass
class Alignment:
    copy_src: np.ndarray  # [V_t] int32: source id, or -1
    rows: np.ndarray  # [nnz] int32 target ids (ascending)
    cols: np.ndarray  # [nnz] int32 source ids
    weights: np.ndarray  # [nnz] float32: convex weights (sparse, residual) or coefficients (affine)
    method: str
    source_size: int
    new_kind: str = "sparse"
    target_tokens: list[str] = dataclasses.field(default_factory=list)
    source_tokens: list[str] = dataclasses.field(default_factory=list)
    dense_query: np.ndarray | None = None  # [V_t, d_b] unit bridge vectors (dense_softmax; linear_map: centred)
    dense_keys: np.ndarray | None = None  # [V_s, d_b]
    metadata: dict = dataclasses.field(default_factory=dict)
    mean_ids: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int32))  # sparse: mean row
    params: dict = dataclasses.field(default_factory=dict)  # what the row kind reads (identity_weight, map, ...)
    text_stats: dict | None = None  # target-text counts {"tf": [V_t], "df": [V_t], "n_texts", "file"}

    def __post_init__(self):
        self.copy_src = np.asarray(self.copy_src, np.int32)
        self.rows = np.asarray(self.rows, np.int32)
        self.cols = np.asarray(self.cols, np.int32)
        self.weights = np.asarray(self.weights, np.float32)
        self.mean_ids = np.asarray(self.mean_ids, np.int32).reshape(-1)
        self.validate()

    # ------------------------------------------------------------------ structure
    @property
    def target_size(self) -> int:
        return len(self.copy_src)

    @property
    def new_ids(self) -> np.ndarray:
        """Target ids that are not copies."""
        return np.flatnonzero(self.copy_src < 0)

    def validate(self) -> None:
        """Raise ValueError naming the field when the artifact is inconsistent."""
        def bad(msg):
            raise ValueError(f"Alignment ({self.method}): {msg}")

        if self.new_kind not in ROW_KINDS:
            bad(f"new_kind must be one of {tuple(ROW_KINDS)}, got {self.new_kind!r}")
        if not (len(self.rows) == len(self.cols) == len(self.weights)):
            bad("rows, cols and weights must have the same length")
        if self.copy_src.size and self.copy_src.max(initial=-1) >= self.source_size:
            bad(f"copy_src holds source id {self.copy_src.max()} >= source_size {self.source_size}")
        if len(self.cols) and (self.cols.min() < 0 or self.cols.max() >= self.source_size):
            bad("cols must be source ids in [0, source_size)")
        if len(self.rows) and np.any(np.diff(self.rows) < 0):
            bad("rows must be ascending")
        if len(self.mean_ids) and self.new_kind != "sparse":
            bad("mean_ids is only meaningful for new_kind 'sparse'")
        if len(self.rows) and self.new_kind not in WEIGHT_KINDS:
            bad(f"new_kind {self.new_kind!r} takes no weights")
        have = np.unique(self.rows)
        if np.any(self.copy_src[have] >= 0):
            bad("a copied target id also has weights")
        if self.new_kind == "sparse":
            if len(self.mean_ids) and (np.any(self.copy_src[self.mean_ids] >= 0) or np.isin(self.mean_ids, have).any()):
                bad("mean_ids must be non-copied target ids without weights")
            missing = np.setdiff1d(self.new_ids, np.union1d(have, self.mean_ids))
            if len(missing):
                bad(f"{len(missing)} non-copied target ids have no weights (first: {missing[:5].tolist()})")
        if self.new_kind in ("dense_softmax", "linear_map") and (self.dense_query is None or self.dense_keys is None):
            bad(f"{self.new_kind} needs dense_query and dense_keys")
        if self.text_stats is not None and not (len(self.text_stats["tf"]) == len(self.text_stats["df"])
                                                == self.target_size):
            bad(f"text_stats must hold tf and df over the {self.target_size} target ids")

    def support(self, target_id: int) -> list[tuple[int, float]]:
        """(source id, weight) pairs of one target id, heaviest first ([(s, 1.0)] for a copy)."""
        if self.copy_src[target_id] >= 0:
            return [(int(self.copy_src[target_id]), 1.0)]
        if self.new_kind == "dense_softmax":
            z = self.dense_keys @ self.dense_query[target_id]
            w = np.exp(z - z.max())
            w /= w.sum()
            top = np.argsort(-w)[:32]
            return [(int(i), float(w[i])) for i in top]
        if self.new_kind not in WEIGHT_KINDS:
            return []
        lo, hi = np.searchsorted(self.rows, [target_id, target_id + 1])
        pairs = sorted(zip(self.cols[lo:hi].tolist(), self.weights[lo:hi].tolist(), strict=True),
                       key=lambda p: -abs(p[1]))
        return [(int(s), float(w)) for s, w in pairs]

    def support_sizes(self) -> np.ndarray:
        """Number of source tokens per non-copied target id (the weight kinds)."""
        return np.bincount(self.rows, minlength=self.target_size)[self.new_ids]

    # ------------------------------------------------------------------ applying
    def combine(self, source_rows: np.ndarray, *, name: str = "") -> np.ndarray:
        """Target rows [V_t, ...] from source rows [V_s', ...] (V_s' >= source_size; extra rows unused).
        `name` seeds the sampled kinds per tensor, so each tensor gets its own draw."""
        src = np.asarray(source_rows)
        if src.shape[0] < self.source_size:
            raise ValueError(f"combine({name or 'rows'}): {src.shape[0]} source rows < source_size {self.source_size}")
        flat = src.reshape(src.shape[0], -1).astype(np.float64)
        out = np.zeros((self.target_size, flat.shape[1]), np.float64)
        copied = self.copy_src >= 0
        out[copied] = flat[self.copy_src[copied]]
        out[self.new_ids] = ROW_KINDS[self.new_kind](self, flat[:self.source_size], name)
        return out.astype(src.dtype).reshape((self.target_size,) + src.shape[1:])

    def rng(self, name: str) -> np.random.Generator:
        """The generator of the sampled kinds for the tensor `name` (seeded by the alignment's seed)."""
        return np.random.default_rng([int(self.metadata.get("seed", 0)), zlib.crc32(name.encode())])

    # ------------------------------------------------------------------ I/O
    def save(self, out_dir: str | os.PathLike):
        """Write out_dir/alignment.npz and out_dir/alignment.json (local or gs://...); returns out_dir."""
        out = as_path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        arrays = dict(copy_src=self.copy_src, rows=self.rows, cols=self.cols, weights=self.weights,
                      target_tokens=np.array(self.target_tokens, dtype=str),
                      source_tokens=np.array(self.source_tokens, dtype=str))
        if len(self.mean_ids):
            arrays["mean_ids"] = self.mean_ids
        if self.dense_query is not None:
            arrays.update(dense_query=self.dense_query.astype(np.float32), dense_keys=self.dense_keys.astype(np.float32))
        if self.text_stats is not None:
            arrays.update(text_tf=self.text_stats["tf"], text_df=self.text_stats["df"])
        npz = io.BytesIO()
        np.savez_compressed(npz, **arrays)
        (out / "alignment.npz").write_bytes(npz.getvalue())
        return self.save_metadata(out)

    def save_metadata(self, out_dir: str | os.PathLike):
        """(Re)write out_dir/alignment.json alone (e.g. after adding diagnostics); returns out_dir."""
        out = as_path(out_dir)
        meta = {"format_version": FORMAT_VERSION, "method": self.method, "new_kind": self.new_kind,
                "source_size": self.source_size, "target_size": self.target_size, "row_params": self.params,
                **self.metadata, "summary": self.summary()}
        if self.text_stats is not None:
            meta["text_stats"] = {k: v for k, v in self.text_stats.items() if k not in ("tf", "df")}
        (out / "alignment.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False, default=_jsonable))
        return out

    @classmethod
    def load(cls, in_dir: str | os.PathLike) -> Alignment:
        """Read an artifact written by `save`."""
        d = as_path(in_dir)
        for f in ("alignment.npz", "alignment.json"):
            if not (d / f).is_file():
                raise FileNotFoundError(f"{d / f} not found (not an alignment folder)")
        meta = json.loads((d / "alignment.json").read_text())
        if meta.get("format_version") not in READABLE_FORMATS:
            raise ValueError(f"{d / 'alignment.json'}: format_version {meta.get('format_version')!r} is not one of "
                             f"{READABLE_FORMATS} (written by another version of sembridge_jax)")
        z = np.load(io.BytesIO((d / "alignment.npz").read_bytes()), allow_pickle=False)
        keep = {k: v for k, v in meta.items() if k not in ("format_version", "method", "new_kind", "source_size",
                                                            "target_size", "summary", "row_params", "text_stats")}
        text_stats = None
        if "text_tf" in z:
            text_stats = {**meta["text_stats"], "tf": z["text_tf"], "df": z["text_df"]}
        return cls(copy_src=z["copy_src"], rows=z["rows"], cols=z["cols"], weights=z["weights"],
                   method=meta["method"], source_size=int(meta["source_size"]), new_kind=meta["new_kind"],
                   target_tokens=z["target_tokens"].tolist(), source_tokens=z["source_tokens"].tolist(),
                   dense_query=z.get("dense_query"), dense_keys=z.get("dense_keys"), metadata=keep,
                   mean_ids=z["mean_ids"] if "mean_ids" in z else np.zeros(0, np.int32),
                   params=meta.get("row_params", {}), text_stats=text_stats)

    # ------------------------------------------------------------------ inspection
    def summary(self) -> dict:
        """Counts and support-size statistics."""
        rules = self.metadata.get("copy_rules", {})
        out = {"target_size": self.target_size, "source_size": self.source_size,
               "copied": int((self.copy_src >= 0).sum()), "new": int(len(self.new_ids)), "copy_rules": rules}
        if len(self.mean_ids):
            out["mean_init"] = int(len(self.mean_ids))
        if self.new_kind in WEIGHT_KINDS and len(self.rows):
            s = self.support_sizes()
            s = s[(s > 0) & ~np.isin(self.new_ids, self.mean_ids)]
            out["support_size"] = {"mean": float(s.mean()), "median": float(np.median(s)), "min": int(s.min()),
                                   "max": int(s.max()), "p90": float(np.percentile(s, 90)), "nnz": int(len(self.rows))}
        return out

    def find_target(self, token: str) -> list[int]:
        """Target ids whose raw token is `token`, else "▁token" / "Ġtoken" (word-start pieces of
        SentencePiece / byte-level vocabularies). Pass "##x" for a WordPiece continuation piece."""
        for form in (token, "\u2581" + token, "\u0120" + token):
            hits = [i for i, t in enumerate(self.target_tokens) if t == form]
            if hits:
                return hits
        return []

    def describe(self, target_id: int, limit: int = 15) -> str:
        """Human-readable rows: the chosen source tokens and weights of one target id."""
        tok = self.target_tokens[target_id] if self.target_tokens else str(target_id)
        if self.copy_src[target_id] >= 0:
            s = int(self.copy_src[target_id])
            return f"{tok!r} (id {target_id}): copied from source {self._src(s)!r} (id {s})"
        pairs = self.support(target_id)
        if not pairs:
            kind = "mean" if target_id in set(self.mean_ids.tolist()) else self.new_kind
            return f"{tok!r} (id {target_id}): {kind} init (no per-token weights)"
        head = f"{tok!r} (id {target_id}): {len(pairs)} source tokens" + {
            "dense_softmax": " (top 32 of a dense softmax)",
            "affine": " (reconstruction coefficients, around the mean row)",
            "residual": f" (+ a token-unique part, identity_weight {self.params.get('identity_weight')})",
        }.get(self.new_kind, "")
        lines = [head] + [f"  {w:8.4f}  {self._src(s)!r} (id {s})" for s, w in pairs[:limit]]
        if len(pairs) > limit:
            lines.append(f"  ... {len(pairs) - limit} more, weight {sum(w for _, w in pairs[limit:]):.4f}")
        return "\n".join(lines)

    def _src(self, s: int) -> str:
        return self.source_tokens[s] if self.source_tokens else str(s)


# ----------------------------------------------------------------------------- row kinds
# kind -> rows(alignment, source rows [V_s, D] float64, tensor name) -> rows of the new ids [n_new, D]


def _weighted_sum(al: Alignment, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sum_i w_i values[s_i] per new id [n_new, D], whether the id has weights [n_new])."""
    out = np.zeros((al.target_size, values.shape[1]), np.float64)
    np.add.at(out, al.rows, al.weights[:, None].astype(np.float64) * values[al.cols])
    has = np.zeros(al.target_size, bool)
    has[al.rows] = True
    return out[al.new_ids], has[al.new_ids]


def _sparse_rows(al: Alignment, used: np.ndarray, name: str) -> np.ndarray:
    out, _ = _weighted_sum(al, used)
    out[np.isin(al.new_ids, al.mean_ids)] = used.mean(0)
    return out


def _residual_rows(al: Alignment, used: np.ndarray, name: str) -> np.ndarray:
    semantic, has = _weighted_sum(al, used)
    if used.shape[1] == 1:
        return np.where(has[:, None], semantic, _gaussian_rows(al, used, name))
    m, rho = mean_deviation_norm(used)
    if al.params.get("identity_noise", "mvgauss") == "isotropic":
        noise = al.rng(name).standard_normal((len(al.new_ids), used.shape[1]))
    else:
        noise = _mvgauss_rows(al, used, name) - m
    weight = np.where(has, float(al.params.get("identity_weight", 1.0)), 1.0)
    return m + rho * orthogonal_residual(np.where(has[:, None], semantic - m, 0.0), noise, weight)


def _affine_rows(al: Alignment, used: np.ndarray, name: str) -> np.ndarray:
    m = used.mean(0)
    return m + _weighted_sum(al, used - m)[0]


def _linear_map_rows(al: Alignment, used: np.ndarray, name: str) -> np.ndarray:
    fit = al.params.get("map_fit", "source")
    copied = np.flatnonzero(al.copy_src >= 0)
    xs, ys = [], []
    if fit in ("source", "both"):
        xs.append(al.dense_keys)
        ys.append(used)
    if fit in ("overlap", "both"):
        xs.append(al.dense_query[copied])
        ys.append(used[al.copy_src[copied]])
    w, b = fit_map(np.concatenate(xs), np.concatenate(ys), al.params["map"],
                   ridge_lambda=float(al.params.get("ridge_lambda", 1.0)))
    pred = apply_map(al.dense_query[al.new_ids], w, b)
    return pred if used.shape[1] == 1 else norm_match(pred, used)


def _dense_softmax_rows(al: Alignment, used: np.ndarray, name: str) -> np.ndarray:
    return dense_softmax_combine(al.dense_query[al.new_ids], al.dense_keys, used.astype(np.float32))


def _mean_rows(al: Alignment, used: np.ndarray, name: str) -> np.ndarray:
    return np.broadcast_to(used.mean(0), (len(al.new_ids), used.shape[1]))


def _random_rows(al: Alignment, used: np.ndarray, name: str) -> np.ndarray:
    return al.rng(name).normal(0.0, used.std(), size=(len(al.new_ids), used.shape[1]))


def _gaussian_rows(al: Alignment, used: np.ndarray, name: str) -> np.ndarray:
    return al.rng(name).normal(used.mean(0), used.std(0), size=(len(al.new_ids), used.shape[1]))


def _mvgauss_rows(al: Alignment, used: np.ndarray, name: str) -> np.ndarray:
    if used.shape[1] == 1:  # a bias: the per-dimension Gaussian is the same distribution
        return _gaussian_rows(al, used, name)
    cov = np.cov(used, rowvar=False)
    return al.rng(name).multivariate_normal(used.mean(0), cov, size=len(al.new_ids),
                                            method="cholesky" if _is_pd(cov) else "eigh")


ROW_KINDS: dict[str, Callable[[Alignment, np.ndarray, str], np.ndarray]] = {
    "sparse": _sparse_rows,
    "residual": _residual_rows,
    "affine": _affine_rows,
    "dense_softmax": _dense_softmax_rows,
    "linear_map": _linear_map_rows,
    "mean": _mean_rows,
    "random": _random_rows,
    "gaussian": _gaussian_rows,
    "mvgauss": _mvgauss_rows,
}


def _is_pd(cov: np.ndarray) -> bool:
    try:
        np.linalg.cholesky(cov)
        return True
    except np.linalg.LinAlgError:
        return False


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x)}")
