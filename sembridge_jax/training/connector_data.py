"""Inputs of the connector stages: the frozen multilingual encoder's token states (cached on disk, fp16),
the English teacher's raw max-pooled logits, and the batch streams `trainer.fit` reads.

Both frozen models run once per text: `bridge_states` caches the bridge's last-layer states of a text
list as one ragged fp16 array under `<cache_dir>/states_<key>.npz`, key = hash(bridge identity, max
length, prefix, every text); `teacher_logits` caches the English SPLADE's positive raw max-pooled MLM
logits (a CSR matrix; SPLADE weight = log1p(value)) the same way. Every stage then reads only caches.

The batch streams follow `batches.TrainData`'s contract (`next_batch()`, `state()`, `restore()` through a
`batches.ShardedOrder`), pad/truncate to one static length per stream, and carry states as float16.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from flax import nnx
from tqdm.auto import tqdm

from sembridge_jax.models.heads import masked_max_logits
from sembridge_jax.storage import as_path, replace_file
from sembridge_jax.training.batches import ShardedOrder
from sembridge_jax.training.distributed import process_slot

ROWS_TOKENS = 4096  # rows x tokens per frozen-model batch (rows: a power of two)
LENGTH_STEP = 64  # padded lengths above this are its multiples (bucket_length)


def cache_key(identity: str, texts: Sequence[str], **settings) -> str:
    h = hashlib.blake2b(digest_size=12)
    h.update(identity.encode() + b"\0" + repr(sorted(settings.items())).encode())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()


@dataclasses.dataclass
class RaggedStates:
    """Token states of N texts: flat [T, d] float16, offsets [N + 1] (text i is flat[offsets[i]:offsets[i+1]]),
    and the bridge token ids they belong to, ids [T] int32 (LexEcho pools the echo weights per id)."""

    flat: np.ndarray
    offsets: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def batch(self, rows: Sequence[int], length: int) -> tuple[np.ndarray, np.ndarray]:
        """([R, length, d] float16, [R, length] int32 mask) for texts `rows`, truncated/padded to `length`."""
        x = np.zeros((len(rows), length, self.flat.shape[1]), np.float16)
        m = np.zeros((len(rows), length), np.int32)
        for r, i in enumerate(rows):
            s, e = self.offsets[i], min(self.offsets[i + 1], self.offsets[i] + length)
            x[r, :e - s] = self.flat[s:e]
            m[r, :e - s] = 1
        return x, m

    def token_values(self, values: np.ndarray, rows: Sequence[int], length: int) -> np.ndarray:
        """[R, length] of a per-token array aligned with `flat` (e.g. `ids`), truncated/zero-padded like `batch`."""
        out = np.zeros((len(rows), length), values.dtype)
        for r, i in enumerate(rows):
            s, e = self.offsets[i], min(self.offsets[i + 1], self.offsets[i] + length)
            out[r, :e - s] = values[s:e]
        return out

    def id_lists(self, length: int) -> list[np.ndarray]:
        """Each text's bridge token ids, truncated to `length` like `batch`."""
        return [self.ids[s:min(e, s + length)] for s, e in zip(self.offsets[:-1], self.offsets[1:], strict=True)]

    def means(self) -> np.ndarray:
        """[N, d] float32 mean of each text's states (the parallel memory's pools, models/memory.py)."""
        sums = np.add.reduceat(self.flat.astype(np.float32), self.offsets[:-1], axis=0)
        return sums / np.maximum(np.diff(self.offsets), 1)[:, None]

    def head(self, n: int) -> RaggedStates:
        """The first n texts (a view: a prefix of a cached list needs no second cache entry)."""
        n = min(n, len(self))
        return RaggedStates(self.flat[:self.offsets[n]], self.offsets[:n + 1], self.ids[:self.offsets[n]])

    @classmethod
    def concat(cls, parts: Sequence[RaggedStates]) -> RaggedStates:
        """The texts of every part, in order (e.g. English texts + the target sides of parallel pairs)."""
        lens = np.concatenate([np.diff(p.offsets) for p in parts])
        return cls(np.concatenate([p.flat for p in parts]), np.concatenate([[0], np.cumsum(lens)]).astype(np.int64),
                   np.concatenate([p.ids for p in parts]))


def _save_npz(path, **arrays) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    replace_file(path, buf.getvalue())


def bucket(n: int, cap: int, floor: int = 1) -> int:
    """The smallest power of two >= max(n, floor), capped at `cap`."""
    return min(cap, 1 << (max(int(n), floor, 1) - 1).bit_length())


