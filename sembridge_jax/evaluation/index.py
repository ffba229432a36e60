"""Exact top-k retrieval over sparse vectors through an inverted index (term-major postings).

Scores are dot products. Queries are processed in blocks: one scipy sparse x sparse product per block
walks the posting lists of the block's query terms (the classic term-at-a-time accumulation), so the
work per query is sum over its terms of the posting length, and memory is bounded by
block_size x (documents touched), never queries x documents.

Ranking order is total and deterministic: higher score first, then lower document index. Documents
that share no term with the query (score 0) are never returned.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm


def _top_k_row(data: np.ndarray, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of one sparse score row under (-score, index) order; exact also when ties span the cutoff."""
    if data.size > k:
        cut = np.partition(data, data.size - k)[data.size - k]  # k-th largest value
        keep = data >= cut  # every tie at the cutoff stays a candidate
        data, idx = data[keep], idx[keep]
    order = np.lexsort((idx, -data))[:k]
    return idx[order], data[order]


def rank_in_row(data: np.ndarray, idx: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """1-based ranks of document indices `targets` in the full ranking of a collection whose non-zero scores
    are `data` at sorted indices `idx` (every other document scores 0), order (-score, index)."""
    pos = np.searchsorted(idx, targets)
    hit = pos < idx.size
    hit[hit] = idx[pos[hit]] == targets[hit]
    score = np.zeros(targets.size, dtype=np.float64)
    score[hit] = data[pos[hit]]
    better = (data[None, :] > score[:, None]) | ((data[None, :] == score[:, None]) & (idx[None, :] < targets[:, None]))
    rank = 1 + better.sum(axis=1)
    # a zero-score target also trails the zero-score (unscored) documents before it
    zero = score == 0
    n_pos = int((data > 0).sum())
    rank[zero] = 1 + n_pos + targets[zero] - (idx[None, :] < targets[zero][:, None]).sum(axis=1)
    return rank


class InvertedIndex:
    """Postings of a [N, V] document matrix, stored as a [V, N] CSR matrix (row v = posting list of v).

    `max_block_entries` caps queries-per-block x documents, so a block's score rows stay within ~12 bytes
    per entry x this cap (default 2^25: ~400 MB) however large the collection."""

    def __init__(self, docs: sp.spmatrix, dtype=np.float32, max_block_entries: int = 1 << 25):
        docs = sp.csr_matrix(docs, dtype=dtype)
        docs.eliminate_zeros()
        if docs.data.size and docs.data.min() < 0:
            raise ValueError("InvertedIndex expects non-negative weights (SPLADE vectors are >= 0)")
        self.n_docs, self.vocab_size = docs.shape
        self.max_block_entries = max_block_entries
        self.postings = docs.T.tocsr()
        self.postings.sort_indices()

    def _blocks(self, queries: sp.spmatrix, block_size: int, desc: str | None) -> Iterator[tuple[int, sp.csr_matrix]]:
        queries = sp.csr_matrix(queries, dtype=self.postings.dtype)
        if queries.shape[1] != self.vocab_size:
            raise ValueError(f"query vocab size {queries.shape[1]} != index vocab size {self.vocab_size}")
        block_size = max(1, min(block_size, self.max_block_entries // max(self.n_docs, 1)))
        starts = range(0, queries.shape[0], block_size)
        for s in tqdm(starts, desc=desc, disable=desc is None or len(starts) < 2, unit="block"):
            yield s, (queries[s: s + block_size] @ self.postings).tocsr()

    def search(self, queries: sp.spmatrix, k: int, *, block_size: int = 256,
               desc: str | None = "retrieve") -> tuple[np.ndarray, np.ndarray]:
        """Document indices [M, k] (int64, -1 where fewer than k documents score > 0) and scores
        [M, k] (float32, 0 in the padding), best first."""
        m = queries.shape[0]
        top_idx = np.full((m, k), -1, dtype=np.int64)
        top_val = np.zeros((m, k), dtype=np.float32)
        for s, block in self._blocks(queries, block_size, desc):
            for r in range(block.shape[0]):
                lo, hi = block.indptr[r], block.indptr[r + 1]
                idx, val = _top_k_row(block.data[lo:hi], block.indices[lo:hi], k)
                top_idx[s + r, : idx.size], top_val[s + r, : idx.size] = idx, val
        return top_idx, top_val

    def ranks(self, queries: sp.spmatrix, targets: list[np.ndarray], *, block_size: int = 256,
              desc: str | None = None) -> list[np.ndarray]:
        """1-based rank of each target document index in the full ranking of the whole collection under the
        same order as `search` (documents with score 0 rank after all scored ones, by index)."""
        out = []
        for s, block in self._blocks(queries, block_size, desc):
            block.sort_indices()
            for r in range(block.shape[0]):
                lo, hi = block.indptr[r], block.indptr[r + 1]
                data, idx = block.data[lo:hi], block.indices[lo:hi]
                out.append(rank_in_row(data, idx, np.asarray(targets[s + r], dtype=np.int64)))
        return out
