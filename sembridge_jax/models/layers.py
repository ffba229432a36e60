"""Building blocks shared by the BERT / DistilBERT / RoBERTa encoders (post-LayerNorm transformers).

Every parameter is an `nnx.Param` carrying logical axis names in its `out_sharding` metadata, drawn
from {"vocab", "embed", "mlp", "heads", "kv", "position", "type", None}. Eager sharding is off, so a
model builds without a mesh; the names become mesh axes only through logical axis rules:

    from flax import nnx
    from flax.core import spmd
    state = nnx.state(model, nnx.Param)
    specs = nnx.get_partition_spec(state)                      # PartitionSpec('vocab', 'embed'), ...
    with spmd.logical_axis_rules([("vocab", "model"), ("mlp", "model"), ("heads", "model")]):
        specs = nnx.get_partition_spec(state)                  # PartitionSpec('model', None), ...
    shardings = jax.tree.map(lambda p: jax.sharding.NamedSharding(mesh, p), specs)

`logical_axes(model)` below returns the raw names per parameter path.

Parameters are stored in `param_dtype`; each block casts them to the compute `dtype` at use.
LayerNorm statistics and attention softmax are computed in float32 whatever the compute dtype.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

INIT_STD = 0.02  # BERT's initializer_range

ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_fast": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
}


def param(rngs: nnx.Rngs | None, shape: Sequence[int], axes: Sequence[str | None], dtype, init: str) -> nnx.Param:
    """An `nnx.Param` with logical axis names; `init` is "normal" (std 0.02), "zeros" or "ones"."""
    if len(axes) != len(shape):
        raise ValueError(f"axes {axes} do not match shape {shape}")
    if init == "normal":
        value = INIT_STD * jax.random.normal(rngs.params(), shape, dtype)
    elif init == "zeros":
        value = jnp.zeros(shape, dtype)
    else:
        value = jnp.ones(shape, dtype)
    return nnx.Param(value, out_sharding=tuple(axes), eager_sharding=False)


def logical_axes(model: nnx.Module) -> dict[tuple, tuple]:
    """Parameter path -> logical axis names (the `out_sharding` metadata)."""
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    return {path: tuple(var.get_metadata().get("out_sharding") or ()) for path, var in flat}


class Linear(nnx.Module):
    """y = x @ kernel + bias with kernel [d_in, d_out] (the transpose of torch's weight)."""

    def __init__(self, d_in: int, d_out: int, axes: tuple, *, dtype, param_dtype, rngs: nnx.Rngs):
        self.kernel = param(rngs, (d_in, d_out), axes, param_dtype, "normal")
        self.bias = param(rngs, (d_out,), axes[1:], param_dtype, "zeros")
        self.dtype = dtype

    def __call__(self, x):
        return x @ self.kernel[...].astype(self.dtype) + self.bias[...].astype(self.dtype)


class LayerNorm(nnx.Module):
    """LayerNorm over the last axis, statistics in float32, output in the compute dtype."""

    def __init__(self, dim: int, eps: float, *, dtype, param_dtype):
        self.scale = param(None, (dim,), ("embed",), param_dtype, "ones")
        self.bias = param(None, (dim,), ("embed",), param_dtype, "zeros")
        self.eps = eps
        self.dtype = dtype

    def __call__(self, x):
        x = x.astype(jnp.float32)
        mean = x.mean(-1, keepdims=True)
        var = jnp.square(x - mean).mean(-1, keepdims=True)
        y = (x - mean) * jax.lax.rsqrt(var + self.eps)
        return (y * self.scale[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)).astype(self.dtype)


def dropout(x, rate: float, key) -> jax.Array:
    """Inverted dropout (as torch.nn.Dropout in train mode): zero each element with probability `rate`, scale
    the rest by 1 / (1 - rate). `key` None (evaluation) or rate 0: x unchanged."""
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)


