"""Objectives of the adaptation stages: `objective(model, batch, step) -> (loss, metrics)`, the form
`trainer.fit` trains (the retrieval stage's is `trainer.splade_objective`)."""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from sembridge_jax.models.heads import splade_pool
from sembridge_jax.training import losses
from sembridge_jax.training.mlm import mlm_loss


def mlm_objective(max_predictions_per_row: int):
    """Masked-LM cross-entropy over the predicted positions (`stage_data.TextBatches`)."""

    def objective(model, batch, step):
        loss, metrics = mlm_loss(model, batch["input_ids"], batch["attention_mask"], batch["labels"],
                                 batch.get("token_type_ids"), max_predictions_per_row=max_predictions_per_row)
        return loss, {**metrics, "loss": loss}

    return objective


@dataclasses.dataclass(frozen=True)
class AlignWeights:
    """Weights of the `align` stage's terms (0 = off): MILCO's sparsity-aware MSE against the teacher's
    mapped vector, MSE between mean-pooled hidden states, and the Jensen-Shannon term over the batch."""

    sparse_mse: float = 1.0
    hidden_mse: float = 0.0
    js: float = 0.0


def align_objective(weights: AlignWeights):
    """The target model's view of target texts against the frozen teacher's view of their English
    parallels (`stage_data.ParallelBatches`: teacher_vec [b, V_t], teacher_hidden [b, d])."""

    def objective(model, batch, step):
        ids, mask, types = batch["tgt_input_ids"], batch["tgt_attention_mask"], batch.get("tgt_token_type_ids")
        hidden = model.hidden_states(ids, mask, types)
        W, b = model.vocab_projection()
        vec = splade_pool(hidden, mask, W, b, pooling=model.config.splade_pooling,
                          chunk_size=model.config.splade_chunk_size)
        teacher = batch["teacher_vec"]
        metrics = {"active": losses.active_terms(vec), "teacher_active": losses.active_terms(teacher)}
        loss = 0.0
        if weights.sparse_mse:
            metrics["sparse_mse"] = losses.sparse_mse(vec, teacher)
            loss = loss + weights.sparse_mse * metrics["sparse_mse"]
        if weights.hidden_mse:
            teacher_hidden = batch["teacher_hidden"][:, None, :]  # already pooled: one "token" each
            metrics["hidden_mse"] = losses.hidden_mse(hidden, mask, teacher_hidden, jnp.ones(teacher_hidden.shape[:2]))
            loss = loss + weights.hidden_mse * metrics["hidden_mse"]
        if weights.js:  # score distributions over the batch's teacher vectors as the candidates
            metrics["xling_js"] = losses.xling_js(teacher, vec, teacher)
            loss = loss + weights.js * metrics["xling_js"]
        metrics["loss"] = loss
        return loss, metrics

    return objective
