"""`ParallelMemory`: a query's English SPLADE vector from its nearest parallel sentences, for searching an
existing English index from another language (the connector route's cross-lingual query side).

SemBridge's idea at the sentence level: where SemBridge writes a new token as a convex combination of the
source tokens the bridge finds closest, the memory writes a target-language query as a convex combination
of the English model's own vectors of the English sides of the parallel pairs whose target sides the bridge
finds closest:

    key_i   = unit(mean-pooled bridge states of target side i - c)      c = the mean of those pools
    value_i = English SPLADE vector of English side i                   (the untouched English model)
    m(q)    = sum_{i in top-k cos(q, key_i)} softmax_i(cos / temperature) value_i

Top-10 with softmax(cos / 0.1) is WECHSEL's word-level rule (Minixhofer et al., 2022); centring removes the
direction every bridge pool shares (e5's states are anisotropic: the raw cosines of any two texts are
high), as in "all-but-the-top" post-processing. The connector's query vector for an English index is its
English block + weight * m(q). Pure numpy: the encoders compute the pools, this module the rest.
"""
from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import scipy.sparse as sp

MEMORY_FILE = "memory.npz"


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclasses.dataclass(frozen=True)
class ParallelMemory:
    keys: np.ndarray  # [N, d] float32 unit rows (centred pools of the target sides)
    center: np.ndarray  # [d] float32
    values: sp.csr_matrix  # [N, V_en] float32 English SPLADE vectors of the English sides
    k: int = 10
    temperature: float = 0.1
    weight: float = 1.0

    def __post_init__(self):
        if self.keys.shape[0] != self.values.shape[0] or self.keys.shape[1] != self.center.shape[0]:
            raise ValueError(f"ParallelMemory: {self.keys.shape[0]} keys of width {self.keys.shape[1]}, "
                             f"{self.values.shape[0]} values, a centre of width {self.center.shape[0]}")
        if self.k < 1 or self.temperature <= 0:
            raise ValueError(f"ParallelMemory: k must be >= 1 and temperature > 0, got {self.k} / {self.temperature}")

    @classmethod
    def build(cls, pools: np.ndarray, english_vectors: sp.csr_matrix, **settings) -> ParallelMemory:
        """From the target sides' mean-pooled bridge states [N, d] and the English sides' SPLADE vectors."""
        if len(pools) == 0:
            raise ValueError("ParallelMemory: no parallel pairs")
        center = pools.astype(np.float32).mean(0)
        return cls(unit_rows(pools.astype(np.float32) - center), center,
                   sp.csr_matrix(english_vectors, dtype=np.float32), **settings)

    def weights(self, pools: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(indices [B, k] of the nearest keys, their softmax weights [B, k]) for query pools [B, d]."""
        sim = unit_rows(pools.astype(np.float32) - self.center) @ self.keys.T
        k = min(self.k, sim.shape[1])
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        s = np.take_along_axis(sim, top, 1)
        w = np.exp((s - s.max(1, keepdims=True)) / self.temperature)
        return top, w / w.sum(1, keepdims=True)

    def vectors(self, pools: np.ndarray) -> sp.csr_matrix:
        """m(q) of the module docstring, CSR [B, V_en] float32 (not yet multiplied by `weight`)."""
        top, w = self.weights(pools)
        rows = np.repeat(np.arange(len(top)), top.shape[1])
        mix = sp.csr_matrix((w.ravel(), (rows, top.ravel())), shape=(len(top), self.keys.shape[0]))
        return (mix @ self.values).astype(np.float32).tocsr()

    def add_to(self, english: sp.csr_matrix | np.ndarray, pools: np.ndarray) -> sp.csr_matrix:
        """English-block query vectors + weight * m(q)."""
        return (sp.csr_matrix(english, dtype=np.float32) + self.weight * self.vectors(pools)).tocsr()

    # ------------------------------------------------------------------------------------ files
    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        v = self.values
        np.savez(buf, keys=self.keys, center=self.center, indptr=v.indptr, indices=v.indices, data=v.data,
                 shape=np.asarray(v.shape), settings=np.asarray([self.k, self.temperature, self.weight]))
        return buf.getvalue()

    @classmethod
    def load(cls, path: str | Path) -> ParallelMemory:
        try:
            z = np.load(path)
            values = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
            k, temperature, weight = z["settings"]
            return cls(z["keys"], z["center"], values, k=int(k), temperature=float(temperature), weight=float(weight))
        except (OSError, KeyError, ValueError) as e:
            raise ValueError(f"{path}: not a parallel memory ({e})") from e
