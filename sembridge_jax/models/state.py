"""An NNX model as a flat ``{"a.b.c": array}`` parameter dict and back (jit-friendly, checkpointable).

The trainer splits a model once into a static ``ParamLayout`` and its parameters; the train step is
a pure function of the flat dict and ``merge_model`` puts traced values back into the module.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
from flax import nnx


@dataclasses.dataclass(frozen=True)
class ParamLayout:
    """How a flat parameter dict maps back onto the NNX module it came from."""

    graphdef: Any
    template: nnx.State  # the Param variables with abstract values (shape/dtype) and their metadata
    rest: nnx.State  # non-parameter state, closed over as constants
    paths: dict[str, tuple]  # "encoder.layers.0.attn.query.kernel" -> nnx path tuple
    logical_axes: dict[str, tuple | None]  # path -> logical axis names (models/ metadata)
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, Any]


def split_model(model: nnx.Module) -> tuple[ParamLayout, dict[str, jax.Array]]:
    """Split ``model`` into a ``ParamLayout`` and its parameters ``{"a.b.c": array}``."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    flat = dict(nnx.to_flat_state(params))
    paths = {".".join(map(str, p)): p for p in flat}
    logical = {k: _logical_axes(flat[p]) for k, p in paths.items()}
    shapes = {k: tuple(flat[p].shape) for k, p in paths.items()}
    values = {k: flat[p].get_value() for k, p in paths.items()}
    dtypes = {k: v.dtype for k, v in values.items()}
    # The template keeps only shapes: holding the arrays would pin a second copy of every parameter.
    template = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    return ParamLayout(graphdef, template, rest, paths, logical, shapes, dtypes), values


def _logical_axes(var: nnx.Variable) -> tuple | None:
    names = var.get_metadata().get("out_sharding")
    return tuple(names) if names else None


def merge_model(layout: ParamLayout, params: Mapping[str, jax.Array]) -> nnx.Module:
    """The module with ``params`` in place (works on traced values inside jit)."""
    flat = dict(nnx.to_flat_state(layout.template))
    for key, path in layout.paths.items():
        flat[path] = flat[path].replace(params[key])
    return nnx.merge(layout.graphdef, nnx.State.from_flat_path(flat), layout.rest)
