"""BM25 reference run (bm25s, k1 = 1.2, b = 0.75, Lucene IDF) with the kit's tokenisation.

Tokens of a text: its lower-cased words (regex \\w+), where every Hangul run inside a word is replaced
by its character bigrams (a one-syllable run stays a unigram) and the word's non-Hangul pieces stay
words: "서울은 abc한국" -> 서울, 울은, abc, 한국. Korean then matches across particles and compounds
without a morphological analyser. This reproduces the kit's BM25 reference numbers exactly
(ko/lohelp dev nDCG@10 0.583 / R@100 0.945, debfaq/ko 0.454 / 0.933, lohelp-en 0.585 / 0.919).
"""
from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from sembridge_jax.evaluation.index import rank_in_row

_WORD = re.compile(r"\w+")
_HANGUL = re.compile(r"[\uac00-\ud7a3]+")


def bm25_tokens(text: str) -> list[str]:
    """Lower-cased words; Hangul runs inside them become character bigrams."""
    out = []
    for word in _WORD.findall(text.lower()):
        runs = _HANGUL.findall(word)
        if not runs:
            out.append(word)
            continue
        out.extend(_HANGUL.sub(" ", word).split())
        for r in runs:
            out.extend([r] if len(r) == 1 else [r[i: i + 2] for i in range(len(r) - 1)])
    return out


class BM25Retriever:
    """bm25s index over documents; `search` returns document indices [M, k] (-1 padded) and scores, best first,
    ties broken by lower document index (scores are re-sorted after bm25s' top-k). `analyser` turns a text
    into its terms (default `bm25_tokens`; e.g. a subword tokenizer's `tokenize`)."""

    def __init__(self, texts: list[str], *, k1: float = 1.2, b: float = 0.75,
                 analyser: Callable[[str], list[str]] = bm25_tokens):
        import bm25s  # heavy optional: seconds of import time, only for BM25 reference runs

        self.n_docs = len(texts)
        self.analyser = analyser
        self.model = bm25s.BM25(k1=k1, b=b, method="lucene")
        self.model.index([analyser(t) for t in texts], show_progress=False)

    def _query_tokens(self, queries: list[str]) -> list[list[str]]:
        vocab = self.model.vocab_dict
        return [[t for t in self.analyser(q) if t in vocab and t] for q in queries]

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        k_eff = min(k, self.n_docs)
        toks = self._query_tokens(queries)
        idx = np.full((len(queries), k), -1, dtype=np.int64)
        val = np.zeros((len(queries), k), dtype=np.float32)
        for r, q in enumerate(toks):
            if not q:  # no query token occurs in the corpus: nothing is retrieved
                continue
            d, s = (a[0] for a in self.model.retrieve([q], k=k_eff, show_progress=False))
            keep = s > 0
            d, s = d[keep], s[keep]
            order = np.lexsort((d, -s))
            idx[r, : order.size], val[r, : order.size] = d[order], s[order]
        return idx, val

    def ranks(self, queries: list[str], targets: list[np.ndarray]) -> list[np.ndarray]:
        """1-based ranks of target document indices in each query's full ranking (order as in `search`)."""
        out = []
        for q, t in zip(self._query_tokens(queries), targets, strict=True):
            scores = self.model.get_scores(q) if q else np.zeros(self.n_docs, dtype=np.float32)
            idx = np.flatnonzero(scores > 0)
            out.append(rank_in_row(scores[idx], idx, np.asarray(t, dtype=np.int64)))
        return out
