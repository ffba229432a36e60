"""The connector model as a folder: `save_connector` / `load_connector`, and `SparseEncoder.from_pretrained`
loads such a folder (it has `connector_config.json`).

    <out>/connector_config.json   ConnectorConfig (English + bridge encoder configs)
    <out>/connector.npz           every weight but the bridge's, by flat path ("layers.0.ffn_up.kernel", ...)
    <out>/bridge/                 the frozen multilingual encoder's own folder (weights + its tokenizer)
    <out>/english_tokenizer/      the English model's tokenizer: names of the output dimensions
    <out>/memory.npz              optional: the parallel memory for English-index queries (models/memory.py)
    <out>/idf.json                optional: query weights of the LexEcho block, {bridge token: weight}
                                  (`SparseEncoder.encode_queries`; models/query_weights.py)

Inputs are tokenised with the BRIDGE tokenizer; output dimensions are the English vocabulary, followed with
LexEcho (`ConnectorConfig.echo`) by the bridge vocabulary (`output_names`).
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from sembridge_jax.evaluation.encode import vocab_tokens
from sembridge_jax.hf.load import load_pretrained, read_config
from sembridge_jax.hf.save import IDF_FILE, check_named, write_query_weights
from sembridge_jax.hf.tokenizer import load_tokenizer
from sembridge_jax.models.connector import ConnectorConfig, ConnectorSparseEncoder, static_width
from sembridge_jax.models.memory import MEMORY_FILE, ParallelMemory
from sembridge_jax.storage import replace_file

CONFIG_FILE = "connector_config.json"
WEIGHTS_FILE = "connector.npz"
BRIDGE_DIR = "bridge"
ENGLISH_TOKENIZER_DIR = "english_tokenizer"
BRIDGE_FILES = (".json", ".safetensors", ".txt", ".model")
ECHO_PREFIX = "echo:"  # names of the echo block's dimensions (st_connector_module.ECHO_PREFIX)


def is_connector_folder(path: str | os.PathLike) -> bool:
    return (Path(path) / CONFIG_FILE).is_file()


def output_names(config: ConnectorConfig, english_tokenizer, bridge_tokenizer) -> list[str]:
    """A name per output dimension: the English tokens, then with the echo ECHO_PREFIX + each bridge piece
    (so an echo dimension never shares a name with an English one in an index or a top-terms report)."""
    names = vocab_tokens(english_tokenizer, config.english_size)
    if config.echo:
        names += [ECHO_PREFIX + t for t in vocab_tokens(bridge_tokenizer, config.bridge_vocab)]
    return names


def connector_weights(model: ConnectorSparseEncoder) -> dict[str, np.ndarray]:
    """Every variable of the model (trained and frozen) but the bridge encoder's: {flat path: array}."""
    flat = nnx.to_flat_state(nnx.state(model, nnx.Variable))
    return {".".join(map(str, p)): np.asarray(v.get_value()) for p, v in flat if p[0] != "bridge"}


