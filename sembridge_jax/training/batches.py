"""Training batches: seeded epoch-wise shuffling, per-process shards, static-shape tokenisation.

The order of the GLOBAL batch stream depends only on (seed, number of examples, global batch
size): epoch e uses the permutation `default_rng([seed, e])`, global batch k of an epoch is
positions [k * B, (k + 1) * B) of it, and the last partial batch of an epoch is dropped.
With query groups (`data.train.group_by_query`, see `grouped_batches`) the batches are filled from
the same permutation, skipping an example that would show a query one of its known positives as a
negative; with nothing to skip they are exactly the plain batches, so the order is unchanged.
Process p of P takes rows [p * B / P, (p + 1) * B / P) of each global batch, so the processes
partition the global batch. The iterator position is `{"epoch": e, "index": k}`: save it with
the checkpoint and `restore` it to continue with exactly the next batch.

`Prefetcher` moves tokenisation and placement on the devices off the training loop's critical
path: one background thread calls `next_batch()` in order (so the order is unchanged) and puts
each batch on the mesh while the devices run earlier steps; its `state()` is the position after
the batch the loop last TOOK, not after the ones read ahead, so a checkpoint resumes exactly.

Batch arrays (numpy, host side; the trainer puts them on devices):
  query_input_ids / query_attention_mask / query_token_type_ids  int32 [b, Lq]
  doc_input_ids / doc_attention_mask / doc_token_type_ids        int32 [b, 1 + H, Ld]
  teacher_scores                                                 float32 [b, 1 + H] (if distilling)
and for the cross-lingual term (parallel pairs, queries length):
  src_input_ids ... / tgt_input_ids ...                          int32 [p, Lq]
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from sembridge_jax.data.examples import Example, read_parallel_tsv
from sembridge_jax.data.sources import Miner, load_examples


def tokenize(tokenizer, texts: Sequence[str], max_length: int, prefix: str = "") -> dict[str, np.ndarray]:
    """Tokenise to static shapes [N, max_length] (pad to max_length, truncate longer texts).

    Returns int32 input_ids, attention_mask, token_type_ids (zeros when the tokenizer has none).
    """
    enc = tokenizer([prefix + t for t in texts], max_length=max_length, padding="max_length",
                    truncation=True, return_tensors="np")
    ids = np.asarray(enc["input_ids"], np.int32)
    mask = np.asarray(enc["attention_mask"], np.int32)
    types = np.asarray(enc.get("token_type_ids", np.zeros_like(ids)), np.int32)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


@dataclasses.dataclass(frozen=True)
class QueryGroups:
    """Per example, as integer keys: the documents it puts into a batch (positive, then hard negatives) and
    the known positives of its query (the positives of every example with the same query). A document is
    keyed by its id where the source has one, else by its text; a query by its id, else its text."""

    docs: list[tuple[int, ...]]
    positives: list[frozenset[int]]


def query_groups(examples: Sequence[Example]) -> QueryGroups:
    keys: dict[tuple[str, str], int] = {}

    def key(kind: str, value: str) -> int:
        return keys.setdefault((kind, value), len(keys))

    docs = []
    for e in examples:
        negatives = [key("id", d) for d in e.negative_ids] or [key("text", t) for t in e.negatives]
        docs.append((key("id", e.positive_id) if e.positive_id else key("text", e.positive), *negatives))
    by_query = defaultdict(set)
    for e, d in zip(examples, docs, strict=True):
        by_query[e.query_id or e.query].add(d[0])
    frozen = {q: frozenset(p) for q, p in by_query.items()}
    return QueryGroups(docs, [frozen[e.query_id or e.query] for e in examples])


def grouped_batches(order: np.ndarray, batch_size: int, groups: QueryGroups) -> np.ndarray:
    """Batches [n, batch_size] of example indices taken in `order`, none holding a document that is a known
    positive of the query of ANOTHER example in it (another example of the same query, a document two
    queries share, another example's hard negative): InfoNCE scores every query against every document of
    the global batch, so such a document would be a false in-batch negative.

    An example that conflicts with the batch being filled waits, in order, and is tried first for the next
    batches; the epoch ends when no full batch can be formed (the rest is dropped, like the plain order's
    last partial batch). Without conflicts this is `order[:n * batch_size]` in rows: the plain batches.
    """
    out, waiting, upcoming = [], [], iter(order.tolist())
    while True:
        chosen, batch_docs, batch_positives, still = [], set(), set(), []
        for i in waiting:
            _place(i, chosen, batch_docs, batch_positives, still, batch_size, groups)
        while len(chosen) < batch_size:
            i = next(upcoming, None)
            if i is None:
                break
            _place(i, chosen, batch_docs, batch_positives, still, batch_size, groups)
        waiting = still
        if len(chosen) < batch_size:
            return np.asarray(out, np.int64).reshape(len(out), batch_size)
        out.append(chosen)


def _place(i: int, chosen: list, batch_docs: set, batch_positives: set, waiting: list, batch_size: int,
           groups: QueryGroups) -> None:
    """Add example i to the batch being filled if it fits there, else to the waiting list."""
    docs, positives = groups.docs[i], groups.positives[i]
    if len(chosen) < batch_size and batch_positives.isdisjoint(docs) and batch_docs.isdisjoint(positives):
        chosen.append(i)
        batch_docs.update(docs)
        batch_positives.update(positives)
    else:
        waiting.append(i)


class ShardedOrder:
    """Deterministic, resumable order of global batches; yields this process's row indices.

    `next_indices()` returns the example indices of this process's shard of the next global
    batch. `state()` / `restore(state)` save and restore the position exactly. With `groups` the
    batches of each epoch come from `grouped_batches` (an epoch may then hold fewer batches).
    """

    def __init__(self, num_items: int, global_batch: int, seed: int, *,
                 process_index: int = 0, process_count: int = 1, groups: QueryGroups | None = None):
        if global_batch % process_count:
            raise ValueError(f"global batch {global_batch} not divisible by {process_count} processes")
        if num_items < global_batch:
            raise ValueError(f"{num_items} examples are fewer than one global batch of {global_batch}")
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index {process_index} not in [0, {process_count})")
        self.num_items, self.global_batch, self.seed, self.groups = num_items, global_batch, seed, groups
        self.local_batch = global_batch // process_count
        self.offset = process_index * self.local_batch
        self.epoch, self.index = 0, 0
        self._plan_epoch, self._plan = -1, None
        self.batches(0)  # an impossible grouping fails here, before any training

    def permutation(self, epoch: int) -> np.ndarray:
        """The epoch's permutation of all example indices, which `batches` cuts into batches."""
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_items)

    def batches(self, epoch: int) -> np.ndarray:
        """The epoch's global batches [n, global_batch] of example indices (same on every process)."""
        if epoch != self._plan_epoch:
            perm = self.permutation(epoch)
            if self.groups is None:
                n = self.num_items // self.global_batch
                plan = perm[:n * self.global_batch].reshape(n, self.global_batch)
            else:
                plan = grouped_batches(perm, self.global_batch, self.groups)
            if not len(plan):
                raise ValueError(f"epoch {epoch}: no batch of {self.global_batch} examples in which no query "
                                 "meets one of its known positives as a negative (too few distinct queries; "
                                 "lower train.batch_size or set data.train.group_by_query=False)")
            self._plan_epoch, self._plan = epoch, plan
        return self._plan

    def global_indices(self) -> np.ndarray:
        """Indices of the whole next global batch (without advancing)."""
        return self.batches(self.epoch)[self.index]

    def next_indices(self) -> np.ndarray:
        local = self.global_indices()[self.offset:self.offset + self.local_batch]
        self.index += 1
        if self.index == len(self.batches(self.epoch)):
            self.epoch, self.index = self.epoch + 1, 0
        return local

    def state(self) -> dict[str, int]:
        return {"epoch": int(self.epoch), "index": int(self.index)}

    def restore(self, state: dict[str, Any]) -> None:
        epoch, index = int(state["epoch"]), int(state["index"])
        if epoch < 0 or not 0 <= index < len(self.batches(epoch)):
            raise ValueError(f"iterator state {state} out of range "
                             f"({len(self.batches(max(epoch, 0)))} batches in epoch {epoch})")
        self.epoch, self.index = epoch, index


