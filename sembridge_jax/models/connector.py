"""`ConnectorSparseEncoder`: any language into the English SPLADE vocabulary through a frozen multilingual
encoder and a small trained connector (LUSIFER's architecture applied to SPLADE, as MILCO does).

    text --bridge tokenizer--> frozen multilingual encoder (e.g. multilingual-e5-small) -> states [B, L, d_b]
      -> connector: LayerNorm -> Linear d_b -> d_c -> GELU -> Linear d_c -> d   (per token)
         (+ `n_added` learnable tokens appended after each text's last real token, LUSIFER)
      -> + English position / token-type-0 embeddings -> English embedding LayerNorm
      -> the English SPLADE's transformer layers -> MLM transform
      -> . English vocabulary rows + output bias -> max_i log1p(relu(.))   (SPLADE-max, English vocabulary)

LexEcho (MILCO, `config.echo`): a scalar head w_i = relu(u . x_i + c) on each frozen bridge state x_i, pooled
per bridge token id into a SECOND block over the bridge vocabulary and multiplied by a learnable scale s:
the vector becomes [English vocabulary | bridge vocabulary] (`config.english_size` + `config.bridge_vocab`).
`config.echo_pooling` pools a token's occurrences: "log_sum" = log1p of their summed weights, "max" = the
largest weight (SPLADE-max's rule; the research prototype summed without the log). The log of the sum is
BM25's term-frequency saturation in SPLADE's own form: a page naming a term five times outranks one naming it
once, by less than five times. Max pooling forgets how often a page repeats a term, and the repeats carry what
the head, trained on short English texts, cannot: log_sum lifted the zero-shot Korean score from 0.530 to
0.607 with the same head (BENCHMARKS.md, "Connector route"). Two texts sharing a bridge piece match on it,
which helps same-language retrieval; an English index has no such block, so cross-lingual scoring reads the
English block only (`english_from_states`), which is unchanged by the echo.

The English model's word-embedding lookup is the only part replaced: its layers were trained on
LayerNorm(word + position + type), so the connector output goes through the same position/type sum and
the same LayerNorm (this fixes the input scale the connector has to hit). The vocabulary rows and the
output bias never train (`Frozen`): the output space stays exactly the English model's, which is what lets
a query in any language be scored against an existing English index. `train_english=False` also freezes
the position/type embeddings, the LayerNorm, the layers and the MLM transform.

`Frozen` variables are not `nnx.Param`s: `models.state.split_model` (hence `training.trainer.fit`) leaves
them out of the trained parameters and the optimiser state, so they stay bit-identical. The frozen
multilingual encoder (`bridge`) is optional: training runs from cached states (`*_from_states`), and
`splade(input_ids, ...)` (the `SparseEncoder` interface, bridge token ids) needs it.

Parameter tree: connector/{norm,fc1,fc2}, added [n, d], position [P, d], token_type [T, d], norm,
layers/<i>/..., mlm_transform, mlm_norm, vocab [V, d] (Frozen), vocab_bias [V] (Frozen), bridge/... (Frozen),
echo/{proj,scale} (when `config.echo`).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from sembridge_jax.models.build import build_model
from sembridge_jax.models.config import EncoderConfig
from sembridge_jax.models.encoder import MaskedLMEncoder
from sembridge_jax.models.heads import keep_top_k, masked_max_logits, splade_pool
from sembridge_jax.models.layers import ACTIVATIONS, INIT_STD, LayerNorm, Linear, attention_bias

CONNECTOR_KINDS = ("mlp", "identity")
ECHO_POOLINGS = ("log_sum", "max")
# The parts taken over from the English model (attribute names = parameter path prefixes).
ENGLISH_PARTS = ("position", "token_type", "norm", "layers", "mlm_transform", "mlm_norm")
# LexEcho's initial offset c: bridge states have norm ~5 (multilingual-e5-small), so u ~ N(0, 0.02^2) gives
# u . x of std ~0.1; with c = 0.1 most tokens start active (the relu passes gradient from the first step,
# where c = 0 would start half of them dead) at a weight ~0.1, small next to SPLADE weights of 1-3.
ECHO_BIAS_INIT = 0.1


class Frozen(nnx.Variable):
    """A weight that never trains: not an `nnx.Param`, so the trainer neither differentiates nor updates it."""


def freeze(module: nnx.Module) -> nnx.Module:
    """Turn every `nnx.Param` of `module` (recursively) into a `Frozen` with the same value and metadata."""
    for _, sub in module.iter_modules():
        for name, value in list(vars(sub).items()):
            if isinstance(value, nnx.Param):
                setattr(sub, name, Frozen(value.get_value(), **value.get_metadata()))
    return module


def _frozen(value: jax.Array, axes: tuple) -> Frozen:
    return Frozen(value, out_sharding=axes, eager_sharding=False)


@dataclasses.dataclass(frozen=True)
class ConnectorConfig:
    """The connector model's architecture. `english`: the English SPLADE's config; `bridge`: the frozen
    multilingual encoder's (None = the model runs from cached states only)."""

    english: EncoderConfig
    bridge_hidden: int
    kind: str = "mlp"  # "mlp" | "identity" (states fed as they are; needs bridge_hidden == d)
    connector_hidden: int = 0  # 0 = bridge_hidden (LUSIFER: d_b -> d_b -> d)
    n_added: int = 0
    train_english: bool = True
    bridge: EncoderConfig | None = None
    dtype: str = "float32"
    echo: bool = False  # LexEcho: a second output block over the bridge vocabulary (module docstring)
    bridge_vocab: int = 0  # the bridge vocabulary size (the echo block's width); 0 = the bridge config's
    echo_scale: float = 0.5  # the echo block's initial scale (learned; 0.5 = the prototype's fixed weight)
    echo_pooling: str = "max"  # "log_sum" | "max" (module docstring); "max" = what folders without the key hold

    def __post_init__(self):
        if self.bridge is not None and not self.bridge_vocab:
            object.__setattr__(self, "bridge_vocab", self.bridge.vocab_size)
        if self.bridge is not None and self.bridge_vocab != self.bridge.vocab_size:
            raise ValueError(f"the bridge encoder's vocabulary has {self.bridge.vocab_size} ids, "
                             f"connector.bridge_vocab is {self.bridge_vocab}")
        if self.echo and self.bridge_vocab <= 0:
            raise ValueError("connector.echo needs the bridge vocabulary size: set bridge_vocab or the bridge config")
        if self.echo_pooling not in ECHO_POOLINGS:
            raise ValueError(f"connector.echo_pooling must be one of {ECHO_POOLINGS}, got {self.echo_pooling!r}")
        if self.kind not in CONNECTOR_KINDS:
            raise ValueError(f"connector.kind must be one of {CONNECTOR_KINDS}, got {self.kind!r}")
        if self.kind == "identity" and self.bridge_hidden != self.english.hidden_size:
            raise ValueError(f"connector.kind='identity' needs the bridge hidden size ({self.bridge_hidden}) to equal "
                             f"the English model's ({self.english.hidden_size})")
        if self.bridge is not None and self.bridge.hidden_size != self.bridge_hidden:
            raise ValueError(f"the bridge encoder's hidden size is {self.bridge.hidden_size}, "
                             f"connector.bridge_hidden is {self.bridge_hidden}")

    # What `api.SparseEncoder` / the evaluator read from `model.config` (inputs are bridge tokens).
    mlm_head = True

    @property
    def english_size(self) -> int:
        """Width of the English block (the first columns of every vector)."""
        return self.english.vocab_size

    @property
    def vocab_size(self) -> int:
        """Width of the output vectors: the English vocabulary, + the bridge vocabulary with the echo."""
        return self.english.vocab_size + (self.bridge_vocab if self.echo else 0)

    @property
    def splade_chunk_size(self) -> int:
        return self.english.splade_chunk_size

    @property
    def splade_pooling(self) -> str:
        return self.english.splade_pooling

    def _bridge(self) -> EncoderConfig:
        if self.bridge is None:
            raise ValueError("this connector model has no bridge encoder: it reads cached states only")
        return self.bridge

    @property
    def max_tokens(self) -> int:
        return min(self._bridge().max_tokens, self.english.max_position_embeddings - self.n_added)

    @property
    def type_vocab_size(self) -> int:
        return self._bridge().type_vocab_size

    @property
    def pad_token_id(self) -> int:
        return self._bridge().pad_token_id

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["english"] = dataclasses.asdict(self.english)
        out["bridge"] = None if self.bridge is None else dataclasses.asdict(self.bridge)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> ConnectorConfig:
        d = dict(d)
        d["english"] = EncoderConfig.from_dict(d["english"])
        d["bridge"] = None if d.get("bridge") is None else EncoderConfig.from_dict(d["bridge"])
        return cls(**d)


