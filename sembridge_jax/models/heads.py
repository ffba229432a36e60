"""Pure pooling heads: SPLADE (sparse, over the vocabulary) and dense (mean / CLS) pooling.

`splade_pool` computes w[b, v] = pool_i mask[b, i] * log1p(relu(h[b, i] . W[v] + bias[v])).
With `chunk_size > 0` it walks the sequence in chunks of that many tokens inside `lax.scan`, each
chunk under `jax.checkpoint`, so the forward pass holds one [B, chunk, V] float32 block at a time
and the backward pass recomputes each chunk's logits instead of storing them: memory grows with
the chunk, not with the sequence (the scan keeps one [B, V] running pool per chunk for the
backward pass).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

POOLINGS = ("max", "sum")


def splade_activation(logits: jax.Array) -> jax.Array:
    """log(1 + relu(logits)), the SPLADE saturation."""
    return jnp.log1p(jax.nn.relu(logits))


def _pooled_block(h, mask, W, b, pooling: str) -> jax.Array:
    """Pool one block of tokens: h [B, c, d] (compute dtype), mask [B, c] -> [B, V] float32."""
    logits = jnp.einsum("bld,vd->blv", h, W.astype(h.dtype), preferred_element_type=jnp.float32)
    act = splade_activation(logits + b.astype(jnp.float32)) * mask[..., None]
    return act.max(axis=1) if pooling == "max" else act.sum(axis=1)


def keep_top_k(w: jax.Array, k: int) -> jax.Array:
    """Zero all but the k largest entries of each row of w [B, V] (exactly k kept, ties by index)."""
    k = min(int(k), w.shape[-1])
    values, idx = jax.lax.top_k(w, k)
    rows = jnp.arange(w.shape[0])[:, None]
    return jnp.zeros_like(w).at[rows, idx].set(values)


def splade_pool(h, mask, W, b, pooling: str = "max", chunk_size: int = 0, top_k: int | None = None) -> jax.Array:
    """SPLADE vectors [B, V] float32 from hidden states h [B, L, d] and vocabulary rows W [V, d], b [V].

    mask [B, L] is 1 for real tokens. The matmul runs in h's dtype with float32 accumulation.
    chunk_size 0 (or >= L) computes all positions at once; otherwise chunked + rematerialised.
    top_k (None = off) keeps the k largest weights of each row.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    mask = mask.astype(jnp.float32)
    B, L, d = h.shape
    if chunk_size <= 0 or chunk_size >= L:
        out = _pooled_block(h, mask, W, b, pooling)
    else:
        n = -(-L // chunk_size)
        pad = n * chunk_size - L
        # Padding positions get mask 0 and contribute 0, which is neutral for sum and for max
        # (the activation is >= 0 and the running max starts at 0).
        h = jnp.pad(h, ((0, 0), (0, pad), (0, 0)))
        mask = jnp.pad(mask, ((0, 0), (0, pad)))
        hs = h.reshape(B, n, chunk_size, d).swapaxes(0, 1)
        ms = mask.reshape(B, n, chunk_size).swapaxes(0, 1)
        combine = jnp.maximum if pooling == "max" else jnp.add

        @jax.checkpoint
        def step(acc, xs):
            return combine(acc, _pooled_block(xs[0], xs[1], W, b, pooling)), None

        out, _ = jax.lax.scan(step, jnp.zeros((B, W.shape[0]), jnp.float32), (hs, ms))
    if top_k is not None:
        out = keep_top_k(out, top_k)
    return out


def dense_pool(x, mask, pooling: str = "mean", normalize: bool = True) -> jax.Array:
    """Sentence vectors [B, d] float32 from token vectors x [B, L, d]: masked mean or the first token.

    normalize divides by the L2 norm (floored at 1e-12, like torch.nn.functional.normalize).
    """
    x = x.astype(jnp.float32)
    if pooling == "mean":
        m = mask.astype(jnp.float32)[..., None]
        out = (x * m).sum(1) / jnp.maximum(m.sum(1), 1.0)
    elif pooling == "cls":
        out = x[:, 0]
    else:
        raise ValueError(f"dense pooling must be 'mean' or 'cls', got {pooling!r}")
    if normalize:
        out = out / jnp.maximum(jnp.linalg.norm(out, axis=-1, keepdims=True), 1e-12)
    return out
