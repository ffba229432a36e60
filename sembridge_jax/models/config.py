"""`EncoderConfig`: the one configuration of every masked-LM encoder, and its `config.json` mapping.

`EncoderConfig.from_hf(d)` reads a Hugging Face `config.json` dict (model_type bert, distilbert,
roberta, xlm-roberta, camembert); `to_hf()` writes one that `transformers.AutoConfig` reads back
to the same architecture.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from sembridge_jax.models.heads import POOLINGS
from sembridge_jax.models.layers import ACTIVATIONS

ARCHS = ("bert", "distilbert", "roberta")
DTYPES = ("float32", "bfloat16")
# What the backward pass recomputes instead of storing (models/encoder.py REMAT_LAYER_POLICY): nothing;
# the SPLADE head's chunks; the head's chunks and every transformer layer, keeping the layer's
# weight matmuls (jax.checkpoint_policies.dots_with_no_batch_dims_saveable) or only its input.
REMAT_POLICIES = ("none", "head", "dots_with_no_batch_dims_saveable", "full")
# Hugging Face model_type -> our arch. RoBERTa-style models differ from BERT only in position ids.
HF_MODEL_TYPES = {
    "bert": "bert",
    "distilbert": "distilbert",
    "roberta": "roberta",
    "xlm-roberta": "roberta",
    "camembert": "roberta",
}
_MLM_ARCHITECTURES = {
    "bert": "BertForMaskedLM",
    "distilbert": "DistilBertForMaskedLM",
    "roberta": "RobertaForMaskedLM",
    "xlm-roberta": "XLMRobertaForMaskedLM",
    "camembert": "CamembertForMaskedLM",
}
_BASE_ARCHITECTURES = {
    "bert": "BertModel",
    "distilbert": "DistilBertModel",
    "roberta": "RobertaModel",
    "xlm-roberta": "XLMRobertaModel",
    "camembert": "CamembertModel",
}


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Architecture + numerics of a masked-LM encoder.

    `type_vocab_size` 0 means no token-type embeddings (DistilBERT). `position_offset` is added to
    the positions of non-pad tokens (RoBERTa: padding_idx + 1). `mlm_head` False describes an
    encoder checkpoint without MLM head (e.g. the e5 bridge): only `embed` works then.
    `hf_model_type` keeps the exact Hugging Face model_type (e.g. "xlm-roberta") for export.
    `remat_policy` is one of REMAT_POLICIES (the head's chunks only matter with splade_chunk_size > 0).
    `hidden_dropout` / `attention_dropout`: the config.json's rates (Hugging Face's default 0.1), applied only
    when the model is called with a dropout key (training with `train.dropout`).
    """

    arch: str = "bert"
    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    pad_token_id: int = 0
    position_offset: int = 0
    tie_word_embeddings: bool = True
    dtype: str = "float32"
    param_dtype: str = "float32"
    splade_pooling: str = "max"
    splade_chunk_size: int = 0
    remat_policy: str = "head"
    mlm_head: bool = True
    hf_model_type: str = ""
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.1

    def __post_init__(self):
        checks = [
            (self.arch in ARCHS, f"arch must be one of {ARCHS}, got {self.arch!r}"),
            (self.hidden_size % self.num_heads == 0,
             f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"),
            (self.hidden_act in ACTIVATIONS, f"hidden_act must be one of {tuple(ACTIVATIONS)}, got {self.hidden_act!r}"),
            (self.dtype in DTYPES, f"dtype must be one of {DTYPES}, got {self.dtype!r}"),
            (self.param_dtype in DTYPES, f"param_dtype must be one of {DTYPES}, got {self.param_dtype!r}"),
            (self.splade_pooling in POOLINGS, f"splade_pooling must be one of {POOLINGS}, got {self.splade_pooling!r}"),
            (self.splade_chunk_size >= 0, f"splade_chunk_size must be >= 0, got {self.splade_chunk_size}"),
            (self.remat_policy in REMAT_POLICIES,
             f"remat_policy must be one of {REMAT_POLICIES}, got {self.remat_policy!r}"),
            (self.vocab_size > 0 and self.num_layers > 0, "vocab_size and num_layers must be positive"),
            (0.0 <= self.hidden_dropout < 1.0 and 0.0 <= self.attention_dropout < 1.0,
             f"dropout rates must be in [0, 1), got {self.hidden_dropout} / {self.attention_dropout}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"EncoderConfig: {msg}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def max_tokens(self) -> int:
        """The longest input (special tokens included) the position table covers."""
        return self.max_position_embeddings - self.position_offset

    def replace(self, **changes) -> EncoderConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> EncoderConfig:
        """The config `dataclasses.asdict` wrote, also from before `remat_policy` replaced the `remat`
        bool (False: the head chunks only, as then; True: every layer too)."""
        fields = dict(fields)
        if "remat" in fields:
            fields.setdefault("remat_policy", "full" if fields.pop("remat") else "head")
        return cls(**fields)

    @classmethod
    def from_hf(cls, hf: dict[str, Any], **overrides) -> EncoderConfig:
        """Map a Hugging Face `config.json` dict; `overrides` set our own fields (dtype, chunking...).

        Raises ValueError naming an unsupported `model_type` or a missing key.
        """
        model_type = hf.get("model_type")
        if model_type not in HF_MODEL_TYPES:
            raise ValueError(
                f"unsupported model_type {model_type!r} in config.json; supported: {sorted(HF_MODEL_TYPES)}"
            )
        arch = HF_MODEL_TYPES[model_type]

        def need(key):
            if key not in hf:
                raise ValueError(f"config.json (model_type {model_type!r}) lacks the key {key!r}")
            return hf[key]

        archs = hf.get("architectures") or []
        has_head = not archs or any(a.endswith(("ForMaskedLM", "ForPreTraining")) for a in archs)
        common = dict(
            arch=arch,
            vocab_size=int(need("vocab_size")),
            max_position_embeddings=int(hf.get("max_position_embeddings", 512)),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", True)),
            mlm_head=has_head,
            hf_model_type=model_type,
        )
        if arch == "distilbert":
            fields = dict(
                hidden_size=int(need("dim")),
                num_layers=int(need("n_layers")),
                num_heads=int(need("n_heads")),
                intermediate_size=int(need("hidden_dim")),
                type_vocab_size=0,
                layer_norm_eps=1e-12,  # fixed in DistilBERT's code, not in its config
                hidden_act=hf.get("activation", "gelu"),
                pad_token_id=int(hf.get("pad_token_id") or 0),
                position_offset=0,
                hidden_dropout=float(hf.get("dropout", 0.1)),
                attention_dropout=float(hf.get("attention_dropout", 0.1)),
            )
        else:
            pad = hf.get("pad_token_id")
            pad = (1 if arch == "roberta" else 0) if pad is None else int(pad)
            if hf.get("position_embedding_type", "absolute") != "absolute":
                raise ValueError(
                    f"config.json: position_embedding_type {hf['position_embedding_type']!r} is not supported "
                    "(only 'absolute')"
                )
            fields = dict(
                hidden_size=int(need("hidden_size")),
                num_layers=int(need("num_hidden_layers")),
                num_heads=int(need("num_attention_heads")),
                intermediate_size=int(need("intermediate_size")),
                type_vocab_size=int(hf.get("type_vocab_size", 2)),
                layer_norm_eps=float(hf.get("layer_norm_eps", 1e-12)),
                hidden_act=hf.get("hidden_act", "gelu"),
                pad_token_id=pad,
                position_offset=pad + 1 if arch == "roberta" else 0,
                hidden_dropout=float(hf.get("hidden_dropout_prob", 0.1)),
                attention_dropout=float(hf.get("attention_probs_dropout_prob", 0.1)),
            )
        return cls(**{**common, **fields, **overrides})

    def to_hf(self) -> dict[str, Any]:
        """A `config.json` dict for the Hugging Face class of this architecture (MLM or base model)."""
        model_type = self.hf_model_type or self.arch
        table = _MLM_ARCHITECTURES if self.mlm_head else _BASE_ARCHITECTURES
        out: dict[str, Any] = {
            "architectures": [table[model_type]],
            "model_type": model_type,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.max_position_embeddings,
            "pad_token_id": self.pad_token_id,
            "tie_word_embeddings": self.tie_word_embeddings,
            "initializer_range": 0.02,
            "dtype": self.param_dtype,
        }
        if self.arch == "distilbert":
            if self.layer_norm_eps != 1e-12 or self.type_vocab_size:
                raise ValueError("DistilBERT has layer_norm_eps 1e-12 and no token types; the config differs")
            out.update(
                dim=self.hidden_size, n_layers=self.num_layers, n_heads=self.num_heads,
                hidden_dim=self.intermediate_size, activation=self.hidden_act,
                sinusoidal_pos_embds=False, dropout=self.hidden_dropout, attention_dropout=self.attention_dropout,
            )
        else:
            if self.arch == "roberta" and self.position_offset != self.pad_token_id + 1:
                raise ValueError("RoBERTa position_offset must be pad_token_id + 1 to be expressible in config.json")
            out.update(
                hidden_size=self.hidden_size, num_hidden_layers=self.num_layers,
                num_attention_heads=self.num_heads, intermediate_size=self.intermediate_size,
                type_vocab_size=self.type_vocab_size, layer_norm_eps=self.layer_norm_eps,
                hidden_act=self.hidden_act, position_embedding_type="absolute",
                hidden_dropout_prob=self.hidden_dropout, attention_probs_dropout_prob=self.attention_dropout,
            )
        return out
