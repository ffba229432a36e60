"""apply_alignment: a model for the target tokenizer, its vocabulary rows made by an Alignment.

Every vocabulary-row tensor (models/vocab.py: first logical axis "vocab") is transformed with the
same copy/weights: the input embeddings (= the tied MLM decoder rows), an untied decoder, and the
MLM output bias, whose treatment is a switch:

  bias_init="auto"        the method's own choice (methods.Method.bias: "mean" for identity_semantic,
                          omp, ridge, procrustes, mvgauss_nm; "remap" for the others), the default;
  bias_init="remap"       the same copy/weights as the rows;
  bias_init="mean"        copied tokens keep their source bias, new tokens get the mean source bias (a
                          constant: no per-token noise);
  bias_init="zero"        copied tokens keep their source bias, new tokens get 0;
  bias_init="unigram" | "idf"
                          copied tokens keep their source bias, new tokens get a target-text statistic
                          affine-matched to the source bias (bridge/frequency.py; the alignment must hold
                          text counts: build it with bias_text);
  bias_init="positional"  the released code's behaviour (Hugging Face resize): target id k keeps the
                          bias of source id k, whatever token that is; ids beyond the source
                          vocabulary get the mean source bias (transformers' mean_resizing).

Special tokens: the config's pad_token_id becomes the target tokenizer's. RoBERTa-style models
number positions from pad_token_id + 1, so when the pad id changes the position table is shifted
by the same amount (row pad+1+i keeps serving the i-th token); rows shifted in from beyond the table
repeat its last row, and a larger pad id drops as many final positions.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from sembridge_jax.bridge.alignment import Alignment
from sembridge_jax.bridge.frequency import FREQUENCY_BIAS, frequency_bias
from sembridge_jax.bridge.methods import get_method
from sembridge_jax.models.vocab import replace_vocab, vocab_params

BIAS_INIT = ("auto", "remap", "mean", "zero", *FREQUENCY_BIAS, "positional")


def _is_bias(path: tuple) -> bool:
    return path[-1] == "bias"


def positional_bias(bias: np.ndarray, target_size: int) -> np.ndarray:
    """Hugging Face resize semantics: keep the first min(V_s, V_t) entries, pad with the mean."""
    out = np.full((target_size,), bias.mean(), dtype=bias.dtype)
    n = min(len(bias), target_size)
    out[:n] = bias[:n]
    return out


def resolve_bias_init(bias_init: str, method: str) -> str:
    """bias_init with "auto" replaced by the method's own choice (methods.Method.bias)."""
    if bias_init not in BIAS_INIT:
        raise ValueError(f"init.bias_init must be one of {BIAS_INIT}, got {bias_init!r}")
    return get_method(method)[1].bias if bias_init == "auto" else bias_init


def _bias_rows(bias: np.ndarray, alignment: Alignment, bias_init: str, name: str) -> np.ndarray:
    if bias_init == "remap":
        return alignment.combine(bias, name=name)
    if bias_init == "positional":
        return positional_bias(bias, alignment.target_size)
    out = np.zeros((alignment.target_size,), bias.dtype)
    copied = alignment.copy_src >= 0
    out[copied] = bias[alignment.copy_src[copied]]
    new = alignment.new_ids
    if bias_init == "mean":
        out[new] = bias[:alignment.source_size].mean()
    elif bias_init in FREQUENCY_BIAS:
        st = alignment.text_stats
        if st is None:
            raise ValueError(f"bias_init {bias_init!r} needs target-text counts: build the alignment with "
                             "init.bias_text (--bias-text)")
        out[new] = frequency_bias(bias_init, st["tf"], st["df"], st["n_texts"], bias[:alignment.source_size])[new]
    return out


def shift_positions(table: np.ndarray, old_pad: int, new_pad: int) -> np.ndarray:
    """RoBERTa position table re-indexed for a new pad id: new[new_pad + 1 + i] = old[old_pad + 1 + i]."""
    delta = new_pad - old_pad
    idx = np.clip(np.arange(table.shape[0]) - delta, 0, table.shape[0] - 1)
    return table[idx]


def apply_alignment(model, alignment: Alignment, *, bias_init: str = "auto", target_tokenizer=None):
    """A new model (same architecture) whose vocabulary is the alignment's target vocabulary.

    `target_tokenizer` (optional) supplies the new pad id; without it the pad id is mapped through
    the alignment (the target id copied from the source pad) when possible, else kept."""
    bias_init = resolve_bias_init(bias_init, alignment.method)
    config = model.config
    rows = vocab_params(model)
    if config.vocab_size < alignment.source_size:
        raise ValueError(f"apply_alignment: the model has {config.vocab_size} vocabulary rows, the alignment's "
                         f"source vocabulary has {alignment.source_size}")
    new_rows = {}
    for path, value in rows.items():
        name = "/".join(map(str, path))
        new_rows[path] = (_bias_rows(value, alignment, bias_init, name) if _is_bias(path)
                          else alignment.combine(value, name=name))

    old_pad = config.pad_token_id
    new_pad = _target_pad(alignment, old_pad, target_tokenizer)
    changes = {"vocab_size": alignment.target_size, "pad_token_id": new_pad}
    if config.arch == "roberta":
        changes["position_offset"] = new_pad + 1
    new_model = replace_vocab(model, new_rows, config.replace(**changes))
    if config.arch == "roberta" and new_pad != old_pad:
        old = np.asarray(model.embeddings.position[...])
        new_model.embeddings.position[...] = jnp.asarray(shift_positions(old, old_pad, new_pad))
    return new_model


def _target_pad(alignment: Alignment, old_pad: int, target_tokenizer) -> int:
    if target_tokenizer is not None and target_tokenizer.pad_token_id is not None:
        return int(target_tokenizer.pad_token_id)
    hits = np.flatnonzero(alignment.copy_src == old_pad)
    return int(hits[0]) if len(hits) else old_pad