def link_or_copy(src, dst):
    """A hard link where the file system allows (bridge weights are large), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def save_connector(model: ConnectorSparseEncoder, out: str | os.PathLike, *, bridge_folder: str | os.PathLike,
                   english_tokenizer, memory: ParallelMemory | None = None,
                   query_weights: np.ndarray | None = None) -> Path:
    """Write the folder described in the module docstring (local path); returns it. `model` may run from
    cached states (no bridge attached): the folder then names and holds `bridge_folder`'s encoder. Without
    a `memory` (`query_weights`: the LexEcho block's, [bridge vocabulary]) any such file a previous export
    left is removed (it would belong to another run)."""
    out = Path(out)
    bridge_tokenizer = None if query_weights is None else load_tokenizer(str(bridge_folder))
    if query_weights is not None:
        if np.shape(query_weights) != (static_width(model),):
            raise ValueError(f"save_connector: query weights of shape {np.shape(query_weights)}, the LexEcho block "
                             f"has {static_width(model)} columns")
        check_named(bridge_tokenizer, query_weights, "save_connector")
    out.mkdir(parents=True, exist_ok=True)
    if memory is None:
        (out / MEMORY_FILE).unlink(missing_ok=True)
    else:
        if memory.values.shape[1] != model.config.english_size:
            raise ValueError(f"parallel memory: vectors of width {memory.values.shape[1]}, the English vocabulary "
                             f"has {model.config.english_size}")
        replace_file(out / MEMORY_FILE, memory.to_bytes())
    config = dataclasses.replace(model.config, bridge=read_config(Path(bridge_folder)))
    replace_file(out / CONFIG_FILE, json.dumps(config.to_dict(), indent=2).encode())
    buf = io.BytesIO()
    np.savez(buf, **connector_weights(model))
    replace_file(out / WEIGHTS_FILE, buf.getvalue())
    bridge_out = out / BRIDGE_DIR
    if bridge_out.exists():
        shutil.rmtree(bridge_out)
    bridge_out.mkdir()
    for f in Path(bridge_folder).iterdir():  # the encoder and its tokenizer; sentence-transformers modules are not needed
        if f.is_file() and f.suffix in BRIDGE_FILES:
            link_or_copy(f, bridge_out / f.name)
    english_tokenizer.save_pretrained(str(out / ENGLISH_TOKENIZER_DIR))
    (out / IDF_FILE).unlink(missing_ok=True)
    if query_weights is not None:
        write_query_weights(out, bridge_tokenizer, query_weights)
    return out


def read_connector_config(folder: Path) -> ConnectorConfig:
    """The folder's ConnectorConfig; errors name the file."""
    f = folder / CONFIG_FILE
    if not f.is_file():
        raise FileNotFoundError(f"{folder}: no {CONFIG_FILE} (not a connector folder)")
    try:
        return ConnectorConfig.from_dict(json.loads(f.read_text(encoding="utf-8")))
    except json.JSONDecodeError as e:
        raise ValueError(f"{f}: invalid JSON at line {e.lineno}: {e.msg}") from e
    except (TypeError, KeyError, ValueError) as e:
        raise ValueError(f"{f}: not a connector config: {e}") from e


def load_memory(folder: str | os.PathLike) -> ParallelMemory | None:
    """The folder's parallel memory, None when it has none."""
    path = Path(folder) / MEMORY_FILE
    return ParallelMemory.load(path) if path.is_file() else None


def load_connector(folder: str | os.PathLike, *, dtype: str = "float32"):
    """(model with its bridge encoder, bridge tokenizer, English tokenizer) from a `save_connector` folder.
    Errors name the file (config, weights, bridge folder) before the bridge is loaded where they can."""
    folder = Path(folder)
    config = read_connector_config(folder)
    if not (folder / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{folder / WEIGHTS_FILE}: missing (the connector weights)")
    if not (folder / BRIDGE_DIR).is_dir():
        raise FileNotFoundError(f"{folder / BRIDGE_DIR}: missing (the bridge encoder's folder)")
    bridge, bridge_tokenizer, _ = load_pretrained(folder / BRIDGE_DIR, dtype=dtype)
    try:
        config = dataclasses.replace(config, dtype=dtype, bridge=bridge.config)
    except ValueError as e:
        raise ValueError(f"{folder / CONFIG_FILE} disagrees with {folder / BRIDGE_DIR}: {e}") from e
    model = ConnectorSparseEncoder(config, nnx.Rngs(0), bridge=bridge)
    weights = np.load(folder / WEIGHTS_FILE)
    flat = nnx.to_flat_state(nnx.state(model, nnx.Variable))
    expected = {".".join(map(str, p)): (p, v) for p, v in flat if p[0] != "bridge"}
    if set(expected) != set(weights.files):
        diff = sorted(set(expected) ^ set(weights.files))
        raise ValueError(f"{folder / WEIGHTS_FILE}: weights do not match {CONFIG_FILE}: {diff[:5]}")
    updates = {}
    for key, (path, var) in expected.items():
        value = weights[key]
        if value.shape != var.shape:
            raise ValueError(f"{folder / WEIGHTS_FILE}: {key} has shape {value.shape}, expected {var.shape}")
        updates[path] = jnp.asarray(value, var.dtype)
    nnx.update(model, nnx.State.from_flat_path(updates))
    return model, bridge_tokenizer, load_tokenizer(str(folder / ENGLISH_TOKENIZER_DIR))
