"""`MaskedLMEncoder`: embeddings -> post-LN transformer -> MLM transform -> vocabulary projection.

BERT, DistilBERT and RoBERTa share this module; the subclasses in bert.py / distilbert.py /
roberta.py only change how position ids are made and which activation the MLM transform uses.

Parameter tree (paths as in `nnx.to_flat_state(nnx.state(model, nnx.Param))`):
    embeddings/word [V, d] (vocab, embed)      embeddings/position [P, d] (position, embed)
    embeddings/token_type [T, d] (type, embed) (absent when type_vocab_size == 0)
    embeddings/norm/{scale,bias} [d]
    layers/<i>/attention/{query,key,value} [d, H, Dh] (embed, heads, kv), .../{query,key,value}_bias [H, Dh]
    layers/<i>/attention/out [H, Dh, d] (heads, kv, embed), .../out_bias [d]
    layers/<i>/{attention_norm,ffn_norm}/{scale,bias}, layers/<i>/ffn_up/{kernel [d, F],bias}, ffn_down
    mlm/transform/{kernel [d, d] (embed, None), bias}, mlm/norm/{scale,bias}
    mlm/decoder [V, d] (vocab, embed) (untied models only), mlm/bias [V] (vocab,)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from sembridge_jax.models.config import EncoderConfig
from sembridge_jax.models.heads import dense_pool, splade_pool
from sembridge_jax.models.layers import (
    ACTIVATIONS,
    LayerNorm,
    Linear,
    TransformerLayer,
    attention_bias,
    dropout,
    param,
)

# What a rematerialised transformer layer keeps for the backward pass, per `config.remat_policy`
# (None: the layer is not rematerialised). Every policy but "none" also rematerialises the head's chunks.
REMAT_LAYER_POLICY = {
    "none": None,
    "head": None,
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "full": jax.checkpoint_policies.nothing_saveable,
}


def remat_compiler_options(platform: str) -> dict[str, str]:
    """XLA options that make `jax.checkpoint` / `config.remat_policy` save memory when compiling for `platform`.

    XLA:CPU expands (drops) the optimisation barriers that `jax.checkpoint` puts around a
    recomputation before it runs common-subexpression elimination, which then merges the backward
    pass's recomputed layer with the forward one: the activations stay live and remat saves nothing.
    Skipping that expander keeps the barriers (the CPU backend executes them as no-ops).
    GPU/TPU keep the barriers anyway: no options there.
    """
    return {"xla_disable_hlo_passes": "cse_barrier_expander"} if platform == "cpu" else {}


class Embeddings(nnx.Module):
    def __init__(self, cfg: EncoderConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        d = cfg.hidden_size
        self.word = param(rngs, (cfg.vocab_size, d), ("vocab", "embed"), param_dtype, "normal")
        self.position = param(rngs, (cfg.max_position_embeddings, d), ("position", "embed"), param_dtype, "normal")
        self.token_type = (
            param(rngs, (cfg.type_vocab_size, d), ("type", "embed"), param_dtype, "normal")
            if cfg.type_vocab_size else None
        )
        self.norm = LayerNorm(d, cfg.layer_norm_eps, dtype=dtype, param_dtype=param_dtype)

    def __call__(self, input_ids, position_ids, token_type_ids):
        # Sum in float32 (as the float32 reference does), then normalise into the compute dtype.
        x = jnp.take(self.word[...], input_ids, axis=0).astype(jnp.float32)
        x = x + jnp.take(self.position[...], position_ids, axis=0).astype(jnp.float32)
        if self.token_type is not None:
            tt = jnp.zeros_like(input_ids) if token_type_ids is None else token_type_ids
            x = x + jnp.take(self.token_type[...], tt, axis=0).astype(jnp.float32)
        return self.norm(x)


class MLMHead(nnx.Module):
    """dense -> activation -> LayerNorm, then dot with the vocabulary rows (+ output bias)."""

    def __init__(self, cfg: EncoderConfig, act: str, *, dtype, param_dtype, rngs: nnx.Rngs):
        d = cfg.hidden_size
        self.transform = Linear(d, d, ("embed", None), dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.norm = LayerNorm(d, cfg.layer_norm_eps, dtype=dtype, param_dtype=param_dtype)
        self.decoder = (
            None if cfg.tie_word_embeddings
            else param(rngs, (cfg.vocab_size, d), ("vocab", "embed"), param_dtype, "normal")
        )
        self.bias = param(None, (cfg.vocab_size,), ("vocab",), param_dtype, "zeros")
        self.act = act

    def __call__(self, x):
        return self.norm(ACTIVATIONS[self.act](self.transform(x)))


class MaskedLMEncoder(nnx.Module):
    """A masked-LM transformer encoder with SPLADE and dense pooling (see the module docstring)."""

    mlm_activation: str | None = None  # None: the config's hidden_act

    def __init__(self, config: EncoderConfig, rngs: nnx.Rngs):
        self.config = config
        dtype, param_dtype = jnp.dtype(config.dtype), jnp.dtype(config.param_dtype)
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.embeddings = Embeddings(config, **kw)
        self.layers = nnx.List([
            TransformerLayer(config.hidden_size, config.num_heads, config.intermediate_size, config.layer_norm_eps,
                             config.hidden_act, hidden_dropout=config.hidden_dropout,
                             attention_dropout=config.attention_dropout,
                             attention_output_dropout=config.arch != "distilbert", **kw)
            for _ in range(config.num_layers)
        ])
        self.mlm = MLMHead(config, self.mlm_activation or config.hidden_act, **kw) if config.mlm_head else None

    # Architecture hook -------------------------------------------------------------------------
    def position_ids(self, input_ids, attention_mask) -> jax.Array:
        """Absolute positions 0..L-1 (BERT, DistilBERT)."""
        return jnp.broadcast_to(jnp.arange(input_ids.shape[1], dtype=jnp.int32), input_ids.shape)

    # Encoder -----------------------------------------------------------------------------------
    def sequence_output(self, input_ids, attention_mask, token_type_ids=None, *, dropout_key=None) -> jax.Array:
        """The last transformer layer's output [B, L, d] in the compute dtype (no MLM transform). With a
        `dropout_key` (training) the config's dropout applies, where Hugging Face's model in train mode has it."""
        keys = [None] * (len(self.layers) + 1) if dropout_key is None else list(
            jax.random.split(dropout_key, len(self.layers) + 1))
        x = self.embeddings(input_ids, self.position_ids(input_ids, attention_mask), token_type_ids)
        x = dropout(x, self.config.hidden_dropout, keys[0])
        bias = attention_bias(attention_mask)

        def run(layer, x, bias, key):
            return layer(x, bias, key)

        policy = REMAT_LAYER_POLICY[self.config.remat_policy]
        if policy is not None:
            # The backward pass recomputes the layer from what the policy kept. Effective on CPU only
            # when compiled with `remat_compiler_options` (see there).
            run = nnx.remat(run, policy=policy)
        for layer, key in zip(self.layers, keys[1:], strict=True):
            x = run(layer, x, bias, key)
        return x

    def _require_head(self):
        if self.mlm is None:
            raise ValueError("this encoder was loaded without an MLM head (config.mlm_head is False): "
                             "only `embed` / `sequence_output` are available")

    def hidden_states(self, input_ids, attention_mask, token_type_ids=None, *, dropout_key=None) -> jax.Array:
        """[B, L, d] vectors after the MLM transform: the ones dotted with the vocabulary rows."""
        self._require_head()
        return self.mlm(self.sequence_output(input_ids, attention_mask, token_type_ids, dropout_key=dropout_key))

    def vocab_projection(self) -> tuple[jax.Array, jax.Array]:
        """(W [V, d], b [V]) in param dtype: the word embeddings when tied, else the decoder rows."""
        self._require_head()
        W = self.embeddings.word if self.mlm.decoder is None else self.mlm.decoder
        return W[...], self.mlm.bias[...]

    def mlm_logits(self, input_ids, attention_mask, token_type_ids=None) -> jax.Array:
        """MLM logits [B, L, V] in float32 (materialises the full tensor: for tests and small inputs)."""
        h = self.hidden_states(input_ids, attention_mask, token_type_ids)
        W, b = self.vocab_projection()
        return jnp.einsum("bld,vd->blv", h, W.astype(h.dtype), preferred_element_type=jnp.float32) + b.astype(
            jnp.float32)

    def splade(self, input_ids, attention_mask, token_type_ids=None, *, pooling=None, chunk_size=None,
               top_k=None, dropout_key=None) -> jax.Array:
        """SPLADE vectors [B, V] float32; pooling / chunk_size default to the config's settings; `dropout_key`:
        see `sequence_output`."""
        h = self.hidden_states(input_ids, attention_mask, token_type_ids, dropout_key=dropout_key)
        W, b = self.vocab_projection()
        return splade_pool(
            h, attention_mask, W, b,
            pooling=pooling or self.config.splade_pooling,
            chunk_size=self.config.splade_chunk_size if chunk_size is None else chunk_size,
            top_k=top_k, remat=self.config.remat_policy != "none",
        )

    def embed(self, input_ids, attention_mask, token_type_ids=None, *, pooling="mean", normalize=True) -> jax.Array:
        """Dense sentence vectors [B, d] float32 from the encoder output (mean or CLS pooling)."""
        x = self.sequence_output(input_ids, attention_mask, token_type_ids)
        return dense_pool(x, attention_mask, pooling=pooling, normalize=normalize)
