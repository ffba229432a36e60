"""One evaluation of a retriever on a benchmark: encode (cached), retrieve through the inverted index,
score; plus the BM25 reference and the English-inclination metrics of a mixed pool."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from sembridge_jax.data.retrieval import RetrievalDataset
from sembridge_jax.evaluation.bm25 import BM25Retriever, bm25_tokens
from sembridge_jax.evaluation.encode import CorpusEncoder, SparseCollection
from sembridge_jax.evaluation.inclination import inclination_metrics
from sembridge_jax.evaluation.index import InvertedIndex
from sembridge_jax.evaluation.metrics import (
    DEFAULT_MEASURES,
    active_dims,
    flops,
    mean_metrics,
    measure_problem,
)

log = logging.getLogger(__name__)


@dataclass
class EvalSettings:
    """depth: documents retrieved per query (>= every metric cutoff); *_top_k: inference pruning, 0 = off;
    complete_at: the K of Complete@K; inclination: also report Max@R / Complete@K (mixed pools)."""

    measures: tuple[str, ...] = DEFAULT_MEASURES
    depth: int = 100
    batch_size: int = 64
    query_max_length: int = 64
    doc_max_length: int = 256
    query_top_k: int = 0
    doc_top_k: int = 0
    block_size: int = 256
    cache_dir: str | None = None
    inclination: bool = False
    complete_at: tuple[int, ...] = (10, 100)

    def __post_init__(self):
        problems = [p for p in map(measure_problem, self.measures) if p]
        if problems:
            raise ValueError("; ".join(problems))
        cutoffs = [int(m.rsplit("@", 1)[1]) for m in self.measures if "@" in m and m.rsplit("@", 1)[1].isdigit()]
        if cutoffs and max(cutoffs) > self.depth:
            raise ValueError(f"depth {self.depth} is below the metric cutoff {max(cutoffs)} ({self.measures})")


def check_dataset(ds: RetrievalDataset) -> None:
    """A benchmark that can be scored: documents, a judged query with a relevant document, no empty judged
    query; else a ValueError naming it (metrics would be 0 or NaN). Queries without a relevant document are
    left out of the means (a counted warning)."""
    if not ds.corpus:
        raise ValueError(f"{ds.name}: empty corpus")
    judged = [q for q in ds.queries if any(g > 0 for g in ds.qrels.get(q, {}).values())]
    if not judged:
        raise ValueError(f"{ds.name}: no judged query with a relevant document")
    if len(judged) < len(ds.queries):
        log.warning("%s: %d of %d queries have no relevant document and are left out of the metrics", ds.name,
                    len(ds.queries) - len(judged), len(ds.queries))
    empty = [q for q in judged if not ds.queries[q].strip()]
    if empty:
        raise ValueError(f"{ds.name}: empty query text for query ids {empty[:5]}")


def run_from_indices(ds: RetrievalDataset, top_idx: np.ndarray) -> dict[str, list[str]]:
    """Ranked doc ids per query from a [M, k] index matrix (-1 = no document)."""
    ids = ds.doc_ids()
    return {q: [ids[i] for i in row if i >= 0] for q, row in zip(ds.queries, top_idx, strict=True)}


def relevant_indices(ds: RetrievalDataset) -> list[np.ndarray]:
    """Per query (in ds.queries order), the corpus positions of its relevant documents."""
    pos = {d: i for i, d in enumerate(ds.corpus)}
    missing = [(q, d) for q in ds.queries for d, g in ds.qrels[q].items() if g > 0 and d not in pos]
    if missing:
        raise ValueError(f"{ds.name}: relevant documents missing from the corpus, e.g. {missing[:3]}")
    return [np.array(sorted(pos[d] for d, g in ds.qrels[q].items() if g > 0)) for q in ds.queries]


def _finish(row: dict, ds: RetrievalDataset, run, settings: EvalSettings, ranks=None) -> dict:
    row.update({"dataset": ds.name, "num_queries": len(ds.queries), "num_docs": len(ds.corpus)})
    row.update(mean_metrics(ds.qrels, run, settings.measures))
    if ranks is not None:
        row.update(inclination_metrics(dict(zip(ds.queries, ranks, strict=True)), settings.complete_at))
    return row


def encode_dataset(encoder: CorpusEncoder, ds: RetrievalDataset, settings: EvalSettings
                   ) -> tuple[SparseCollection, SparseCollection]:
    """(queries, documents) as sparse collections, through the encoder's disk cache."""
    q = encoder.encode(list(ds.queries), list(ds.queries.values()), max_length=settings.query_max_length,
                       top_k=settings.query_top_k, batch_size=settings.batch_size, cache_dir=settings.cache_dir,
                       queries=True)
    d = encoder.encode(ds.doc_ids(), ds.doc_texts(), max_length=settings.doc_max_length, top_k=settings.doc_top_k,
                       batch_size=settings.batch_size, cache_dir=settings.cache_dir)
    return q, d


