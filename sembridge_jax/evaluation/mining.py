"""BM25 hard negatives for training, with the project's BM25 (evaluation/bm25.py), cached beside the data.

For each query: the BM25 top `depth` documents, minus EVERY known positive of the query (qrels
grade > 0; judged non-relevant documents, grade <= 0, are fine negatives), minus the first
`skip_top` of what remains; from that pool `count` documents are drawn uniformly without
replacement with a generator seeded by (seed, query id), and returned in BM25 rank order.
Sampling from the top rather than taking the very top ones follows DPR / RocketQA / Tevatron
practice: the highest-ranked unjudged documents are often unlabelled positives (RocketQA measured
that most of a strong retriever's top "negatives" on MS MARCO are false negatives), and spreading
over the top `depth` keeps the negatives hard without betting on the few most suspect ones;
`skip_top` drops those outright. A query whose pool holds fewer than `count` documents (few or no
BM25 hits) is filled with seeded uniformly random non-positive documents, so every query gets
`count` negatives whenever the corpus has that many non-positives.

Documents are indexed in sorted id order and each query has its own generator, so the result
depends only on the content (not on dict order or on the other queries). The cache file
`bm25_negatives_<hash>.json` is keyed by a hash of everything that determines the result.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import zlib
from collections.abc import Mapping

import numpy as np

from sembridge_jax.data.retrieval import RetrievalDataset
from sembridge_jax.evaluation.bm25 import BM25Retriever
from sembridge_jax.storage import as_path, replace_file

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the mining procedure changes: old cache files stop matching


def _settings(depth: int, count: int, seed: int, skip_top: int, k1: float, b: float) -> dict:
    return {"format": CACHE_FORMAT, "depth": depth, "count": count, "seed": seed, "skip_top": skip_top,
            "bm25": {"k1": k1, "b": b, "method": "lucene", "tokens": "bm25_tokens"}}


def cache_key(queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]],
              corpus: Mapping[str, Mapping[str, str]], settings: Mapping) -> str:
    """sha256 of the content of queries, qrels, corpus (key order ignored) and the mining settings."""
    payload = {"queries": queries, "qrels": qrels, "corpus": corpus, "settings": settings}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _check(queries, corpus, depth: int, count: int, skip_top: int) -> None:
    if not corpus:
        raise ValueError("mine_negatives: the corpus is empty (hard-negative mining needs the documents)")
    if not queries:
        raise ValueError("mine_negatives: no queries")
    if count < 1 or skip_top < 0 or depth < skip_top + count:
        raise ValueError(f"mine_negatives: need count >= 1, skip_top >= 0 and depth >= skip_top + count, "
                         f"got depth={depth}, count={count}, skip_top={skip_top}")


def _random_fill(rng: np.random.Generator, n_docs: int, exclude: set[int], needed: int) -> list[int]:
    """`needed` distinct document indices outside `exclude`, uniformly at random (fewer if not enough)."""
    draw = rng.choice(n_docs, size=min(n_docs, needed + len(exclude)), replace=False)
    return [int(i) for i in draw if i not in exclude][:needed]


def _mine(queries, qrels, corpus, depth, count, seed, skip_top, k1, b) -> dict[str, list[str]]:
    doc_ids = sorted(corpus)
    texts = RetrievalDataset("", {d: corpus[d] for d in doc_ids}, {}, {}).doc_texts()
    position = {d: i for i, d in enumerate(doc_ids)}
    qids = sorted(queries)
    ranked, _ = BM25Retriever(texts, k1=k1, b=b).search([queries[q] for q in qids], depth)
    out, filled = {}, 0
    for qid, row in zip(qids, ranked, strict=True):
        positives = {position[d] for d, grade in qrels.get(qid, {}).items() if grade > 0 and d in position}
        pool = [int(i) for i in row if i >= 0 and i not in positives][skip_top:]
        rng = np.random.default_rng([seed, zlib.crc32(qid.encode())])
        if len(pool) >= count:
            picked = [pool[i] for i in np.sort(rng.choice(len(pool), count, replace=False))]
        else:
            picked = pool + _random_fill(rng, len(doc_ids), positives | set(pool), count - len(pool))
            filled += 1
        out[qid] = [doc_ids[i] for i in picked]
    if filled:
        log.info("mine_negatives: %d of %d queries had fewer than %d BM25 negatives in the top %d; "
                 "filled with random documents", filled, len(qids), count, depth)
    return out


def mine_negatives(queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]],
                   corpus: Mapping[str, Mapping[str, str]], *, depth: int = 100, count: int = 8,
                   seed: int = 0, skip_top: int = 0, k1: float = 1.2, b: float = 0.75,
                   cache_dir: str | os.PathLike | None = None) -> dict[str, list[str]]:
    """{query id: [document id, ...]} BM25 hard negatives for every query (see the module docstring).

    queries {qid: text}; qrels {qid: {docid: grade}} (grade > 0 = positive, never returned);
    corpus {docid: {"title", "text"}}. With `cache_dir` (e.g. the BEIR folder the data came from),
    the result is read from / written to `cache_dir/bm25_negatives_<hash16>.json`: reused while
    the inputs and settings are unchanged, rebuilt (a new file) when any of them changes.
    """
    _check(queries, corpus, depth, count, skip_top)
    settings = _settings(depth, count, seed, skip_top, k1, b)
    cache = None
    if cache_dir is not None:
        key = cache_key(queries, qrels, corpus, settings)
        cache = as_path(cache_dir) / f"bm25_negatives_{key[:16]}.json"
        if cache.is_file():
            stored = json.loads(cache.read_text(encoding="utf-8"))
            if stored.get("key") == key:
                log.info("mine_negatives: reusing %s", cache)
                return stored["negatives"]
    negatives = _mine(queries, qrels, corpus, depth, count, seed, skip_top, k1, b)
    if cache is not None:
        record = {"key": key, "settings": settings, "negatives": negatives}
        replace_file(cache, json.dumps(record, ensure_ascii=False).encode("utf-8"))
        log.info("mine_negatives: wrote %s", cache)
    return negatives