class SelfAttention(nnx.Module):
    """Multi-head self-attention; q/k/v kernels [d, heads, head_dim], output kernel [heads, head_dim, d]."""

    def __init__(self, d: int, num_heads: int, *, dtype, param_dtype, rngs: nnx.Rngs, dropout_rate: float = 0.0):
        hd = d // num_heads
        self.dropout_rate = dropout_rate  # on the attention probabilities, when called with a key
        for name in ("query", "key", "value"):
            setattr(self, name, param(rngs, (d, num_heads, hd), ("embed", "heads", "kv"), param_dtype, "normal"))
            setattr(self, name + "_bias", param(None, (num_heads, hd), ("heads", "kv"), param_dtype, "zeros"))
        self.out = param(rngs, (num_heads, hd, d), ("heads", "kv", "embed"), param_dtype, "normal")
        self.out_bias = param(None, (d,), ("embed",), param_dtype, "zeros")
        self.dtype = dtype

    def __call__(self, x, attn_bias, dropout_key=None):
        """x [B, L, d]; attn_bias [B, 1, 1, L] additive float32 (0 or a large negative)."""
        dt = self.dtype

        def proj(w, b):
            return jnp.einsum("bld,dhk->blhk", x, w[...].astype(dt)) + b[...].astype(dt)

        q, k, v = (proj(w, b) for w, b in ((self.query, self.query_bias), (self.key, self.key_bias),
                                             (self.value, self.value_bias)))
        scores = jnp.einsum("bqhk,bthk->bhqt", q, k, preferred_element_type=jnp.float32)
        scores = scores / jnp.sqrt(jnp.float32(q.shape[-1])) + attn_bias
        probs = dropout(jax.nn.softmax(scores, axis=-1).astype(dt), self.dropout_rate, dropout_key)
        ctx = jnp.einsum("bhqt,bthk->bqhk", probs, v)
        return jnp.einsum("blhk,hkd->bld", ctx, self.out[...].astype(dt)) + self.out_bias[...].astype(dt)


class TransformerLayer(nnx.Module):
    """Post-LN block: x = LN(x + attn(x)); x = LN(x + down(act(up(x)))). Called with a `dropout_key` (training),
    BERT's dropout applies: on the attention probabilities (`attention_dropout`) and on both sublayers' outputs
    before the residual sum (`hidden_dropout`; DistilBERT has none on the attention's output:
    `attention_output_dropout` False)."""

    def __init__(self, d: int, num_heads: int, d_ff: int, eps: float, act: str, *, dtype, param_dtype,
                 rngs: nnx.Rngs, hidden_dropout: float = 0.0, attention_dropout: float = 0.0,
                 attention_output_dropout: bool = True):
        kw = dict(dtype=dtype, param_dtype=param_dtype)
        self.attention = SelfAttention(d, num_heads, rngs=rngs, dropout_rate=attention_dropout, **kw)
        self.hidden_dropout = hidden_dropout
        self.attention_output_dropout = hidden_dropout if attention_output_dropout else 0.0
        self.attention_norm = LayerNorm(d, eps, **kw)
        self.ffn_up = Linear(d, d_ff, ("embed", "mlp"), rngs=rngs, **kw)
        self.ffn_down = Linear(d_ff, d, ("mlp", "embed"), rngs=rngs, **kw)
        self.ffn_norm = LayerNorm(d, eps, **kw)
        self.act = act

    def __call__(self, x, attn_bias, dropout_key=None):
        k_attn, k_out, k_ffn = (None,) * 3 if dropout_key is None else jax.random.split(dropout_key, 3)
        x = self.attention_norm(x + dropout(self.attention(x, attn_bias, k_attn), self.attention_output_dropout,
                                            k_out))
        return self.ffn_norm(x + dropout(self.ffn_down(ACTIVATIONS[self.act](self.ffn_up(x))), self.hidden_dropout,
                                         k_ffn))


def attention_bias(attention_mask) -> jax.Array:
    """[B, L] 0/1 mask -> [B, 1, 1, L] additive float32 bias for the attention scores."""
    keep = attention_mask.astype(bool)[:, None, None, :]
    return jnp.where(keep, 0.0, jnp.finfo(jnp.float32).min).astype(jnp.float32)