def evaluate_sparse(queries: SparseCollection, docs: SparseCollection, ds: RetrievalDataset,
                    settings: EvalSettings, name: str) -> dict:
    """Metrics, sparsity and FLOPS of encoded queries/documents retrieved through the inverted index."""
    check_dataset(ds)
    t0 = time.perf_counter()
    index = InvertedIndex(docs.matrix)
    top_idx, _ = index.search(queries.matrix, settings.depth, block_size=settings.block_size)
    ranks = index.ranks(queries.matrix, relevant_indices(ds), block_size=settings.block_size) \
        if settings.inclination else None
    row = {"model": name, "query_active_dims": active_dims(queries.matrix),
           "doc_active_dims": active_dims(docs.matrix), "flops": flops(queries.matrix, docs.matrix),
           "retrieve_s": time.perf_counter() - t0}
    return _finish(row, ds, run_from_indices(ds, top_idx), settings, ranks)


def evaluate_encoder(encoder: CorpusEncoder, ds: RetrievalDataset, settings: EvalSettings, name: str) -> dict:
    """Encode (cached) and evaluate one SPLADE model on one benchmark."""
    check_dataset(ds)  # before the encoding
    t0 = time.perf_counter()
    q, d = encode_dataset(encoder, ds, settings)
    encode_s = time.perf_counter() - t0
    return {**evaluate_sparse(q, d, ds, settings, name), "encode_s": encode_s}


def evaluate_ranking(ds: RetrievalDataset, settings: EvalSettings, name: str, rank) -> dict:
    """Any retriever given as `rank(queries, documents, depth) -> [M, depth] document indices (-1 = none)`,
    e.g. evaluation.mining.BridgeRanking(...).rank (the bridge as a dense retriever), scored like BM25."""
    check_dataset(ds)
    t0 = time.perf_counter()
    top_idx = rank(list(ds.queries.values()), ds.doc_texts(), settings.depth)
    row = {"model": name, "retrieve_s": time.perf_counter() - t0}
    return _finish(row, ds, run_from_indices(ds, top_idx), settings)


def evaluate_bm25(ds: RetrievalDataset, settings: EvalSettings, name: str = "BM25", analyser=bm25_tokens) -> dict:
    """The BM25 reference run (see evaluation/bm25.py for the default tokenisation; `analyser`: text -> terms)."""
    check_dataset(ds)
    t0 = time.perf_counter()
    bm25 = BM25Retriever(ds.doc_texts(), analyser=analyser)
    queries = list(ds.queries.values())
    top_idx, _ = bm25.search(queries, settings.depth)
    ranks = bm25.ranks(queries, relevant_indices(ds)) if settings.inclination else None
    row = {"model": name, "retrieve_s": time.perf_counter() - t0}
    return _finish(row, ds, run_from_indices(ds, top_idx), settings, ranks)
