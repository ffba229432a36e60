"""Queries/s of our inverted-index retrieval vs the retrieval path of sentence-transformers'
SparseInformationRetrievalEvaluator, on the same synthetic SPLADE-like vectors, with a top-10 check.

    python benchmarks/bench_retrieval.py                      # 10k, 100k and 1M documents
    python benchmarks/bench_retrieval.py --sizes 10000 100000 # skip 1M (memory/time on small machines)

Synthetic vectors: documents have 110-220 term draws, queries 20-40, from a Zipfian distribution over a
30522-term vocabulary (p(rank r) ~ r^-0.9, ranks shuffled once), weights log1p(lognormal) like SPLADE's
log-saturated activations; duplicate draws merge, giving ~138 active dims per document, ~28 per query and
FLOPS ~5.3 (sentence-transformers' SPLADE example on NFCorpus: 206 / 40 / 4.66).
The sentence-transformers path is the evaluator's inner loop (sentence_transformer/evaluation/
information_retrieval.py, compute_all_metrics): `util.dot_score` on torch sparse COO tensors per corpus
chunk of 50000 documents, then `torch.topk`, merged across chunks; its tie-handling branch is not timed
(continuous random weights have no ties).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
import scipy.sparse as sp
import torch
from sentence_transformers.util import dot_score

from sembridge_jax.evaluation.index import InvertedIndex
from sembridge_jax.evaluation.metrics import active_dims, flops


def synthetic_vectors(n: int, lo: int, hi: int, vocab: int, zipf: float, rng: np.random.Generator,
                      perm: np.ndarray) -> sp.csr_matrix:
    """[n, vocab] CSR with lo..hi Zipf-distributed term draws per row (duplicates merged)."""
    p = np.arange(1, vocab + 1, dtype=np.float64) ** -zipf
    cdf = np.cumsum(p / p.sum())
    counts = rng.integers(lo, hi + 1, size=n)
    rows = np.repeat(np.arange(n), counts)
    cols = perm[np.minimum(np.searchsorted(cdf, rng.random(rows.size)), vocab - 1)]
    vals = np.log1p(rng.lognormal(0.0, 0.6, size=rows.size)).astype(np.float32)
    m = sp.csr_matrix((vals, (rows, cols)), shape=(n, vocab), dtype=np.float32)
    m.sum_duplicates()
    return m


def to_torch_sparse(x: sp.csr_matrix) -> torch.Tensor:
    c = x.tocoo()
    idx = torch.from_numpy(np.vstack([c.row, c.col]).astype(np.int64))
    return torch.sparse_coo_tensor(idx, torch.from_numpy(c.data), c.shape, check_invariants=False).coalesce()


def st_retrieve(queries: sp.csr_matrix, docs: sp.csr_matrix, k: int, chunk: int = 50000) -> np.ndarray:
    """The evaluator's loop: dot_score per corpus chunk, torch.topk, merge by (-score, index)."""

    q = to_torch_sparse(queries)
    best_v = torch.full((queries.shape[0], 0), -1.0)
    best_i = torch.zeros((queries.shape[0], 0), dtype=torch.long)
    for start in range(0, docs.shape[0], chunk):
        d = to_torch_sparse(docs[start: start + chunk])
        scores = dot_score(q, d)
        v, i = torch.topk(scores, min(k, scores.shape[1]), dim=1, largest=True, sorted=False)
        best_v, best_i = torch.cat([best_v, v], 1), torch.cat([best_i, i + start], 1)
        keep = torch.topk(best_v, min(k, best_v.shape[1]), dim=1).indices
        best_v, best_i = best_v.gather(1, keep), best_i.gather(1, keep)
    order = np.lexsort((best_i.numpy(), -best_v.numpy()), axis=1)
    return np.take_along_axis(best_i.numpy(), order, 1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--st-queries", type=int, default=200, help="queries timed on the slower ST path")
    ap.add_argument("--vocab", type=int, default=30522)
    ap.add_argument("--zipf", type=float, default=0.9)
    ap.add_argument("--doc-draws", type=int, nargs=2, default=[110, 220])
    ap.add_argument("--query-draws", type=int, nargs=2, default=[20, 40])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--block-size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, os.cpu_count() or 1))  # both sides may use every core
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(args.vocab)
    queries = synthetic_vectors(args.queries, *args.query_draws, args.vocab, args.zipf, rng, perm)
    rows = []
    for n in args.sizes:
        docs = synthetic_vectors(n, *args.doc_draws, args.vocab, args.zipf, rng, perm)
        t0 = time.perf_counter()
        index = InvertedIndex(docs)
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        ours, _ = index.search(queries, args.k, block_size=args.block_size, desc=None)
        t_ours = time.perf_counter() - t0
        nq_st = min(args.st_queries, args.queries)
        st_retrieve(queries[:2], docs[:1000], args.k)  # warm-up outside the timing
        t0 = time.perf_counter()
        theirs = st_retrieve(queries[:nq_st], docs, args.k)
        t_st = time.perf_counter() - t0
        row = {"docs": n, "doc_active_dims": round(active_dims(docs), 1),
               "query_active_dims": round(active_dims(queries), 1), "flops": round(flops(queries, docs), 2),
               "index_build_s": round(t_build, 2), "ours_qps": round(args.queries / t_ours, 1),
               "st_qps": round(nq_st / t_st, 1), "speedup": round((args.queries / t_ours) / (nq_st / t_st), 1),
               "identical_top_k": bool((ours[:nq_st] == theirs).all())}
        rows.append(row)
        print(json.dumps(row), flush=True)
        del docs, index
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
