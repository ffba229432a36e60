"""Public API: `SparseEncoder`, a Flax SPLADE encoder + tokenizer that returns scipy CSR matrices.

    from sembridge_jax import SparseEncoder
    enc = SparseEncoder.from_pretrained("naver/splade-v3")        # or a local folder
    X = enc.encode(["what causes the northern lights"], top_k=128)  # csr_matrix [1, vocab_size]
    enc.save_pretrained("out/")                                     # HF + sentence-transformers folder
    Q = enc.encode_queries(["northern lights"])  # the folder's inference-free query weights (idf.json), if any

    conn = SparseEncoder.from_pretrained("runs/connector_ko/export")  # a connector folder (export/connector.py)
    Q = conn.encode_english_queries(["셀 범위 선택"])                # [1, English vocabulary]: for an English index
    Q = conn.encode_queries(["셀 범위 선택"])  # with the folder's idf.json: the LexEcho block at the tokens' IDF

Encoding is jitted. Texts are sorted by length and batched; each batch is padded to a bucketed
shape (rows: a power of two up to batch_size; tokens: a power of two >= 8, capped at max_length),
so a corpus compiles only a handful of shapes.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from flax import nnx
from tqdm.auto import tqdm

from sembridge_jax.export.connector import is_connector_folder, load_connector, load_memory
from sembridge_jax.hf.hub import resolve_model_dir
from sembridge_jax.hf.load import load_pretrained
from sembridge_jax.hf.save import read_query_weights, save_pretrained
from sembridge_jax.models import EncoderConfig, MaskedLMEncoder
from sembridge_jax.models.connector import ConnectorSparseEncoder, static_width
from sembridge_jax.models.memory import ParallelMemory
from sembridge_jax.models.query_weights import static_query_vectors, with_static_block

MIN_TOKENS = 8


def bucket(n: int, cap: int, floor: int = 1) -> int:
    """The smallest power of two >= max(n, floor), capped at `cap`."""
    n = max(int(n), floor, 1)
    return min(cap, 1 << (n - 1).bit_length())


@partial(jax.jit, static_argnums=(0, 5, 6))
def _splade_batch(graphdef, state, input_ids, attention_mask, token_type_ids, top_k, chunk_size):
    model = nnx.merge(graphdef, state)
    return model.splade(input_ids, attention_mask, token_type_ids, top_k=top_k, chunk_size=chunk_size)


@partial(jax.jit, static_argnums=(0,))
def _english_batch(graphdef, state, input_ids, attention_mask):
    """A connector model's English block [B, V_en] and the mean of the bridge states [B, d_b] (the memory's pool)."""
    model = nnx.merge(graphdef, state)
    states = model.bridge_states(input_ids, attention_mask)
    m = attention_mask.astype(jnp.float32)[..., None]
    pools = (states.astype(jnp.float32) * m).sum(1) / jnp.maximum(m.sum(1), 1.0)
    return model.english_from_states(states, attention_mask), pools


class SparseEncoder:
    """A Flax NNX SPLADE encoder with its tokenizer (see the module docstring)."""

    def __init__(self, model: MaskedLMEncoder, tokenizer, memory: ParallelMemory | None = None,
                 query_weights: np.ndarray | None = None):
        if not model.config.mlm_head:
            raise ValueError("SparseEncoder needs a model with an MLM head (config.mlm_head is False)")
        if query_weights is not None and np.shape(query_weights) != (static_width(model),):
            raise ValueError(f"query_weights: expected shape ({static_width(model)},), got {np.shape(query_weights)}")
        self.model = model
        self.tokenizer = tokenizer
        self.memory = memory  # a connector folder's parallel memory (encode_english_queries)
        self.query_weights = query_weights  # inference-free queries (encode_queries), models/query_weights.py

    @classmethod
    def from_pretrained(cls, path_or_id: str | Path, *, dtype: str = "float32", **config_overrides) -> SparseEncoder:
        """Load tokenizer + model from a local folder or a hub id (see hf.load.load_pretrained); a connector
        folder (export/connector.py) gives the connector model with its bridge tokenizer."""
        if is_connector_folder(path_or_id):
            model, bridge_tokenizer, _ = load_connector(path_or_id, dtype=dtype)
            return cls(model, bridge_tokenizer, load_memory(path_or_id),
                       read_query_weights(path_or_id, bridge_tokenizer, model.config.bridge_vocab))
        model, tokenizer, _ = load_pretrained(path_or_id, dtype=dtype, **config_overrides)
        return cls(model, tokenizer, query_weights=read_query_weights(resolve_model_dir(path_or_id), tokenizer,
                                                                      model.config.vocab_size))

    @property
    def config(self) -> EncoderConfig:
        return self.model.config

    @property
    def static_queries(self) -> bool:
        """Whether `encode_queries` runs no model: query weights on a vocabulary model (a connector's English
        block is the model's)."""
        return self.query_weights is not None and not isinstance(self.model, ConnectorSparseEncoder)

    @property
    def vocab_size(self) -> int:
        return self.model.config.vocab_size

    def _pad_id(self) -> int:
        pad = getattr(self.tokenizer, "pad_token_id", None)
        return self.config.pad_token_id if pad is None else int(pad)

    def tokenize(self, texts: list[str], max_length: int) -> list[dict[str, list[int]]]:
        """Per-text token ids (and token type ids), truncated to max_length, unpadded."""
        enc = self.tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
        types = enc.get("token_type_ids")
        return [{"input_ids": ids, "token_type_ids": types[i] if types is not None else [0] * len(ids)}
                for i, ids in enumerate(enc["input_ids"])]

    def _batch_arrays(self, items: list[dict], rows: int, length: int):
        ids = np.full((rows, length), self._pad_id(), np.int32)
        mask = np.zeros((rows, length), np.int32)
        types = np.zeros((rows, length), np.int32)
        for r, item in enumerate(items):
            n = len(item["input_ids"])
            ids[r, :n] = item["input_ids"]
            mask[r, :n] = 1
            types[r, :n] = item["token_type_ids"]
        return jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(types)

    def encode(self, texts: list[str], batch_size: int = 32, max_length: int = 256, top_k: int | None = None,
               chunk_size: int | None = None, show_progress_bar: bool = False) -> sp.csr_matrix:
        """SPLADE vectors of `texts` as a csr_matrix [len(texts), vocab_size] (columns = vocab ids).

        Texts are truncated to max_length tokens (capped at what the position table covers).
        top_k keeps the k largest weights per text; chunk_size overrides the config's head chunking.
        """
        if isinstance(texts, str):
            raise TypeError("encode expects a list of texts, not a single string")
        if len(texts) == 0:
            return sp.csr_matrix((0, self.vocab_size), dtype=np.float32)
        chunk = self.config.splade_chunk_size if chunk_size is None else chunk_size
        graphdef, state = nnx.split(self.model)
        back, batches = self._sorted_batches(texts, batch_size, max_length, show_progress_bar)
        blocks = []
        for n, ids, mask, types in batches:
            out = _splade_batch(graphdef, state, ids, mask, types if self.config.type_vocab_size else None,
                                top_k, chunk)
            blocks.append(sp.csr_matrix(np.asarray(out)[:n], dtype=np.float32))
        return sp.vstack(blocks, format="csr")[back]

    def encode_queries(self, texts: list[str], batch_size: int = 32, max_length: int = 64, top_k: int | None = None,
                       show_progress_bar: bool = False) -> sp.csr_matrix:
        """Query vectors: with query weights (a folder with idf.json) each distinct token of the text at its
        weight, no model run (inference-free; the whole text up to the tokenizer's model_max_length, as
        sentence-transformers' SparseStaticEmbedding reads it: max_length bounds only the model's input);
        else `encode`. A connector model with query weights: its English block as `encode` gives it, its
        LexEcho block the weights of the tokens the model read (max_length; top_k acts before the block is
        replaced)."""
        if not self.static_queries:
            vectors = self.encode(texts, batch_size=batch_size, max_length=max_length, top_k=top_k,
                                  show_progress_bar=show_progress_bar)
            if self.query_weights is None or not len(texts):
                return vectors
            read = self.tokenizer(list(texts), truncation=True, max_length=min(max_length, self.config.max_tokens))
            return with_static_block(vectors, read["input_ids"], self.query_weights)
        if isinstance(texts, str):
            raise TypeError("encode_queries expects a list of texts, not a single string")
        ids = self.tokenizer(list(texts), truncation=True, add_special_tokens=False)["input_ids"] if texts else []
        return static_query_vectors(ids, self.query_weights, top_k)

    def encode_english_queries(self, texts: list[str], batch_size: int = 32, max_length: int = 32,
                               show_progress_bar: bool = False) -> sp.csr_matrix:
        """A connector model's query vectors for an existing English index: csr_matrix [len(texts), English
        vocabulary], the English block plus, when the folder has a parallel memory, its vector
        (models/memory.py). Texts are truncated to max_length bridge tokens."""
        if not isinstance(self.model, ConnectorSparseEncoder):
            raise TypeError("encode_english_queries needs a connector model (a folder with connector_config.json)")
        if isinstance(texts, str):
            raise TypeError("encode_english_queries expects a list of texts, not a single string")
        if len(texts) == 0:
            return sp.csr_matrix((0, self.model.config.english_size), dtype=np.float32)
        graphdef, state = nnx.split(self.model)
        back, batches = self._sorted_batches(texts, batch_size, max_length, show_progress_bar)
        english, pools = [], []
        for n, ids, mask, _ in batches:
            e, p = _english_batch(graphdef, state, ids, mask)
            english.append(sp.csr_matrix(np.asarray(e)[:n], dtype=np.float32))
            pools.append(np.asarray(p)[:n])
        out = sp.vstack(english, format="csr")[back]
        return out if self.memory is None else self.memory.add_to(out, np.concatenate(pools)[back])

    def _sorted_batches(self, texts: list[str], batch_size: int, max_length: int, show_progress_bar: bool):
        """`texts` tokenised (max_length capped at what the position table covers), sorted by length and padded
        to bucketed shapes: (the row order that undoes the sort, an iterator of (real rows, ids, mask, types))."""
        max_length = min(max_length, self.config.max_tokens)
        items = self.tokenize(texts, max_length)
        order = np.argsort([len(it["input_ids"]) for it in items], kind="stable")

        def batches():
            for s in tqdm(range(0, len(items), batch_size), desc="encode", disable=not show_progress_bar):
                batch = [items[i] for i in order[s:s + batch_size]]
                length = bucket(max(len(b["input_ids"]) for b in batch), max_length, MIN_TOKENS)
                yield (len(batch), *self._batch_arrays(batch, bucket(len(batch), batch_size), length))

        return np.argsort(order), batches()

    def save_pretrained(self, out_dir: str | Path, *, pooling: str | None = None) -> Path:
        """Write a folder that transformers and sentence_transformers.SparseEncoder load as is."""
        return save_pretrained(self.model, self.tokenizer, out_dir, pooling=pooling, query_weights=self.query_weights)
