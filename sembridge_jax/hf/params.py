"""Tables from Hugging Face tensor names to our parameter paths, with the transposes/reshapes.

`param_table(config)` lists, for every parameter of our model, the Hugging Face names it may be
stored under (read in order; exports write the first, or all where transformers reads both) and the
layout change (`kind`). torch Linear weights are [out, in]; our kernels are [in, out], attention
projections split the head axis: query [d, H, Dh], out [H, Dh, d].

`params_from_hf` and `params_to_hf` apply the table in both directions.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from sembridge_jax.models.config import EncoderConfig

# Backbone prefix inside *ForMaskedLM checkpoints; a bare base-model checkpoint has no prefix.
PREFIX = {"bert": "bert.", "distilbert": "distilbert.", "roberta": "roberta."}


@dataclasses.dataclass(frozen=True)
class Entry:
    path: tuple             # our parameter path
    names: tuple[str, ...]  # Hugging Face names, read in this order (backbone names without prefix)
    kind: str               # plain | linear | qkv | qkv_bias | attn_out
    backbone: bool          # True: lives under the backbone prefix
    written: int = 1        # how many of `names` an export writes (all of them hold the same tensor)


def _ln(path, hf, backbone=True):
    # Old TF-converted checkpoints call LayerNorm parameters gamma/beta (the splade-tiny-en kit does).
    return [Entry(path + ("scale",), (hf + ".weight", hf + ".gamma"), "plain", backbone),
            Entry(path + ("bias",), (hf + ".bias", hf + ".beta"), "plain", backbone)]


def _linear(path, hf, backbone=True):
    return [Entry(path + ("kernel",), (hf + ".weight",), "linear", backbone),
            Entry(path + ("bias",), (hf + ".bias",), "plain", backbone)]


def _layer_names(arch: str, i: int) -> dict[str, str]:
    if arch == "distilbert":
        p = f"transformer.layer.{i}."
        return dict(query=p + "attention.q_lin", key=p + "attention.k_lin", value=p + "attention.v_lin",
                    out=p + "attention.out_lin", attention_norm=p + "sa_layer_norm", ffn_up=p + "ffn.lin1",
                    ffn_down=p + "ffn.lin2", ffn_norm=p + "output_layer_norm")
    p = f"encoder.layer.{i}."
    return dict(query=p + "attention.self.query", key=p + "attention.self.key", value=p + "attention.self.value",
                out=p + "attention.output.dense", attention_norm=p + "attention.output.LayerNorm",
                ffn_up=p + "intermediate.dense", ffn_down=p + "output.dense", ffn_norm=p + "output.LayerNorm")


def _head_names(arch: str) -> dict[str, tuple[str, ...]]:
    if arch == "distilbert":
        return dict(transform="vocab_transform", norm="vocab_layer_norm",
                    decoder=("vocab_projector.weight",), bias=("vocab_projector.bias",))
    if arch == "roberta":
        return dict(transform="lm_head.dense", norm="lm_head.layer_norm",
                    decoder=("lm_head.decoder.weight",), bias=("lm_head.decoder.bias", "lm_head.bias"))
    return dict(transform="cls.predictions.transform.dense", norm="cls.predictions.transform.LayerNorm",
                decoder=("cls.predictions.decoder.weight",),
                bias=("cls.predictions.decoder.bias", "cls.predictions.bias"))


def param_table(config: EncoderConfig) -> list[Entry]:
    """One entry per parameter of `build_model(config)` (tied models have no decoder entry)."""
    arch = config.arch
    t = [Entry(("embeddings", "word"), ("embeddings.word_embeddings.weight",), "plain", True),
         Entry(("embeddings", "position"), ("embeddings.position_embeddings.weight",), "plain", True)]
    if config.type_vocab_size:
        t.append(Entry(("embeddings", "token_type"), ("embeddings.token_type_embeddings.weight",), "plain", True))
    t += _ln(("embeddings", "norm"), "embeddings.LayerNorm")
    for i in range(config.num_layers):
        n = _layer_names(arch, i)
        att = ("layers", i, "attention")
        for q in ("query", "key", "value"):
            t.append(Entry(att + (q,), (n[q] + ".weight",), "qkv", True))
            t.append(Entry(att + (q + "_bias",), (n[q] + ".bias",), "qkv_bias", True))
        t.append(Entry(att + ("out",), (n["out"] + ".weight",), "attn_out", True))
        t.append(Entry(att + ("out_bias",), (n["out"] + ".bias",), "plain", True))
        t += _ln(("layers", i, "attention_norm"), n["attention_norm"])
        t += _linear(("layers", i, "ffn_up"), n["ffn_up"])
        t += _linear(("layers", i, "ffn_down"), n["ffn_down"])
        t += _ln(("layers", i, "ffn_norm"), n["ffn_norm"])
    if config.mlm_head:
        h = _head_names(arch)
        t += _linear(("mlm", "transform"), h["transform"], backbone=False)
        t += _ln(("mlm", "norm"), h["norm"], backbone=False)
        if not config.tie_word_embeddings:
            t.append(Entry(("mlm", "decoder"), h["decoder"], "plain", False))
        # The logits use decoder.bias; transformers ties it to `.bias` only when the decoder is tied,
        # so an untied checkpoint may hold two different tensors: read decoder.bias first, write both.
        t.append(Entry(("mlm", "bias"), h["bias"], "plain", False, written=len(h["bias"])))
    return t


def _to_ours(x: np.ndarray, kind: str, cfg: EncoderConfig) -> np.ndarray:
    H, Dh = cfg.num_heads, cfg.head_dim
    if kind == "linear":
        return x.T
    if kind == "qkv":
        return x.T.reshape(x.shape[1], H, Dh)
    if kind == "qkv_bias":
        return x.reshape(H, Dh)
    if kind == "attn_out":
        return x.T.reshape(H, Dh, x.shape[0])
    return x


def _to_hf(x: np.ndarray, kind: str) -> np.ndarray:
    if kind == "linear":
        return x.T
    if kind == "qkv":
        return x.reshape(x.shape[0], -1).T
    if kind == "qkv_bias":
        return x.reshape(-1)
    if kind == "attn_out":
        return x.reshape(-1, x.shape[-1]).T
    return x


def _expected_hf_shape(shape: tuple, kind: str) -> tuple:
    """The Hugging Face shape that corresponds to our parameter shape."""
    if kind == "linear":
        return shape[::-1]
    if kind == "qkv":
        return (shape[1] * shape[2], shape[0])
    if kind == "qkv_bias":
        return (shape[0] * shape[1],)
    if kind == "attn_out":
        return (shape[2], shape[0] * shape[1])
    return shape


def backbone_prefix(names, arch: str) -> str:
    """'bert.' (etc.) when the checkpoint nests the backbone, '' for a bare base-model checkpoint."""
    p = PREFIX[arch]
    return p if any(n.startswith(p + "embeddings.") for n in names) else ""


def params_from_hf(tensors: Mapping[str, np.ndarray], config: EncoderConfig, expected: Mapping[tuple, tuple],
                   source: str = "checkpoint") -> dict[tuple, np.ndarray]:
    """Our parameters (path -> array) from Hugging Face tensors.

    `expected` maps our paths to our shapes (from the abstract model) so that a wrong shape is
    reported with the Hugging Face name and both layouts. Raises ValueError naming the missing
    tensor (with the aliases tried) or the tensor of the wrong shape, and `source`.
    """
    prefix = backbone_prefix(tensors.keys(), config.arch)
    out = {}
    for e in param_table(config):
        names = [(prefix if e.backbone else "") + n for n in e.names]
        name = next((n for n in names if n in tensors), None)
        if name is None:
            tried = " or ".join(repr(n) for n in names)
            raise ValueError(f"{source}: missing tensor {tried} (for {config.hf_model_type or config.arch} "
                             f"parameter {'/'.join(map(str, e.path))})")
        x = np.asarray(tensors[name])
        want = _expected_hf_shape(tuple(expected[e.path]), e.kind)
        if tuple(x.shape) != want:
            raise ValueError(f"{source}: tensor {name!r} has shape {tuple(x.shape)}, expected {want} "
                             "from config.json")
        out[e.path] = _to_ours(x, e.kind, config)
    return out


def params_to_hf(params: Mapping[tuple, np.ndarray], config: EncoderConfig) -> dict[str, np.ndarray]:
    """Hugging Face tensors (preferred names, contiguous float arrays) from our parameters.

    The backbone prefix is used when the model has an MLM head (the *ForMaskedLM layout) and
    omitted for a base model, as transformers writes them. Tied decoder rows are not written.
    """
    prefix = PREFIX[config.arch] if config.mlm_head else ""
    return {(prefix if e.backbone else "") + name: np.ascontiguousarray(_to_hf(np.asarray(params[e.path]), e.kind))
            for e in param_table(config) for name in e.names[:e.written]}
