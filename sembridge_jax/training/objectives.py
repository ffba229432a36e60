"""Objectives of the adaptation stages: `objective(model, batch, step) -> (loss, metrics)`, the form
`trainer.fit` trains (the retrieval stage's is `trainer.splade_objective`)."""
from __future__ import annotations

import jax.numpy as jnp

from sembridge_jax.models.heads import splade_pool
from sembridge_jax.training import losses
from sembridge_jax.training.mlm import mlm_loss

# The `align` stage's distillation losses (losses.py): MILCO's sparsity-aware MSE against the teacher's
# vector mapped into the target vocabulary, MSE between mean-pooled hidden states, and the Jensen-Shannon
# term between the two vectors' score distributions over the batch's teacher vectors.
ALIGN_LOSSES = ("sparse_mse", "hidden_mse", "xling_js")


def mlm_objective(max_predictions_per_row: int):
    """Masked-LM cross-entropy over the predicted positions (`stage_data.TextBatches`)."""

    def objective(model, batch, step):
        loss, metrics = mlm_loss(model, batch["input_ids"], batch["attention_mask"], batch["labels"],
                                 batch.get("token_type_ids"), max_predictions_per_row=max_predictions_per_row)
        return loss, {**metrics, "loss": loss}

    return objective


def align_objective(kind: str):
    """The target model's view of target texts against the frozen teacher's view of their English
    parallels (`stage_data.ParallelBatches`: teacher_vec [b, V_t], teacher_hidden [b, d]), by `kind`
    (one of ALIGN_LOSSES). Both hidden sides are the vectors the vocabulary rows are dotted with
    (`hidden_states`, MLM transform applied), mean-pooled: parallel sentences tokenise differently."""
    if kind not in ALIGN_LOSSES:
        raise ValueError(f"align loss must be one of {ALIGN_LOSSES}, got {kind!r}")

    def objective(model, batch, step):
        ids, mask, types = batch["tgt_input_ids"], batch["tgt_attention_mask"], batch.get("tgt_token_type_ids")
        hidden = model.hidden_states(ids, mask, types)
        if kind == "hidden_mse":
            teacher = batch["teacher_hidden"][:, None, :]  # already pooled: one "token" per row
            loss = losses.hidden_mse(hidden, mask, teacher, jnp.ones(teacher.shape[:2], jnp.int32))
            return loss, {"loss": loss, "hidden_mse": loss}
        W, b = model.vocab_projection()
        vec = splade_pool(hidden, mask, W, b, pooling=model.config.splade_pooling,
                          chunk_size=model.config.splade_chunk_size)
        teacher = batch["teacher_vec"]
        if kind == "sparse_mse":
            loss = losses.sparse_mse(vec, teacher)
        else:
            loss = losses.xling_js(teacher, vec, teacher)
        return loss, {"loss": loss, kind: loss, "active": losses.active_terms(vec),
                      "teacher_active": losses.active_terms(teacher)}

    return objective
