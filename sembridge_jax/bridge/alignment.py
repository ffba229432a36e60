"""The alignment artifact: how every target token's vocabulary row is made from source rows.

For every target id t exactly one of:
  * copy     copy_src[t] = s >= 0: row_t = row_s (overlapping token);
  * weights  sparse (source id, weight) pairs in rows/cols/weights (COO, rows ascending):
             row_t = sum_i w_i row_{s_i} (SemBridge, sparsemax, FOCUS, WECHSEL/OFA);
             ids listed in `mean_ids` instead get the mean source row (sembridge_unkfilter: target
             tokens the bridge cannot read);
  * a rule shared by all non-copied ids, `new_kind`:
             "dense_softmax"  softmax(q_t . k_i) over ALL source ids (alpha = 1); a V_t x V_s weight
                              matrix is too big to store, so the unit bridge vectors q (target) and
                              k (source) are stored and rows are combined block by block;
             "mean"           the mean source row;
             "random" | "gaussian" | "mvgauss"
                              samples of N(0, std^2) / per-dimension N(mu_d, sigma_d^2) / N(mu, Sigma)
                              fitted to the tensor being transformed, seeded per tensor.
On disk: alignment.npz (arrays + token strings) and alignment.json (metadata: tokenizers, bridge,
alpha, method, counts, support-size stats, timings).
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
from sembridge_jax.storage import as_path

FORMAT_VERSION = 1


@dataclasses.dataclass
class Alignment:
    copy_src: np.ndarray  # [V_t] int32: source id, or -1
    rows: np.ndarray  # [nnz] int32 target ids (ascending)
    cols: np.ndarray  # [nnz] int32 source ids
    weights: np.ndarray  # [nnz] float32, each target's weights sum to 1
    method: str
    source_size: int
    new_kind: str = "sparse"
    target_tokens: list[str] = dataclasses.field(default_factory=list)
    source_tokens: list[str] = dataclasses.field(default_factory=list)
    dense_query: np.ndarray | None = None  # [V_t, d_b] unit bridge vectors ("dense_softmax")
    dense_keys: np.ndarray | None = None  # [V_s, d_b]
    metadata: dict = dataclasses.field(default_factory=dict)
    mean_ids: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int32))  # sparse: mean row

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
        if self.new_kind == "sparse":
            have = np.unique(self.rows)
            if np.any(self.copy_src[have] >= 0):
                bad("a copied target id also has weights")
            if len(self.mean_ids) and (np.any(self.copy_src[self.mean_ids] >= 0) or np.isin(self.mean_ids, have).any()):
                bad("mean_ids must be non-copied target ids without weights")
            missing = np.setdiff1d(self.new_ids, np.union1d(have, self.mean_ids))
            if len(missing):
                bad(f"{len(missing)} non-copied target ids have no weights (first: {missing[:5].tolist()})")
        if self.new_kind == "dense_softmax" and (self.dense_query is None or self.dense_keys is None):
            bad("dense_softmax needs dense_query and dense_keys")

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
        if self.new_kind != "sparse":
            return []
        lo, hi = np.searchsorted(self.rows, [target_id, target_id + 1])
        pairs = sorted(zip(self.cols[lo:hi].tolist(), self.weights[lo:hi].tolist(), strict=True), key=lambda p: -p[1])
        return [(int(s), float(w)) for s, w in pairs]

    def support_sizes(self) -> np.ndarray:
        """Number of source tokens per non-copied target id (sparse kinds only)."""
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
        npz = io.BytesIO()
        np.savez_compressed(npz, **arrays)
        (out / "alignment.npz").write_bytes(npz.getvalue())
        meta = {"format_version": FORMAT_VERSION, "method": self.method, "new_kind": self.new_kind,
                "source_size": self.source_size, "target_size": self.target_size, **self.metadata,
                "summary": self.summary()}
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
        z = np.load(io.BytesIO((d / "alignment.npz").read_bytes()), allow_pickle=False)
        keep = {k: v for k, v in meta.items()
                if k not in ("format_version", "method", "new_kind", "source_size", "target_size", "summary")}
        return cls(copy_src=z["copy_src"], rows=z["rows"], cols=z["cols"], weights=z["weights"],
                   method=meta["method"], source_size=int(meta["source_size"]), new_kind=meta["new_kind"],
                   target_tokens=z["target_tokens"].tolist(), source_tokens=z["source_tokens"].tolist(),
                   dense_query=z.get("dense_query"), dense_keys=z.get("dense_keys"), metadata=keep,
                   mean_ids=z["mean_ids"] if "mean_ids" in z else np.zeros(0, np.int32))

    # ------------------------------------------------------------------ inspection
    def summary(self) -> dict:
        """Counts and support-size statistics."""
        rules = self.metadata.get("copy_rules", {})
        out = {"target_size": self.target_size, "source_size": self.source_size,
               "copied": int((self.copy_src >= 0).sum()), "new": int(len(self.new_ids)), "copy_rules": rules}
        if len(self.mean_ids):
            out["mean_init"] = int(len(self.mean_ids))
        if self.new_kind == "sparse" and len(self.new_ids) > len(self.mean_ids):
            s = self.support_sizes()[~np.isin(self.new_ids, self.mean_ids)]
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
        head = f"{tok!r} (id {target_id}): {len(pairs)} source tokens" + (
            " (top 32 of a dense softmax)" if self.new_kind == "dense_softmax" else "")
        lines = [head] + [f"  {w:8.4f}  {self._src(s)!r} (id {s})" for s, w in pairs[:limit]]
        if len(pairs) > limit:
            lines.append(f"  ... {len(pairs) - limit} more, weight {sum(w for _, w in pairs[limit:]):.4f}")
        return "\n".join(lines)

    def _src(self, s: int) -> str:
        return self.source_tokens[s] if self.source_tokens else str(s)


# ----------------------------------------------------------------------------- row kinds
# kind -> rows(alignment, source rows [V_s, D] float64, tensor name) -> rows of the new ids [n_new, D]


def _sparse_rows(al: Alignment, used: np.ndarray, name: str) -> np.ndarray:
    out = np.zeros((al.target_size, used.shape[1]), np.float64)
    np.add.at(out, al.rows, al.weights[:, None].astype(np.float64) * used[al.cols])
    out[al.mean_ids] = used.mean(0)
    return out[al.new_ids]


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
    "dense_softmax": _dense_softmax_rows,
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