class Connector(nnx.Module):
    """Per-token LayerNorm -> Linear d_in -> d_hidden -> GELU -> Linear d_hidden -> d_out."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, eps: float, *, dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=jnp.float32)
        self.norm = LayerNorm(d_in, eps, **kw)
        self.fc1 = Linear(d_in, d_hidden, ("embed", "mlp"), rngs=rngs, **kw)
        self.fc2 = Linear(d_hidden, d_out, ("mlp", "embed"), rngs=rngs, **kw)

    def __call__(self, x):
        return self.fc2(ACTIVATIONS["gelu"](self.fc1(self.norm(x))))


class Echo(nnx.Module):
    """LexEcho: per-token weight relu(u . x + c) (`proj`, d_b -> 1) and the block's scale s (a scalar)."""

    def __init__(self, d_in: int, scale: float, *, dtype, rngs: nnx.Rngs):
        self.proj = Linear(d_in, 1, ("embed", None), dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        self.proj.bias[...] = jnp.full((1,), ECHO_BIAS_INIT, jnp.float32)
        self.scale = nnx.Param(jnp.asarray(scale, jnp.float32), out_sharding=(), eager_sharding=False)

    def weights(self, states, mask) -> jax.Array:
        """[B, L] float32, 0 at padding."""
        return jax.nn.relu(self.proj(jnp.asarray(states))[..., 0].astype(jnp.float32)) * mask.astype(jnp.float32)


def pool_by_id(weights, ids, width: int, pooling: str) -> jax.Array:
    """[B, width] float32: per token id v, "max": max(0, max over i with ids[b, i] == v of weights[b, i]);
    "log_sum": log1p(sum over those i of weights[b, i]). weights >= 0 (so the zero start is the identity of
    both); ids outside [0, width) are dropped."""
    rows = jnp.arange(weights.shape[0])[:, None]
    out = jnp.zeros((weights.shape[0], width), jnp.float32).at[rows, ids]
    if pooling == "max":
        return out.max(weights, mode="drop")
    return jnp.log1p(out.add(weights, mode="drop"))


class ConnectorSparseEncoder(nnx.Module):
    """See the module docstring. `english`: a loaded English SPLADE (its parts are taken over, not copied:
    pass a model you do not use elsewhere); None builds a random one from `config.english` (tests).
    `bridge`: the multilingual encoder (frozen here), or None for cached states."""

    def __init__(self, config: ConnectorConfig, rngs: nnx.Rngs, *, english: MaskedLMEncoder | None = None,
                 bridge: MaskedLMEncoder | None = None):
        eng_cfg = config.english.replace(dtype=config.dtype)
        if english is None:
            english = build_model(eng_cfg, rngs)
        if english.config.dtype != config.dtype:
            raise ValueError(f"the English model computes in {english.config.dtype}, the connector config says "
                             f"{config.dtype}: load it with dtype={config.dtype!r}")
        if english.mlm is None:
            raise ValueError("the English model of a connector needs its MLM head")
        if (bridge is None) != (config.bridge is None):
            raise ValueError("pass a bridge encoder exactly when config.bridge is set")
        self.config = config
        dtype = jnp.dtype(config.dtype)
        d = eng_cfg.hidden_size
        self.connector = None if config.kind == "identity" else Connector(
            config.bridge_hidden, config.connector_hidden or config.bridge_hidden, d, eng_cfg.layer_norm_eps,
            dtype=dtype, rngs=rngs)
        self.added = (nnx.Param(INIT_STD * jax.random.normal(rngs.params(), (config.n_added, d)),
                                out_sharding=(None, "embed"), eager_sharding=False) if config.n_added else None)
        emb = english.embeddings
        self.position, self.token_type, self.norm = emb.position, emb.token_type, emb.norm
        self.layers = english.layers
        self.mlm_transform, self.mlm_norm = english.mlm.transform, english.mlm.norm
        self.mlm_act = english.mlm.act
        W, b = english.vocab_projection()
        self.vocab, self.vocab_bias = _frozen(W, ("vocab", "embed")), _frozen(b, ("vocab",))
        if not config.train_english:
            self.position, self.token_type = (None if v is None else _frozen(v[...], ("position", "embed"))
                                              for v in (self.position, self.token_type))
            for part in (self.norm, self.layers, self.mlm_transform, self.mlm_norm):
                freeze(part)
        self.bridge = None if bridge is None else freeze(bridge)
        self.echo = Echo(config.bridge_hidden, config.echo_scale, dtype=dtype, rngs=rngs) if config.echo else None

    # ------------------------------------------------------------------------------ from states
    def english_inputs(self, states, mask) -> tuple[jax.Array, jax.Array]:
        """Connector output (+ appended tokens) + English position/type embeddings, LayerNorm:
        ([B, L + n, d] compute dtype, [B, L + n] int32 mask)."""
        states = jnp.asarray(states)
        h = states.astype(jnp.float32) if self.connector is None else self.connector(states)
        b, length, d = h.shape
        mask = jnp.asarray(mask).astype(jnp.int32)
        pos = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (b, length))
        if self.added is not None:
            n = self.added.shape[0]
            h = jnp.concatenate([h, jnp.broadcast_to(self.added[...].astype(h.dtype)[None], (b, n, d))], axis=1)
            # right after each text's last real token: positions len .. len + n - 1
            pos = jnp.concatenate([pos, mask.sum(-1, keepdims=True) + jnp.arange(n, dtype=jnp.int32)[None]], axis=1)
            mask = jnp.concatenate([mask, jnp.ones((b, n), jnp.int32)], axis=1)
        x = h.astype(jnp.float32) + jnp.take(self.position[...], pos, axis=0).astype(jnp.float32)
        if self.token_type is not None:
            x = x + self.token_type[...][0].astype(jnp.float32)
        return self.norm(x), mask

    def hidden_from_states(self, states, mask) -> tuple[jax.Array, jax.Array]:
        """MLM-transformed vectors [B, L + n, d] (the ones dotted with the vocabulary rows) and their mask."""
        x, mask = self.english_inputs(states, mask)
        bias = attention_bias(mask)
        for layer in self.layers:
            x = layer(x, bias)
        return self.mlm_norm(ACTIVATIONS[self.mlm_act](self.mlm_transform(x))), mask

    def english_from_states(self, states, mask, *, chunk_size=None, top_k=None) -> jax.Array:
        """SPLADE vectors [B, V_english] float32 over the English vocabulary (the English block)."""
        h, mask = self.hidden_from_states(states, mask)
        return splade_pool(h, mask, self.vocab[...], self.vocab_bias[...], pooling=self.config.splade_pooling,
                           chunk_size=self.config.splade_chunk_size if chunk_size is None else chunk_size,
                           top_k=top_k)

    def echo_weights(self, states, mask) -> jax.Array:
        """LexEcho's per-token weights relu(u . x + c) [B, L] float32, unscaled, 0 at padding."""
        if self.echo is None:
            raise ValueError("this connector model has no echo head (connector.echo is off)")
        return self.echo.weights(states, mask)

    def echo_from_states(self, states, mask, input_ids) -> jax.Array:
        """The echo block [B, V_bridge] float32: |s| x the pooled echo weights of each bridge token id in the text
        (`config.echo_pooling`)."""
        w = self.echo_weights(states, mask)
        return jnp.abs(self.echo.scale[...]) * pool_by_id(w, jnp.asarray(input_ids), self.config.bridge_vocab,
                                                          self.config.echo_pooling)

    def splade_from_states(self, states, mask, input_ids=None, *, chunk_size=None, top_k=None) -> jax.Array:
        """SPLADE vectors [B, V] float32: the English block, followed by the echo block when `config.echo`
        (which then needs the states' bridge token ids). top_k keeps the k largest of the whole vector."""
        if self.echo is None:
            return self.english_from_states(states, mask, chunk_size=chunk_size, top_k=top_k)
        if input_ids is None:
            raise ValueError("connector.echo is on: pass the bridge input_ids (or use english_from_states)")
        out = jnp.concatenate([self.english_from_states(states, mask, chunk_size=chunk_size),
                               self.echo_from_states(states, mask, input_ids)], axis=-1)
        return out if top_k is None else keep_top_k(out, top_k)

    def max_logits_from_states(self, states, mask) -> jax.Array:
        """Raw max-pooled MLM logits [B, V] float32 (MILCO's alignment quantity; SPLADE-max weights are
        log1p(relu(.)) of it, a monotone map)."""
        h, mask = self.hidden_from_states(states, mask)
        return masked_max_logits(h, mask.astype(jnp.float32), self.vocab[...], h.shape[1]) \
            + self.vocab_bias[...].astype(jnp.float32)

    # ------------------------------------------------------------------------------ from text
    def bridge_states(self, input_ids, attention_mask, token_type_ids=None) -> jax.Array:
        """The frozen multilingual encoder's last-layer states [B, L, d_b] for bridge token ids."""
        if self.bridge is None:
            raise ValueError("this connector model has no bridge encoder: encode from cached states")
        return jax.lax.stop_gradient(self.bridge.sequence_output(input_ids, attention_mask, token_type_ids))

    def splade(self, input_ids, attention_mask, token_type_ids=None, *, pooling=None, chunk_size=None,
               top_k=None) -> jax.Array:
        """SPLADE vectors [B, V] of texts given as BRIDGE token ids (the `SparseEncoder` interface)."""
        if pooling not in (None, self.config.splade_pooling):
            raise ValueError(f"this connector model pools with {self.config.splade_pooling!r}")
        states = self.bridge_states(input_ids, attention_mask, token_type_ids)
        return self.splade_from_states(states, attention_mask, input_ids, chunk_size=chunk_size, top_k=top_k)


def static_width(model) -> int:
    """Width of a model's inference-free query weights: its vocabulary; for a connector model its LexEcho
    block (the bridge vocabulary), the English block being the model's."""
    if not isinstance(model, ConnectorSparseEncoder):
        return model.config.vocab_size
    if not model.config.echo:
        raise ValueError("query weights of a connector model fill its LexEcho block, and this model has none "
                         "(connector.echo is off)")
    return model.config.bridge_vocab
