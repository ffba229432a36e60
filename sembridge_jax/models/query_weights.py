"""Inference-free queries: a query is the set of its tokens, each with one fixed weight per vocabulary token,
scored against the model's document vectors (OpenSearch's doc-only sparse encoders, whose weight is the
token's inverse document frequency; sentence-transformers' SparseStaticEmbedding computes the same vector).

Why a transferred model wants them (BENCHMARKS.md, "Inference-free queries"): the query encoder learns the
weight of each new token from the few short labelled queries of the target language, the document encoder
from every token of every page; the corpus's own IDF is a calibrated weight for every token at no cost.
Pure numpy / scipy; the files (`idf.json`, OpenSearch's {token: weight}) are read and written by hf/."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import scipy.sparse as sp


def idf_weights(documents: Iterable[Sequence[int]], vocab_size: int, ignore: Iterable[int] = ()) -> np.ndarray:
    """float32 [vocab_size]: BM25's (Lucene's) idf of every token over `documents` (token id lists),
    ln(1 + (N - df + 0.5) / (df + 0.5)), df = the number of documents holding the token; 0 for `ignore` (the
    special tokens, which carry no meaning). A token no document holds gets the largest weight, as in BM25."""
    df = np.zeros(vocab_size, np.int64)
    n = 0
    for ids in documents:
        ids = np.unique(np.asarray(ids, np.int64))
        if ids.size and (ids[0] < 0 or ids[-1] >= vocab_size):
            raise ValueError(f"idf_weights: token id {ids[0] if ids[0] < 0 else ids[-1]} outside the vocabulary "
                             f"of {vocab_size}")
        df[ids] += 1
        n += 1
    if n == 0:
        raise ValueError("idf_weights: no documents")
    weights = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
    weights[list(ignore)] = 0.0
    return weights


def static_query_vectors(queries: Sequence[Sequence[int]], weights: np.ndarray, top_k: int | None = None
                         ) -> sp.csr_matrix:
    """csr [len(queries), len(weights)]: each distinct token of a query (token id lists) at its weight; tokens
    of weight 0 (the special tokens) drop out; `top_k` keeps a query's k heaviest (ties: the lower id)."""
    weights = np.asarray(weights, np.float32)
    indptr, cols = [0], []
    for ids in queries:
        ids = np.unique(np.asarray(ids, np.int64))
        ids = ids[weights[ids] != 0]
        if top_k:
            ids = np.sort(ids[np.argsort(-weights[ids], kind="stable")[:top_k]])
        cols.append(ids)
        indptr.append(indptr[-1] + ids.size)
    cols = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    return sp.csr_matrix((weights[cols], cols, np.asarray(indptr)), shape=(len(queries), len(weights)))


def with_static_block(vectors: sp.csr_matrix, queries: Sequence[Sequence[int]], weights: np.ndarray) -> sp.csr_matrix:
    """`vectors` [n, start + len(weights)] with its last len(weights) columns replaced by
    `static_query_vectors(queries, weights)`: a connector's LexEcho block at fixed weights, its English block
    as the model encoded it (ids of `queries` index the block)."""
    start = vectors.shape[1] - len(weights)
    if start < 0 or vectors.shape[0] != len(queries):
        raise ValueError(f"with_static_block: {vectors.shape[0]} x {vectors.shape[1]} vectors for {len(queries)} "
                         f"queries and a block of {len(weights)}")
    return sp.hstack([vectors[:, :start], static_query_vectors(queries, weights)], format="csr")
