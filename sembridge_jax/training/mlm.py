"""Masked-LM objective for the `mlm` stage: language adaptation on raw target-language text.

`mask_tokens` (numpy, host side, in the input pipeline) picks the positions to predict the way
Google's original BERT data builder does (create_pretraining_data.py): per row, exactly
max(1, round(n * prob)) of the n maskable tokens (never special tokens, never padding), at most
`max_predictions` of them, then BERT's 80/10/10 rule: 80% become the mask token, 10% a uniformly
random vocabulary id, 10% stay as they are. A fixed count per row (instead of a Bernoulli draw per
token, as transformers' DataCollatorForLanguageModeling does) gives a hard static bound,
`max_predictions(L, prob)`, that `mlm_loss` uses to gather ONLY the predicted positions: the
[B, K, V] logits of K ~ 0.15 L positions instead of [B, L, V].
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

IGNORE = -100  # label of a position that is not predicted (torch CrossEntropyLoss's ignore_index)


def max_predictions(seq_len: int, prob: float) -> int:
    """Upper bound of the positions `mask_tokens` picks per row of length seq_len (a static shape)."""
    return max(1, int(np.rint(seq_len * prob)))


def mask_tokens(input_ids, attention_mask, special_mask, *, vocab_size: int, mask_token_id: int,
                prob: float = 0.15, rng, max_predictions_per_row: int | None = None,
                ) -> tuple[np.ndarray, np.ndarray]:
    """(masked input ids, labels) [B, L] int32 for BERT's masked-LM objective.

    input_ids / attention_mask / special_mask [B, L]: a position is maskable when attention_mask
    is 1 and special_mask is 0 (the tokenizer's `return_special_tokens_mask`). Per row, exactly
    min(K, max(1, round(n * prob))) of its n maskable positions are drawn uniformly without
    replacement (none when n = 0), K = `max_predictions_per_row` (default `max_predictions(L, prob)`).
    Of those, 80% -> mask_token_id, 10% -> a uniform id in [0, vocab_size), 10% unchanged.
    labels hold the original id at the drawn positions and IGNORE elsewhere. `rng` is a numpy
    Generator or a seed: the same seed gives the same result (a resumable input pipeline seeds
    it per step, e.g. [seed, step]).
    """
    if not 0.0 < prob < 1.0:
        raise ValueError(f"mask_tokens: prob must lie in (0, 1), got {prob}")
    ids = np.asarray(input_ids)
    if ids.ndim != 2:
        raise ValueError(f"mask_tokens: expected input_ids [B, L], got shape {ids.shape}")
    rng = np.random.default_rng(rng)
    limit = max_predictions_per_row
    if limit is None:
        limit = max_predictions(ids.shape[1], prob)
    maskable = np.asarray(attention_mask).astype(bool) & ~np.asarray(special_mask).astype(bool)
    n = maskable.sum(axis=1)
    count = np.where(n > 0, np.minimum(limit, np.maximum(1, np.rint(n * prob).astype(np.int64))), 0)
    # A uniformly random order of each row's maskable positions; its first `count` are predicted.
    keys = np.where(maskable, rng.random(ids.shape), np.inf)
    rank = np.argsort(np.argsort(keys, axis=1, kind="stable"), axis=1, kind="stable")
    chosen = rank < count[:, None]
    action = rng.random(ids.shape)
    random_ids = rng.integers(0, vocab_size, ids.shape)
    masked = np.where(chosen & (action < 0.8), mask_token_id, ids)
    masked = np.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, masked)
    labels = np.where(chosen, ids, IGNORE)
    return masked.astype(np.int32), labels.astype(np.int32)


def _predicted_positions(labels: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """Per row, the first k positions whose label is not IGNORE, in order: positions, valid [B, k]."""
    length = labels.shape[1]
    predicted = labels != IGNORE
    # Predicted positions score L - i > 0, the others 0: top_k returns the predicted ones first, in order.
    score = jnp.where(predicted, length - jnp.arange(length, dtype=jnp.int32), 0)
    _, positions = jax.lax.top_k(score, k)
    return positions, jnp.take_along_axis(predicted, positions, axis=1)


def mlm_loss(model, input_ids, attention_mask, labels, token_type_ids=None, *,
             max_predictions_per_row: int | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean cross-entropy over the predicted tokens (labels != IGNORE) through the model's MLM head.

    Equals transformers' `BertForMaskedLM(..., labels=labels).loss` (a token-level mean over the
    batch). Only the predicted positions are projected onto the vocabulary: the encoder output is
    gathered at the first `max_predictions_per_row` = K predicted positions of each row (default L:
    every position) before the MLM transform and the [B, K, V] float32 logits; a row with more than
    K predicted positions would lose the rest, so pass the K `mask_tokens` used (`max_predictions`).
    Returns (loss, {"mlm_loss", "mlm_accuracy", "mlm_tokens"}) as float32 scalars.
    """
    W, b = model.vocab_projection()  # raises when the model has no MLM head
    labels = jnp.asarray(labels)
    k = labels.shape[1] if max_predictions_per_row is None else min(max_predictions_per_row, labels.shape[1])
    positions, valid = _predicted_positions(labels, k)
    x = model.sequence_output(input_ids, attention_mask, token_type_ids)
    h = model.mlm(jnp.take_along_axis(x, positions[..., None], axis=1))  # the MLM transform is per position
    logits = jnp.einsum("bkd,vd->bkv", h, W.astype(h.dtype), preferred_element_type=jnp.float32)
    logits = logits + b.astype(jnp.float32)
    target = jnp.where(valid, jnp.take_along_axis(labels, positions, axis=1), 0)
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), target[..., None], axis=-1)[..., 0]
    weight = valid.astype(jnp.float32)
    tokens = weight.sum()
    denom = jnp.maximum(tokens, 1.0)
    loss = jnp.sum(nll * weight) / denom
    accuracy = jnp.sum((jnp.argmax(logits, axis=-1) == target) * weight) / denom
    return loss, {"mlm_loss": loss, "mlm_accuracy": accuracy, "mlm_tokens": tokens}
