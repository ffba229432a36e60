"""Objectives of the connector stages, in the form `trainer.fit` trains: `objective(model, batch, step) ->
(loss, metrics)` with `model` a `models.connector.ConnectorSparseEncoder` and batches from
`training.connector_data` (states, not token ids: the multilingual encoder is frozen and cached)."""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from sembridge_jax.training import losses
from sembridge_jax.training.connector_losses import (
    echo_regression,
    sparse_mse_margin,
    splade_weights,
    vector_nce,
)


@dataclasses.dataclass(frozen=True)
class AlignSettings:
    """The alignment stages' loss: sparse_mse * MILCO sparse MSE (margin) + nce * vector InfoNCE + echo *
    LexEcho regression (batches with `echo_target`, i.e. English text)."""

    sparse_mse: float = 1.0
    margin: float = 1.0
    nce: float = 0.0
    nce_scale: float = 1.0
    echo: float = 0.0


def align_objective(settings: AlignSettings):
    """Student raw max logits of `states` against `teacher_raw` (`connector_data.AlignBatches`)."""

    def objective(model, batch, step):
        s_raw = model.max_logits_from_states(batch["states"], batch["mask"])
        t_raw = batch["teacher_raw"]
        metrics = {"active": losses.active_terms(splade_weights(s_raw)),
                   "teacher_active": losses.active_terms(t_raw)}
        loss = 0.0
        if settings.sparse_mse:
            metrics["sparse_mse"] = sparse_mse_margin(s_raw, t_raw, settings.margin)
            loss = loss + settings.sparse_mse * metrics["sparse_mse"]
        if settings.nce:
            metrics["vector_nce"] = vector_nce(s_raw, t_raw, settings.nce_scale)
            loss = loss + settings.nce * metrics["vector_nce"]
        if settings.echo:
            metrics["echo"] = echo_regression(model.echo_weights(batch["states"], batch["mask"]),
                                              batch["echo_target"], batch["echo_mask"])
            loss = loss + settings.echo * metrics["echo"]
        metrics["loss"] = loss
        return loss, metrics

    return objective


def retrieval_objective(settings: losses.LossSettings, xling: float = 0.0):
    """`losses.total_loss` (InfoNCE over in-batch negatives + FLOPS) on connector vectors, plus `xling` x
    InfoNCE of the queries against the untouched English model's vectors of the same pages (`english_doc`,
    fixed): keeps the queries in the space of an existing English index (`connector_data.RetrievalBatches`).
    With LexEcho the vectors carry the echo block (trained jointly); the cross-lingual term reads the
    English block only (the English index has no other)."""

    def objective(model, batch, step):
        q = model.splade_from_states(batch["query_states"], batch["query_mask"], batch.get("query_ids"))
        b, group, length, dim = batch["doc_states"].shape
        ids = batch.get("doc_ids")
        d = model.splade_from_states(batch["doc_states"].reshape(b * group, length, dim),
                                     batch["doc_mask"].reshape(b * group, length),
                                     None if ids is None else ids.reshape(b * group, length)).reshape(b, group, -1)
        loss, metrics = losses.total_loss(settings, q, d, step)
        if xling:
            q_en = q[:, :model.config.english_size]
            metrics["xling_nce"], _ = losses.info_nce(q_en, jnp.asarray(batch["english_doc"])[:, None, :],
                                                      settings.scale)
            loss = loss + xling * metrics["xling_nce"]
            metrics["loss"] = loss
        return loss, metrics

    return objective


def query_xling_objective(settings: losses.LossSettings, xling: float = 1.0):
    """Queries only (no page forward): `xling` x InfoNCE of the target queries against the untouched English
    model's vectors of their pages (in-batch negatives) + lambda_q(t) FLOPS(q). Pulls the queries back into
    an existing English index's space after target-language fine-tuning without moving the pages. The
    English block only: a LexEcho block has no part in the English index (and FLOPS alone would shrink it)."""

    def objective(model, batch, step):
        q = model.english_from_states(batch["query_states"], batch["query_mask"])
        xl, accuracy = losses.info_nce(q, jnp.asarray(batch["english_doc"])[:, None, :], settings.scale)
        lam_q = losses.quadratic_warmup(settings.lambda_q, step, settings.flops_warmup_steps)
        flops_q = losses.flops(q)
        loss = xling * xl + lam_q * flops_q
        return loss, {"loss": loss, "xling_nce": xl, "accuracy": accuracy, "flops_q": flops_q, "lambda_q": lam_q,
                      "active_q": losses.active_terms(q)}

    return objective
