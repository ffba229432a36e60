"""Encode collections into sparse CSR matrices with a SPLADE encoder, cached on disk.

The encoder is any object with `encode(texts, batch_size=, max_length=, top_k=) -> csr_matrix`, `model`,
`tokenizer` and `vocab_size` (`sembridge_jax.SparseEncoder`: texts sorted by token count, batches padded
to power-of-two bucket shapes, jitted). This module adds the collection layer: ids,
the vocabulary, optional top-k pruning, and a cache keyed by model weights + texts + settings, so a
corpus is encoded once and reused across runs.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field

import jax
import numpy as np
import scipy.sparse as sp
from flax import nnx

from sembridge_jax.storage import as_path, replace_file


@dataclass
class SparseCollection:
    """Encoded texts: ids[i] is row i of `matrix` [N, V]; vocab[v] is the token of dimension v."""

    ids: list[str]
    matrix: sp.csr_matrix
    vocab: list[str]
    meta: dict = field(default_factory=dict)

    def save(self, stem: str | os.PathLike) -> None:
        """`<stem>.json` (ids, vocab, meta), then `<stem>.npz` (the CSR matrix), each written whole:
        a reader that finds the `.npz` finds a finished pair (local or gs://...)."""
        npz, meta = _collection_files(stem)
        replace_file(meta, json.dumps({"ids": self.ids, "vocab": self.vocab, "meta": self.meta},
                                      ensure_ascii=False).encode())
        buf = io.BytesIO()
        sp.save_npz(buf, self.matrix, compressed=False)
        replace_file(npz, buf.getvalue())

    @classmethod
    def exists(cls, stem: str | os.PathLike) -> bool:
        return _collection_files(stem)[0].is_file()

    @classmethod
    def load(cls, stem: str | os.PathLike) -> SparseCollection:
        npz, meta = _collection_files(stem)
        info = json.loads(meta.read_text())
        matrix = sp.load_npz(io.BytesIO(npz.read_bytes())).tocsr()
        if matrix.shape != (len(info["ids"]), len(info["vocab"])):
            raise ValueError(f"{stem}.npz has shape {matrix.shape}, {stem}.json names "
                             f"{len(info['ids'])} ids x {len(info['vocab'])} tokens")
        return cls(info["ids"], matrix, info["vocab"], info.get("meta", {}))


def _collection_files(stem: str | os.PathLike):
    stem = as_path(stem)
    return stem.parent / f"{stem.name}.npz", stem.parent / f"{stem.name}.json"


def vocab_tokens(tokenizer, vocab_size: int) -> list[str]:
    """Token string of every dimension; model rows beyond the tokenizer are named `[DIM<id>]`."""
    n = min(len(tokenizer), vocab_size)
    toks = tokenizer.convert_ids_to_tokens(list(range(n)))
    return [t if t is not None else f"[DIM{i}]" for i, t in enumerate(toks)] + [f"[DIM{i}]" for i in range(n, vocab_size)]


def model_fingerprint(model) -> str:
    """Hash of every parameter's bytes: the same weights give the same key wherever they came from."""
    h = hashlib.blake2b(digest_size=16)
    for path, leaf in sorted(nnx.to_flat_state(nnx.state(model, nnx.Param)), key=lambda kv: str(kv[0])):
        arr = np.asarray(jax.device_get(leaf.value if hasattr(leaf, "value") else leaf))
        h.update(str(path).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def texts_fingerprint(ids: list[str], texts: list[str], **settings) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(settings, sort_keys=True).encode())
    for i, t in zip(ids, texts, strict=True):
        h.update(i.encode() + b"\0" + t.encode() + b"\0")
    return h.hexdigest()


class CorpusEncoder:
    """A sparse encoder (see the module docstring) plus a collection cache. `model_key` names the weights in cache keys
    (default: a hash of the parameters, so the same weights hit the cache wherever they were loaded from)."""

    def __init__(self, encoder, *, model_key: str | None = None):
        self.encoder = encoder
        self.vocab = vocab_tokens(encoder.tokenizer, encoder.vocab_size)
        self._model_key = model_key

    @property
    def model_key(self) -> str:
        """Computed on first use: runs without a cache never hash the weights."""
        if self._model_key is None:
            self._model_key = model_fingerprint(self.encoder.model)
        return self._model_key

    def encode(self, ids: list[str], texts: list[str], *, max_length: int = 256, top_k: int | None = None,
               batch_size: int = 32, cache_dir: str | os.PathLike | None = None, queries: bool = False
               ) -> SparseCollection:
        """Encode (or load from `cache_dir`) a collection; the key covers weights, ids, texts and settings.
        top_k (None/0 = off) keeps the k largest weights of each vector (the model's own pruning). `queries`:
        the texts are queries, encoded by the encoder's inference-free query weights when it has them."""
        if len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids for {len(texts)} texts")
        top_k = top_k or None
        weights = getattr(self.encoder, "query_weights", None) if queries else None
        stem = None
        if cache_dir:
            key, length = self.model_key, {"max_length": max_length}
            if weights is not None:
                digest = hashlib.sha256(np.asarray(weights).tobytes()).hexdigest()
                # static queries are not cut at max_length and need no model (api.SparseEncoder.encode_queries);
                # a connector's depend on both
                key, length = ((digest, {"max_length": None, "static": True}) if self.encoder.static_queries
                               else (f"{self.model_key}+{digest}", length))
            stem = as_path(cache_dir) / texts_fingerprint(ids, texts, model=key, top_k=top_k, **length)
            if SparseCollection.exists(stem):
                return SparseCollection.load(stem)
        if weights is not None:
            matrix = self.encoder.encode_queries(list(texts), batch_size=batch_size, max_length=max_length, top_k=top_k)
        else:
            matrix = self.encoder.encode(list(texts), batch_size=batch_size, max_length=max_length, top_k=top_k,
                                         show_progress_bar=True)
        matrix.eliminate_zeros()
        coll = SparseCollection(list(ids), matrix, self.vocab, {"max_length": max_length, "top_k": top_k})
        if stem is not None and jax.process_index() == 0:  # every process encodes the same texts
            coll.meta["model"] = self.model_key
            coll.save(stem)
        return coll
