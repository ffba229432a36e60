"""Vocabulary-row tensors: the parameters whose first logical axis is "vocab".

For a tied model these are embeddings/word [V, d] and mlm/bias [V]; an untied model adds
mlm/decoder [V, d]. A vocabulary transfer rewrites exactly these rows (same copy / weights for
each) and keeps every other parameter:

    rows = vocab_params(model)                     # {("embeddings", "word"): [V, d], ("mlm", "bias"): [V], ...}
    new_rows = {path: transform(r) for path, r in rows.items()}        # [V_new, ...] each
    new_model = replace_vocab(model, new_rows, config.replace(vocab_size=V_new, pad_token_id=...))
"""
from __future__ import annotations

import numpy as np
from flax import nnx

from sembridge_jax.models.build import build_model, model_from_params
from sembridge_jax.models.encoder import MaskedLMEncoder
from sembridge_jax.models.layers import logical_axes


def vocab_paths(model: nnx.Module) -> list[tuple]:
    """Paths of the parameters whose first logical axis is "vocab", sorted."""
    return sorted(path for path, axes in logical_axes(model).items() if axes and axes[0] == "vocab")


def vocab_params(model: nnx.Module) -> dict[tuple, np.ndarray]:
    """Vocabulary-row tensors as numpy arrays, keyed by parameter path."""
    flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    return {path: np.asarray(flat[path][...]) for path in vocab_paths(model)}


def replace_vocab(model: MaskedLMEncoder, new_rows: dict[tuple, np.ndarray], new_config) -> MaskedLMEncoder:
    """A new model of `new_config` with the vocabulary rows `new_rows` and all other parameters of `model`.

    `new_rows` must hold exactly the vocabulary-row paths of the new model, each with first dimension
    `new_config.vocab_size`; every other parameter must keep its shape. Errors name the offending path.
    """
    want = set(vocab_paths(nnx.eval_shape(lambda: build_model(new_config, nnx.Rngs(0)))))
    given = {tuple(p) for p in new_rows}
    if want != given:
        raise ValueError(f"replace_vocab: vocabulary rows missing {sorted(want - given)}, "
                         f"unexpected {sorted(given - want)}")
    params = {path: var[...] for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    params.update({tuple(p): np.asarray(v) for p, v in new_rows.items()})
    return model_from_params(
        new_config, params,
        describe=lambda p: f"new_rows[{p}]" if p in want else f"{p} (of the old model)",
    )