def encode_examples(examples: Sequence[Example], tokenizer, *, max_query_length: int,
                    max_doc_length: int, query_prefix: str = "", doc_prefix: str = "",
                    with_scores: bool = False) -> dict[str, np.ndarray]:
    """Tokenise examples into the batch arrays (see module docstring); all must have the same H."""
    group = {1 + len(e.negatives) for e in examples}
    if len(group) != 1:
        raise ValueError(f"examples with different numbers of hard negatives: {sorted(group)}")
    group = group.pop()
    batch = {f"query_{k}": v for k, v in
             tokenize(tokenizer, [e.query for e in examples], max_query_length, query_prefix).items()}
    docs = [t for e in examples for t in (e.positive, *e.negatives)]
    for k, v in tokenize(tokenizer, docs, max_doc_length, doc_prefix).items():
        batch[f"doc_{k}"] = v.reshape(len(examples), group, max_doc_length)
    if with_scores:
        if any(e.scores is None for e in examples):
            raise ValueError("distillation needs teacher scores on every example")
        batch["teacher_scores"] = np.asarray([e.scores for e in examples], np.float32)
    return batch


class TrainData:
    """The training stream of a run: examples (+ parallel pairs), order, tokenisation, state.

    `next_batch()` returns this process's numpy batch of the next global step; `state()` /
    `restore()` cover the training examples and the parallel pairs together. `miner` mines the hard
    negatives with `data.train.mine_negatives` (the pipeline passes `evaluation.mining.miner_from_config`).
    """

    def __init__(self, config, tokenizer, *, process_index: int | None = None,
                 process_count: int | None = None, miner: Miner | None = None):
        if process_index is None or process_count is None:
            process_index, process_count = jax.process_index(), jax.process_count()
        spec = config.data.train
        loaded = load_examples(spec, miner=miner, workdir=config.workdir)
        self.examples, self.skipped, self.source = loaded.examples, loaded.skipped, loaded.source
        self.tokenizer = tokenizer
        self.max_query_length = config.model.max_query_length
        self.max_doc_length = config.model.max_doc_length
        self.query_prefix, self.doc_prefix = spec.query_prefix, spec.doc_prefix
        self.with_scores = config.loss.distill != "none"
        groups = query_groups(self.examples) if spec.group_by_query else None
        self.order = ShardedOrder(len(self.examples), config.train.batch_size, config.seed,
                                  process_index=process_index, process_count=process_count, groups=groups)
        self.pairs, self.pair_order, self.pairs_skipped = None, None, 0
        if config.loss.xling_weight > 0:
            self.pairs, self.pairs_skipped = read_parallel_tsv(
                config.data.parallel.path, max_pairs=config.data.parallel.max_pairs,
                skip_bad_lines=spec.skip_bad_lines)
            self.pair_order = ShardedOrder(len(self.pairs), config.data.parallel.batch_size,
                                           config.seed + 1, process_index=process_index,
                                           process_count=process_count)

    def next_batch(self) -> dict[str, np.ndarray]:
        examples = [self.examples[i] for i in self.order.next_indices()]
        batch = encode_examples(examples, self.tokenizer, max_query_length=self.max_query_length,
                                max_doc_length=self.max_doc_length, query_prefix=self.query_prefix,
                                doc_prefix=self.doc_prefix, with_scores=self.with_scores)
        if self.pairs is not None:
            pairs = [self.pairs[i] for i in self.pair_order.next_indices()]
            for side, texts in (("src", [p[0] for p in pairs]), ("tgt", [p[1] for p in pairs])):
                for k, v in tokenize(self.tokenizer, texts, self.max_query_length,
                                     self.query_prefix).items():
                    batch[f"{side}_{k}"] = v
        return batch

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        while True:
            yield self.next_batch()

    def state(self) -> dict[str, Any]:
        state = {"train": self.order.state()}
        if self.pair_order is not None:
            state["parallel"] = self.pair_order.state()
        return state

    def restore(self, state: dict[str, Any]) -> None:
        self.order.restore(state["train"])
        if self.pair_order is not None and "parallel" in state:
            self.pair_order.restore(state["parallel"])