def bucket_length(n: int, cap: int) -> int:
    """A padded token length: a power of two >= 8 up to LENGTH_STEP, then the next multiple of LENGTH_STEP,
    capped at `cap`. Powers of two all the way padded pages of 257-512 tokens to 512: 25 % of the frozen
    encoders' work on the kit's pages was padding (9 % with steps of 64, for a few more compiled shapes)."""
    n = max(int(n), 8)
    return min(cap, bucket(n, cap) if n <= LENGTH_STEP else -(-n // LENGTH_STEP) * LENGTH_STEP)


def _length_batches(lengths: np.ndarray, max_length: int):
    """Text indices in length order, grouped ROWS_TOKENS // (the padded length of a group's shortest text) at
    a time, with the padded (rows, length) of each group, the length that of its longest (`bucket_length`):
    a handful of compiled shapes. A corpus's texts come close in length once sorted; a group spanning several
    lengths (few texts, spread widely) is padded to its longest."""
    order = np.argsort(lengths, kind="stable")
    s = 0
    while s < len(order):
        length = bucket_length(int(lengths[order[s]]), max_length)
        rows = max(1, ROWS_TOKENS // length)
        idx = order[s:s + rows]
        length = bucket_length(int(lengths[idx].max()), max_length)
        idx = idx[lengths[idx] <= length] if lengths[idx].max() > length else idx
        yield idx, bucket(len(idx), rows), length
        s += len(idx)


def _padded(tokens: list[list[int]], idx, rows: int, length: int, pad: int) -> tuple[jax.Array, jax.Array]:
    ids = np.full((rows, length), pad, np.int32)
    mask = np.zeros((rows, length), np.int32)
    for r, i in enumerate(idx):
        ids[r, :len(tokens[i])] = tokens[i]
        mask[r, :len(tokens[i])] = 1
    mask[len(idx):, 0] = 1  # filler rows: one visible token keeps the attention finite
    return jnp.asarray(ids), jnp.asarray(mask)


@nnx.jit
def _bridge_forward(model, ids, mask):
    return model.sequence_output(ids, mask).astype(jnp.float16)


def bridge_states(model, tokenizer, texts: Sequence[str], *, max_length: int, identity: str, prefix: str = "",
                  cache_dir=None, desc: str = "bridge states") -> RaggedStates:
    """The frozen bridge encoder's last-layer states of `texts` (fp16, ragged), cached under `cache_dir`; the
    token ids come from the tokenizer (cheap), so a cache holds the states only."""
    tokens = tokenizer([prefix + t for t in texts], truncation=True, max_length=max_length)["input_ids"]
    lengths = np.array([len(t) for t in tokens], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = np.fromiter((i for t in tokens for i in t), np.int32, count=int(offsets[-1]))
    path = None
    if cache_dir:
        path = as_path(cache_dir) / f"states_{cache_key(identity, texts, max_length=max_length, prefix=prefix)}.npz"
        if path.is_file():
            z = np.load(io.BytesIO(path.read_bytes()))
            return RaggedStates(z["flat"], z["offsets"], ids)
    flat = np.zeros((offsets[-1], model.config.hidden_size), np.float16)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else model.config.pad_token_id
    for idx, rows, length in tqdm(list(_length_batches(lengths, max_length)), desc=desc, unit="batch"):
        out = np.asarray(_bridge_forward(model, *_padded(tokens, idx, rows, length, pad)))
        for r, i in enumerate(idx):
            flat[offsets[i]:offsets[i + 1]] = out[r, :lengths[i]]
    if path is not None and jax.process_index() == 0:
        _save_npz(path, flat=flat, offsets=offsets)
    return RaggedStates(flat, offsets, ids)


@nnx.jit
def _teacher_forward(model, ids, mask, types):
    h = model.hidden_states(ids, mask, types)
    W, b = model.vocab_projection()
    return jnp.maximum(masked_max_logits(h, mask.astype(jnp.float32), W, h.shape[1]) + b.astype(jnp.float32), 0.0)


def teacher_logits(model, tokenizer, texts: Sequence[str], *, max_length: int, identity: str,
                   cache_dir=None) -> sp.csr_matrix:
    """The English SPLADE teacher's positive raw max-pooled MLM logits of `texts`: CSR [N, V] float32."""
    path = None
    if cache_dir:
        path = as_path(cache_dir) / f"teacher_{cache_key(identity, texts, max_length=max_length)}.npz"
        if path.is_file():
            return sp.load_npz(io.BytesIO(path.read_bytes())).tocsr()
    tokens = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    lengths = np.array([len(t) for t in tokens], np.int64)
    blocks = [None] * len(texts)
    pad = tokenizer.pad_token_id or 0
    for idx, rows, length in tqdm(list(_length_batches(lengths, max_length)), desc="teacher", unit="batch"):
        ids, mask = _padded(tokens, idx, rows, length, pad)
        out = sp.csr_matrix(np.asarray(_teacher_forward(model, ids, mask, jnp.zeros_like(ids)))[:len(idx)])
        for r, i in enumerate(idx):
            blocks[i] = out[r]
    matrix = sp.vstack(blocks, format="csr").astype(np.float32)
    if path is not None and jax.process_index() == 0:
        buf = io.BytesIO()
        sp.save_npz(buf, matrix, compressed=False)
        replace_file(path, buf.getvalue())
    return matrix


def aligned_max(src_spans: np.ndarray, tgt_spans: np.ndarray, tgt_weights: np.ndarray) -> np.ndarray:
    """Per source token, the largest weight among the target tokens whose character spans overlap its span
    (NaN without any: e.g. past the target's truncation); the first and last source tokens (the specials, span (0, 0)) take the first / last
    target token's weight. Spans [n, 2] / [m, 2] (start, end); weights [m]."""
    a0, a1 = src_spans[:, None, 0], src_spans[:, None, 1]
    b0, b1 = tgt_spans[None, :, 0], tgt_spans[None, :, 1]
    overlap = np.minimum(a1, b1) > np.maximum(a0, b0)
    out = np.where(overlap, tgt_weights[None, :], -np.inf).max(axis=1, initial=-np.inf).astype(np.float32)
    out[~overlap.any(axis=1)] = np.nan
    out[0], out[-1] = tgt_weights[0], tgt_weights[-1]
    return out


def echo_targets(bridge_tokenizer, english_tokenizer, texts: Sequence[str], teacher_raw: sp.csr_matrix, *,
                 max_length: int) -> np.ndarray:
    """LexEcho's English-only regression target, per bridge token of `texts` (flat [T], aligned with
    `bridge_states(texts, max_length)`): the teacher's SPLADE weight log1p(raw) of the English WordPiece(s)
    whose characters the bridge token covers, i.e. how much the English model itself weights this token
    of this text. `teacher_raw`: `teacher_logits(texts)` (row i = text i)."""
    kw = dict(truncation=True, max_length=max_length, return_offsets_mapping=True)
    bridge, english = bridge_tokenizer(list(texts), **kw), english_tokenizer(list(texts), **kw)
    out = []
    for i, (b_spans, e_spans, e_ids) in enumerate(zip(bridge["offset_mapping"], english["offset_mapping"],
                                                      english["input_ids"], strict=True)):
        weights = np.log1p(np.asarray(teacher_raw[i, e_ids].todense(), np.float32).ravel())
        out.append(aligned_max(np.asarray(b_spans), np.asarray(e_spans), weights))
    return np.concatenate(out)


class AlignBatches:
    """Alignment stream: states / mask [b, L] of a text (English, or the target side of a parallel pair)
    and teacher_raw [b, V]: the teacher's logits of the same English text (or of the English parallel);
    with `echo` (per-token LexEcho targets aligned with `states.flat`, NaN = no aligned WordPiece)
    also echo_target / echo_mask [b, L]."""

    def __init__(self, states: RaggedStates, teacher: sp.csr_matrix, *, batch_size: int, length: int, seed: int,
                 echo: np.ndarray | None = None, process: tuple[int, int] | None = None):
        if len(states) != teacher.shape[0]:
            raise ValueError(f"{len(states)} texts with states for {teacher.shape[0]} teacher vectors")
        if echo is not None and len(echo) != len(states.flat):
            raise ValueError(f"{len(echo)} echo targets for {len(states.flat)} bridge tokens")
        index, count = process or process_slot()
        self.states, self.teacher, self.length, self.echo = states, teacher, length, echo
        self.order = ShardedOrder(len(states), batch_size, seed, process_index=index, process_count=count)

    def next_batch(self) -> dict[str, np.ndarray]:
        rows = self.order.next_indices()
        x, m = self.states.batch(rows, self.length)
        batch = {"states": x, "mask": m, "teacher_raw": self.teacher[rows].toarray().astype(np.float32)}
        if self.echo is not None:
            t = self.states.token_values(self.echo, rows, self.length)
            batch["echo_mask"] = (m > 0) & np.isfinite(t)
            batch["echo_target"] = np.where(batch["echo_mask"], t, 0.0).astype(np.float32)
        return batch

    def state(self) -> dict[str, Any]:
        return {"align": self.order.state()}

    def restore(self, state: dict[str, Any]) -> None:
        self.order.restore(state["align"])


@dataclasses.dataclass(frozen=True)
class PairRows:
    """Training examples as rows: the unique query texts, the page texts (the corpus's first, in its order,
    then any other positive or negative text), and per example (query row, positive row) and its negatives'
    rows (None: the examples carry none)."""

    queries: list[str]
    pages: list[str]
    pairs: list[tuple[int, int]]
    negatives: list[list[int]] | None


def pair_rows(examples: Sequence, corpus_pages: Sequence[str]) -> PairRows:
    """`PairRows` of `data.examples.Example`s; a text listed twice maps to its first row."""
    queries = list(dict.fromkeys(e.query for e in examples))
    seen = set(corpus_pages)
    pages = list(corpus_pages) + [x for x in dict.fromkeys(x for e in examples for x in (e.positive, *e.negatives))
                                  if x not in seen]
    q_row = {q: i for i, q in enumerate(queries)}
    d_row = {x: i for i, x in reversed(list(enumerate(pages)))}
    negatives = [[d_row[x] for x in e.negatives] for e in examples] if any(e.negatives for e in examples) else None
    return PairRows(queries, pages, [(q_row[e.query], d_row[e.positive]) for e in examples], negatives)


class RetrievalBatches:
    """Retrieval stream over (query, positive page) pairs: query_states / query_mask [b, Lq], doc_states /
    doc_mask [b, 1 + k, Ld] (the pair's positive, then its k hard negatives `negatives[pair]`, page rows;
    k = 0 without them: in-batch negatives only; left out when `docs` is None: a query-only stream) and,
    when `english_docs` is given (one row per pair), english_doc [b, V]: the untouched English model's
    vector of the English version of the positive page (cross-lingual term)."""

    def __init__(self, queries: RaggedStates, docs: RaggedStates | None, pairs: Sequence[tuple[int, int]], *,
                 batch_size: int, query_length: int, doc_length: int, seed: int,
                 english_docs: sp.csr_matrix | None = None, negatives: Sequence[Sequence[int]] | None = None,
                 process: tuple[int, int] | None = None):
        if docs is None and english_docs is None:
            raise ValueError("a retrieval stream needs the pages' states or their English vectors")
        if english_docs is not None and english_docs.shape[0] != len(pairs):
            raise ValueError(f"{english_docs.shape[0]} English page vectors for {len(pairs)} pairs")
        if negatives is not None and (docs is None or len(negatives) != len(pairs)
                                      or len({len(n) for n in negatives}) > 1):
            raise ValueError("hard negatives need the pages' states and the same count for every pair")
        index, count = process or process_slot()
        self.queries, self.docs, self.pairs = queries, docs, np.asarray(pairs, np.int64)
        self.query_length, self.doc_length, self.english_docs = query_length, doc_length, english_docs
        self.negatives = None if negatives is None else np.asarray(negatives, np.int64).reshape(len(pairs), -1)
        self.order = ShardedOrder(len(self.pairs), batch_size, seed, process_index=index, process_count=count)

    def next_batch(self) -> dict[str, np.ndarray]:
        rows = self.order.next_indices()
        q_rows, d_rows = self.pairs[rows].T
        q, qm = self.queries.batch(q_rows, self.query_length)
        batch = {"query_states": q, "query_mask": qm,
                 "query_ids": self.queries.token_values(self.queries.ids, q_rows, self.query_length)}
        if self.docs is not None:
            group = d_rows[:, None] if self.negatives is None else np.hstack([d_rows[:, None], self.negatives[rows]])
            d, dm = self.docs.batch(group.ravel(), self.doc_length)
            ids = self.docs.token_values(self.docs.ids, group.ravel(), self.doc_length)
            batch.update(doc_states=d.reshape(*group.shape, *d.shape[1:]), doc_mask=dm.reshape(*group.shape, -1),
                         doc_ids=ids.reshape(*group.shape, -1))
        if self.english_docs is not None:
            batch["english_doc"] = self.english_docs[rows].toarray().astype(np.float32)
        return batch

    def state(self) -> dict[str, Any]:
        return {"retrieval": self.order.state()}

    def restore(self, state: dict[str, Any]) -> None:
        self.order.restore(state["retrieval"])


@nnx.jit
def _splade_from_states(model, states, mask, ids):
    return model.splade_from_states(states, mask, ids)


def encode_states(model, states: RaggedStates, *, max_length: int) -> sp.csr_matrix:
    """SPLADE vectors [N, V] (CSR) of cached states through a connector model, in length buckets."""
    lengths = np.minimum(np.diff(states.offsets), max_length)
    blocks = [None] * len(states)
    for idx, rows, length in _length_batches(lengths, max_length):
        padded = np.concatenate([idx, np.repeat(idx[:1], rows - len(idx))])
        x, m = states.batch(padded, length)
        ids = states.token_values(states.ids, padded, length)
        out = sp.csr_matrix(np.asarray(_splade_from_states(model, jnp.asarray(x), jnp.asarray(m),
                                                           jnp.asarray(ids)))[:len(idx)])
        for r, i in enumerate(idx):
            blocks[i] = out[r]
    return sp.vstack(blocks, format="csr").astype(np.float32)
