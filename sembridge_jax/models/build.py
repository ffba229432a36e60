"""Construct encoders: freshly initialised (`build_model`) or from a full set of parameter arrays."""
from __future__ import annotations

from collections.abc import Callable, Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from sembridge_jax.models.bert import BertEncoder
from sembridge_jax.models.config import EncoderConfig
from sembridge_jax.models.distilbert import DistilBertEncoder
from sembridge_jax.models.encoder import MaskedLMEncoder
from sembridge_jax.models.roberta import RobertaEncoder

ENCODERS = {"bert": BertEncoder, "distilbert": DistilBertEncoder, "roberta": RobertaEncoder}


def build_model(config: EncoderConfig, rngs: nnx.Rngs) -> MaskedLMEncoder:
    """A freshly initialised encoder of `config.arch` (weights normal(0.02), LayerNorm 1/0, biases 0)."""
    return ENCODERS[config.arch](config, rngs)


def model_from_params(config: EncoderConfig, params: Mapping[tuple, np.ndarray],
                      describe: Callable[[tuple], str] = str) -> MaskedLMEncoder:
    """An encoder of `config` whose parameters are `params` (path -> array), without a random init.

    Every parameter path of the architecture must be present with the exact shape; values are cast
    to `param_dtype`. Errors name the path as `describe(path)` gives it (e.g. the Hugging Face name).
    """
    abstract = nnx.eval_shape(lambda: build_model(config, nnx.Rngs(0)))
    graphdef, abs_state = nnx.split(abstract)
    leaves = []
    for path, var in nnx.to_flat_state(abs_state):
        if path not in params:
            raise ValueError(f"missing parameter {describe(path)}")
        value = params[path]
        if tuple(value.shape) != tuple(var.shape):
            raise ValueError(f"parameter {describe(path)} has shape {tuple(value.shape)}, "
                             f"expected {tuple(var.shape)}")
        leaves.append((path, var.replace(jnp.asarray(value, var.dtype))))
    return nnx.merge(graphdef, nnx.from_flat_state(leaves))
