"""Pure pooling heads: SPLADE (sparse, over the vocabulary) and dense (mean / CLS) pooling.

`splade_pool` computes w[b, v] = pool_i mask[b, i] * log1p(relu(h[b, i] . W[v] + bias[v])).

With `chunk_size > 0` the sequence is walked in chunks of that many tokens inside `lax.scan`, so
the forward pass holds one [B, chunk, V] float32 block of logits at a time, never [B, L, V].

Max pooling (SPLADE-max) needs no [B, L, V] tensor in the backward pass either, and no
recomputation: log1p(relu(.)) is non-decreasing, so it commutes with the max, and the head takes
the masked max of the raw logits, keeping only its position ([B, V] int32) for the backward pass
(`masked_max_logits`, a custom VJP). The gradient of a max reaches one position per (b, v), so
the backward pass rebuilds each chunk's sparse logit gradient from those positions and runs the
two matmuls, dh = dlogits @ W and dW^T = h^T @ dlogits (the latter in the orientation that needs no
transposed copy of dlogits on CPU). Activation and bias apply to the pooled [B, V] values only.

Sum pooling activates every logit. Its chunks run under `jax.checkpoint` when `remat` (the default):
the backward pass recomputes each chunk's logits instead of storing them, so memory grows with the
chunk, not with the sequence; without `remat` the backward pass keeps every chunk's logits.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

POOLINGS = ("max", "sum")


def splade_activation(logits: jax.Array) -> jax.Array:
    """log(1 + relu(logits)), the SPLADE saturation."""
    return jnp.log1p(jax.nn.relu(logits))


def _logits(h, W) -> jax.Array:
    """h [B, c, d] (compute dtype) . W [V, d] -> [B, c, V] float32 (float32 accumulation)."""
    return jnp.einsum("bld,vd->blv", h, W.astype(h.dtype), preferred_element_type=jnp.float32)


def _chunks(x, chunk: int) -> jax.Array:
    """[B, n * chunk, ...] -> [n, B, chunk, ...] (the scan axis first)."""
    return x.reshape(x.shape[0], x.shape[1] // chunk, chunk, *x.shape[2:]).swapaxes(0, 1)


def _scan(step, init, xs):
    """`lax.scan`, or one direct call for a single chunk (no loop in the compiled program)."""
    if jax.tree.leaves(xs)[0].shape[0] == 1:
        carry, y = step(init, jax.tree.map(lambda x: x[0], xs))
        return carry, jax.tree.map(lambda x: x[None], y)
    return jax.lax.scan(step, init, xs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def masked_max_logits(h, mask, W, chunk: int) -> jax.Array:
    """max over the positions i with mask[b, i] > 0 of h[b, i] . W[v]: [B, V] float32 (-inf where no
    position is unmasked). h [B, L, d] with L a multiple of `chunk`, mask [B, L] float32, W [V, d]."""
    return _max_logits_fwd(h, mask, W, chunk)[0]


def _max_logits_fwd(h, mask, W, chunk):
    starts = jnp.arange(h.shape[1] // chunk, dtype=jnp.int32) * chunk

    def step(carry, xs):
        best, where = carry
        hc, mc, start = xs
        logits = jnp.where(mc[..., None] > 0, _logits(hc, W), -jnp.inf)
        top = logits.max(axis=1)
        # the first position holding the max (two plain reductions: XLA:CPU's argmax is 10x slower)
        pos = jnp.min(jnp.where(logits == top[:, None, :], jnp.arange(chunk, dtype=jnp.int32)[None, :, None], chunk),
                      axis=1) + start
        take = top > best  # ties keep the earlier chunk's position
        return (jnp.where(take, top, best), jnp.where(take, pos, where)), None

    shape = (h.shape[0], W.shape[0])
    init = (jnp.full(shape, -jnp.inf, jnp.float32), jnp.zeros(shape, jnp.int32))
    (best, where), _ = _scan(step, init, (_chunks(h, chunk), _chunks(mask, chunk), starts))
    return best, (h, mask, W, where)


def _max_logits_bwd(chunk, residuals, g):
    h, mask, W, where = residuals
    Wc = W.astype(h.dtype)
    starts = jnp.arange(h.shape[1] // chunk, dtype=jnp.int32) * chunk

    def step(dW_t, xs):
        hc, start = xs
        at_max = start + jnp.arange(chunk, dtype=jnp.int32)[None, :, None] == where[:, None, :]
        dlogits = jnp.where(at_max, g[:, None, :], 0.0).astype(h.dtype)  # [B, chunk, V], one entry per (b, v)
        # Products in the compute dtype, as autodiff of a compute-dtype matmul gives (XLA:CPU has no
        # bf16 x bf16 -> f32 kernel for these); the chunks' dW^T add up in float32.
        dh = jnp.einsum("blv,vd->bld", dlogits, Wc)
        return dW_t + jnp.einsum("bld,blv->dv", hc, dlogits).astype(jnp.float32), dh

    dW_t, dh = _scan(step, jnp.zeros((h.shape[2], W.shape[0]), jnp.float32), (_chunks(h, chunk), starts))
    return dh.swapaxes(0, 1).reshape(h.shape), jnp.zeros_like(mask), dW_t.T.astype(W.dtype)


masked_max_logits.defvjp(_max_logits_fwd, _max_logits_bwd)


def _sum_pool(h, mask, W, b, chunk: int, remat: bool) -> jax.Array:
    """sum_i mask[b, i] * log1p(relu(h[b, i] . W[v] + b[v])) over chunks (each recomputed when `remat`)."""

    def step(acc, xs):
        act = splade_activation(_logits(xs[0], W) + b.astype(jnp.float32)) * xs[1][..., None]
        return acc + act.sum(axis=1), None

    step = jax.checkpoint(step) if remat and h.shape[1] > chunk else step
    out, _ = _scan(step, jnp.zeros((h.shape[0], W.shape[0]), jnp.float32), (_chunks(h, chunk), _chunks(mask, chunk)))
    return out


def keep_top_k(w: jax.Array, k: int) -> jax.Array:
    """Zero all but the k largest entries of each row of w [B, V] (exactly k kept, ties by index)."""
    k = min(int(k), w.shape[-1])
    values, idx = jax.lax.top_k(w, k)
    rows = jnp.arange(w.shape[0])[:, None]
    return jnp.zeros_like(w).at[rows, idx].set(values)


def splade_pool(h, mask, W, b, pooling: str = "max", chunk_size: int = 0, top_k: int | None = None,
                remat: bool = True) -> jax.Array:
    """SPLADE vectors [B, V] float32 from hidden states h [B, L, d] and vocabulary rows W [V, d], b [V].

    mask [B, L] is 1 for real tokens. The matmul runs in h's dtype with float32 accumulation.
    chunk_size 0 (or >= L) computes all positions at once; otherwise chunk by chunk (module
    docstring). `remat`: sum pooling recomputes each chunk in the backward pass (max pooling never
    needs to). top_k (None = off) keeps the k largest weights of each row.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    mask = mask.astype(jnp.float32)
    length = h.shape[1]
    chunk = length if chunk_size <= 0 or chunk_size >= length else chunk_size
    pad = -length % chunk
    if pad:  # padding positions get mask 0: no contribution to a max or a sum
        h = jnp.pad(h, ((0, 0), (0, pad), (0, 0)))
        mask = jnp.pad(mask, ((0, 0), (0, pad)))
    if pooling == "max":
        out = splade_activation(masked_max_logits(h, mask, W, chunk) + b.astype(jnp.float32))
    else:
        out = _sum_pool(h, mask, W, b, chunk, remat)
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
