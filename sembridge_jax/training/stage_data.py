"""Input streams of the adaptation stages: masked raw text (`mlm`, `vocab_warmup`) and parallel text with
the frozen teacher's targets (`align`). Both follow `batches.TrainData`'s contract: `next_batch()` gives
this process's numpy rows of the next global batch, `state()` / `restore()` the exact position (a
`batches.ShardedOrder`), so a killed stage resumes with the very next batch.

Masking is drawn from a generator seeded by (seed, epoch, batch index): the same position gives the same
masks whatever happened before, which is what makes a resumed `mlm` stage bit-identical.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import scipy.sparse as sp
from flax import nnx
from tqdm.auto import tqdm

from sembridge_jax.models.heads import dense_pool
from sembridge_jax.training.batches import ShardedOrder, tokenize
from sembridge_jax.training.distributed import process_slot
from sembridge_jax.training.losses import map_to_target_vocab
from sembridge_jax.training.mlm import mask_tokens, max_predictions


class TextBatches:
    """Masked-LM batches of raw texts: input_ids (masked), attention_mask, token_type_ids, labels [b, L]."""

    def __init__(self, texts: Sequence[str], tokenizer, *, batch_size: int, max_length: int, mask_prob: float,
                 seed: int, process: tuple[int, int] | None = None):
        if tokenizer.mask_token_id is None:
            raise ValueError(f"the tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no mask token: "
                             "the masked-LM stage needs one")
        index, count = process or process_slot()
        self.texts, self.tokenizer = list(texts), tokenizer
        self.max_length, self.mask_prob, self.seed = max_length, mask_prob, seed
        self.max_predictions = max_predictions(max_length, mask_prob)
        self.order = ShardedOrder(len(self.texts), batch_size, seed, process_index=index, process_count=count)

    def next_batch(self) -> dict[str, np.ndarray]:
        epoch, index = self.order.epoch, self.order.index
        texts = [self.texts[i] for i in self.order.next_indices()]
        enc = self.tokenizer(texts, max_length=self.max_length, padding="max_length", truncation=True,
                             return_tensors="np", return_special_tokens_mask=True)
        ids = np.asarray(enc["input_ids"], np.int32)
        mask = np.asarray(enc["attention_mask"], np.int32)
        masked, labels = mask_tokens(ids, mask, enc["special_tokens_mask"], vocab_size=len(self.tokenizer),
                                     mask_token_id=self.tokenizer.mask_token_id, prob=self.mask_prob,
                                     rng=[self.seed, epoch, index, jax.process_index()],
                                     max_predictions_per_row=self.max_predictions)
        types = np.asarray(enc.get("token_type_ids", np.zeros_like(ids)), np.int32)
        return {"input_ids": masked, "attention_mask": mask, "token_type_ids": types, "labels": labels}

    def state(self) -> dict[str, Any]:
        return {"text": self.order.state()}

    def restore(self, state: dict[str, Any]) -> None:
        self.order.restore(state["text"])


@dataclasses.dataclass
class TeacherTargets:
    """The frozen teacher's view of the English side of every pair: SPLADE vectors mapped into the target
    vocabulary (CSR [N, V_t]) and mean-pooled hidden states [N, d]."""

    vectors: sp.csr_matrix
    hidden: np.ndarray


@nnx.jit
def _teacher_batch(model, ids, mask, types):
    h = model.hidden_states(ids, mask, types)
    return model.splade(ids, mask, types), dense_pool(h, mask, pooling="mean", normalize=False)


def teacher_targets(model, tokenizer, english: Sequence[str], alignment, *, max_length: int,
                    batch_size: int = 64) -> TeacherTargets:
    """Encode `english` with the source model (the teacher) and map its vectors through `alignment`
    (losses.map_to_target_vocab): what the target model should produce for the parallel target texts."""
    vectors, hidden = [], []
    for s in tqdm(range(0, len(english), batch_size), desc="teacher", unit="batch"):
        part = list(english[s:s + batch_size])
        enc = tokenize(tokenizer, part + [""] * (batch_size - len(part)), max_length)
        w, h = _teacher_batch(model, enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        mapped = map_to_target_vocab(w, alignment.copy_src, alignment.rows, alignment.cols, alignment.weights,
                                     alignment.target_size)
        vectors.append(sp.csr_matrix(np.asarray(mapped)[:len(part)]))
        hidden.append(np.asarray(h)[:len(part)])
    return TeacherTargets(sp.vstack(vectors, format="csr"), np.concatenate(hidden).astype(np.float32))


class ParallelBatches:
    """Target-side texts with the teacher's targets: tgt_input_ids / tgt_attention_mask /
    tgt_token_type_ids [b, L], teacher_vec [b, V_t] and teacher_hidden [b, d] float32."""

    def __init__(self, targets: Sequence[str], teacher: TeacherTargets, tokenizer, *, batch_size: int,
                 max_length: int, seed: int, process: tuple[int, int] | None = None):
        if len(targets) != teacher.vectors.shape[0]:
            raise ValueError(f"{len(targets)} target texts for {teacher.vectors.shape[0]} teacher vectors")
        index, count = process or process_slot()
        self.targets, self.teacher, self.tokenizer, self.max_length = list(targets), teacher, tokenizer, max_length
        self.order = ShardedOrder(len(self.targets), batch_size, seed, process_index=index, process_count=count)

    def next_batch(self) -> dict[str, np.ndarray]:
        rows = self.order.next_indices()
        batch = {f"tgt_{k}": v for k, v in
                 tokenize(self.tokenizer, [self.targets[i] for i in rows], self.max_length).items()}
        batch["teacher_vec"] = self.teacher.vectors[rows].toarray().astype(np.float32)
        batch["teacher_hidden"] = self.teacher.hidden[rows]
        return batch

    def state(self) -> dict[str, Any]:
        return {"parallel": self.order.state()}

    def restore(self, state: dict[str, Any]) -> None:
        self.order.restore(state["parallel"])