class _Failed:
    """A producer exception, handed to the consumer in order."""

    def __init__(self, error: BaseException):
        self.error = error


class Prefetcher:
    """Batches of ``data`` made and placed ahead of use by a background thread (a context manager).

    ``data`` offers ``next_batch()``, ``state()`` and ``restore()`` (`TrainData`); ``place`` turns a
    host batch into device arrays (e.g. `sharding.global_batch` with the batch sharding). Up to
    ``depth`` placed batches wait in a queue while the thread prepares the next one, so the
    devices never wait for tokenisation or a host-to-device copy (``depth`` 2 = double buffering).
    ``depth`` 0 makes every batch in the caller's thread when asked (no thread, no read-ahead).

    ``next()`` returns the next placed batch; ``state()`` the data position after the last batch
    ``next()`` returned, which is what a checkpoint of the step that consumed it must record. An
    exception raised by ``data`` or ``place`` surfaces from the ``next()`` call that reaches it.
    """

    def __init__(self, data, place: Callable[[Mapping[str, np.ndarray]], Any], depth: int = 2):
        if depth < 0:
            raise ValueError(f"prefetch depth must be >= 0, got {depth}")
        self.data, self.place, self.depth = data, place, depth
        self._state = data.state()  # before the first batch: where the data stands now
        self._queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self) -> Prefetcher:
        if self.depth:
            self._thread = threading.Thread(target=self._produce, name="sembridge-prefetch", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _put(self, item) -> bool:
        """Queue ``item`` unless asked to stop first; False when stopping."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                batch = self.place(self.data.next_batch())
                if not self._put((batch, self.data.state())):
                    return
        except BaseException as e:  # re-raised in the consumer's thread
            self._put(_Failed(e))

    def next(self):
        if self._thread is None:
            if self.depth:
                raise RuntimeError("Prefetcher.next() outside its `with` block")
            batch = self.place(self.data.next_batch())
            self._state = self.data.state()
            return batch
        item = self._queue.get()
        if isinstance(item, _Failed):
            raise item.error
        batch, self._state = item
        return batch

    def state(self) -> dict[str, Any]:
        return self._state

    def close(self) -> None:
        """Stop the thread (batches read ahead are dropped; `state()` is unaffected)."""
        self._stop.set()
        if self._thread is not None:
            while self._thread.is_alive():
                try:  # unblock a producer waiting for room
                    self._queue.get_nowait()
                except queue.Empty:
                    self._thread.join(timeout=0.05)
            self._thread = None
