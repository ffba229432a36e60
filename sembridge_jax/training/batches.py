"""Training batches: seeded epoch-wise shuffling, per-process shards, static-shape tokenisation.

The order of the GLOBAL batch stream depends only on (seed, number of examples, global batch
size): epoch e uses the permutation `default_rng([seed, e])`, global batch k of an epoch is
positions [k * B, (k + 1) * B) of it, and the last partial batch of an epoch is dropped.
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

import queue
import threading
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


class ShardedOrder:
    """Deterministic, resumable order of global batches; yields this process's row indices.

    `next_indices()` returns the example indices of this process's shard of the next global
    batch. `state()` / `restore(state)` save and restore the position exactly.
    """

    def __init__(self, num_items: int, global_batch: int, seed: int, *,
                 process_index: int = 0, process_count: int = 1):
        if global_batch % process_count:
            raise ValueError(f"global batch {global_batch} not divisible by {process_count} processes")
        if num_items < global_batch:
            raise ValueError(f"{num_items} examples are fewer than one global batch of {global_batch}")
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index {process_index} not in [0, {process_count})")
        self.num_items, self.global_batch, self.seed = num_items, global_batch, seed
        self.local_batch = global_batch // process_count
        self.offset = process_index * self.local_batch
        self.batches_per_epoch = num_items // global_batch
        self.epoch, self.index = 0, 0
        self._perm_epoch, self._perm = -1, None

    def permutation(self, epoch: int) -> np.ndarray:
        """The epoch's permutation of all example indices (same on every process)."""
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_items)
            self._perm_epoch = epoch
        return self._perm

    def global_indices(self) -> np.ndarray:
        """Indices of the whole next global batch (without advancing)."""
        start = self.index * self.global_batch
        return self.permutation(self.epoch)[start:start + self.global_batch]

    def next_indices(self) -> np.ndarray:
        local = self.global_indices()[self.offset:self.offset + self.local_batch]
        self.index += 1
        if self.index == self.batches_per_epoch:
            self.epoch, self.index = self.epoch + 1, 0
        return local

    def state(self) -> dict[str, int]:
        return {"epoch": int(self.epoch), "index": int(self.index)}

    def restore(self, state: dict[str, Any]) -> None:
        epoch, index = int(state["epoch"]), int(state["index"])
        if epoch < 0 or not 0 <= index < self.batches_per_epoch:
            raise ValueError(f"iterator state {state} out of range "
                             f"({self.batches_per_epoch} batches per epoch)")
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
    negatives with `data.train.mine_negatives` (the pipeline passes `evaluation.mining.mine_negatives`).
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
        self.order = ShardedOrder(len(self.examples), config.train.batch_size, config.seed,
                                  process_index=process_index, process_count=process_count)
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
