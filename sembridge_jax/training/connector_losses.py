"""Alignment losses of the connector route (docs/methods.md, "Connector route"): pure JAX, float32.

Notation: B texts, V English vocabulary. `s_raw` [B, V] are the student's raw max-pooled MLM logits
(`ConnectorSparseEncoder.max_logits_from_states`), `t_raw` [B, V] the English teacher's for the same (or
the parallel English) text, clipped at 0: a teacher entry <= 0 is an inactive SPLADE term. SPLADE weights
are w = log1p(relu(raw)).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from sembridge_jax.training import losses


def splade_weights(raw: jax.Array) -> jax.Array:
    """log1p(relu(raw)) in float32: SPLADE-max weights from raw max-pooled logits."""
    return jnp.log1p(jax.nn.relu(jnp.asarray(raw, jnp.float32)))


def sparse_mse_margin(s_raw: jax.Array, t_raw: jax.Array, margin: float = 0.0) -> jax.Array:
    """MILCO's sparsity-aware MSE on raw logits with a margin.

    Over MILCO's union mask m = (s > 0) | (t > 0), the target is t where the teacher is active and -margin
    where it is not: sum m (s - target)^2 / max(1, sum m). margin 0 is `losses.sparse_mse` on raw logits
    (MILCO's `compute_alignment_loss`); MILCO's own teacher targets there are its real negative logits, ours
    are clipped (cached as CSR), and the margin stands in for them. Without it the student activates ~5x the
    teacher's terms (the prototype's measurement, docs/methods.md). Entries outside the mask cost nothing:
    pushing ALL teacher-inactive terms below -margin collapsed the student to 1-3 active terms.
    """
    t = jnp.maximum(jnp.asarray(t_raw, jnp.float32), 0.0)
    if not margin:
        return losses.sparse_mse(s_raw, t)
    s = jnp.asarray(s_raw, jnp.float32)
    t = jax.lax.stop_gradient(t)
    m = ((s > 0) | (t > 0)).astype(jnp.float32)
    target = jnp.where(t > 0, t, -float(margin))
    return jnp.sum(m * (s - target) ** 2) / jnp.maximum(jnp.sum(m), 1.0)


def vector_nce(s_raw: jax.Array, t_raw: jax.Array, scale: float = 1.0) -> jax.Array:
    """InfoNCE of each student SPLADE vector against the batch's teacher vectors (row i's positive is teacher
    i; dot products in the English vocabulary): trains the ranking geometry an English index uses, not only
    the per-term values. `losses.info_nce` with the teacher vectors as one-document groups."""
    loss, _ = losses.info_nce(splade_weights(s_raw), jax.lax.stop_gradient(splade_weights(t_raw))[:, None, :], scale)
    return loss


def echo_regression(weights: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
    """LexEcho's English-only loss: mean over masked bridge tokens of (echo weight - target)^2, the target being
    the teacher's SPLADE weight of the English WordPiece(s) the token covers (`connector_data.echo_targets`)."""
    m = jnp.asarray(mask, jnp.float32)
    d = jnp.asarray(weights, jnp.float32) - jax.lax.stop_gradient(jnp.asarray(target, jnp.float32))
    return jnp.sum(m * d * d) / jnp.maximum(jnp.sum(m), 1.0)
