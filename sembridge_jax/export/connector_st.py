"""`export_connector_st(folder, out)`: a connector folder (export/connector.py) as a sentence-transformers
SparseEncoder folder with PyTorch module code inside it, loaded with
`sentence_transformers.SparseEncoder(out, trust_remote_code=True)`:

    <out>/modules.json                     one module: st_connector_module.ConnectorSparseModule (path "")
    <out>/st_connector_module.py           the module's code (a copy of this package's st_connector_module.py)
    <out>/sembridge_connector.json         architecture: connector kind/sizes, n_added, echo, vocab sizes, pooling
    <out>/connector.safetensors            connector MLP, appended tokens, echo head (torch layout)
    <out>/bridge/                          the frozen multilingual encoder + its tokenizer (the input tokenizer)
    <out>/english/                         the English parts as a *ForMaskedLM folder (position/type embeddings,
                                           embedding LayerNorm, layers, MLM head, the frozen vocabulary rows)
                                           + the English tokenizer (names of the output dimensions)
    <out>/config_sentence_transformers.json
    <out>/memory.npz                       with english_queries: the connector folder's parallel memory, if any

Output columns: the English vocabulary (english/'s token ids), then with the echo the bridge vocabulary;
`english_queries=True`: the English vocabulary only, the English block + the parallel memory's vector
(`SparseEncoder.encode_english_queries`): query vectors for an existing English index. `idf_queries=True` (a
folder with idf.json): the LexEcho block at the query weights of the tokens read, the English block the
model's (`SparseEncoder.encode_queries`): the query encoder for the folder's own documents.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
from flax import nnx
from safetensors.numpy import save_file

from sembridge_jax.export.connector import BRIDGE_DIR, CONFIG_FILE, link_or_copy, load_connector
from sembridge_jax.hf.save import IDF_FILE, hf_tensors, max_seq_length, read_query_weights
from sembridge_jax.models.build import build_model
from sembridge_jax.models.connector import ENGLISH_PARTS, ConnectorSparseEncoder
from sembridge_jax.models.encoder import MaskedLMEncoder
from sembridge_jax.models.memory import MEMORY_FILE
from sembridge_jax.storage import as_path, is_remote, readable_dir, writable_dir

MODULE_SOURCE = Path(__file__).with_name("st_connector_module.py")
CLASS_REF = "st_connector_module.ConnectorSparseModule"
MODULE_CONFIG = "sembridge_connector.json"  # st_connector_module.CONFIG_FILE
ST_WEIGHTS = "connector.safetensors"  # st_connector_module.WEIGHTS_FILE
ENGLISH_DIR = "english"
# English architectures whose transformers *ForMaskedLM takes inputs_embeds with explicit position ids.
EXPORTABLE_ARCHS = ("bert", "roberta")
# connector parameter path prefix -> the English MaskedLMEncoder's
_ENGLISH_PATHS = {"position": ("embeddings", "position"), "token_type": ("embeddings", "token_type"),
                  "norm": ("embeddings", "norm"), "layers": ("layers",), "mlm_transform": ("mlm", "transform"),
                  "mlm_norm": ("mlm", "norm")}


def _flat(model: nnx.Module) -> dict[tuple, np.ndarray]:
    return {tuple(p): np.asarray(v.get_value(), np.float32) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Variable))}


def english_encoder(model: ConnectorSparseEncoder) -> MaskedLMEncoder:
    """The English SPLADE model the connector feeds, with the connector's (possibly trained) English parts:
    the vocabulary rows become the word embeddings (and the decoder when untied), the output bias the MLM bias."""
    cfg = model.config.english.replace(dtype="float32")
    english = build_model(cfg, nnx.Rngs(0))
    flat = _flat(model)
    updates = {_ENGLISH_PATHS[p[0]] + p[1:]: v for p, v in flat.items() if p[0] in ENGLISH_PARTS}
    updates[("embeddings", "word")] = flat[("vocab",)]
    if not cfg.tie_word_embeddings:
        updates[("mlm", "decoder")] = flat[("vocab",)]
    updates[("mlm", "bias")] = flat[("vocab_bias",)]
    expected = {tuple(p) for p, _ in nnx.to_flat_state(nnx.state(english, nnx.Param))}
    if set(updates) != expected:
        raise ValueError(f"the connector's English parts do not make an English model: {sorted(set(updates) ^ expected)[:5]}")
    nnx.update(english, nnx.State.from_flat_path(updates))
    return english


def connector_tensors(model: ConnectorSparseEncoder) -> dict[str, np.ndarray]:
    """The connector MLP, appended tokens and echo head under st_connector_module's torch names."""
    flat = {".".join(map(str, p)): v for p, v in _flat(model).items()}
    out = {}
    if model.connector is not None:
        out["connector.norm.weight"], out["connector.norm.bias"] = flat["connector.norm.scale"], flat["connector.norm.bias"]
        for fc in ("fc1", "fc2"):
            out[f"connector.{fc}.weight"] = flat[f"connector.{fc}.kernel"].T
            out[f"connector.{fc}.bias"] = flat[f"connector.{fc}.bias"]
    if model.added is not None:
        out["added"] = flat["added"]
    if model.echo is not None:
        out["echo.weight"], out["echo.bias"] = flat["echo.proj.kernel"].T, flat["echo.proj.bias"]
        out["echo_scale"] = flat["echo.scale"]
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def _copy_tree(src: Path, dst: Path) -> None:
    """`link_or_copy` for every file of `src`."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, copy_function=link_or_copy)


def export_connector_st(folder: str | os.PathLike, out: str | os.PathLike, *, english_queries: bool = False,
                        idf_queries: bool = False):
    """Write the folder described in the module docstring from the connector folder `folder` (what
    `save_connector` / the connector runner's `<workdir>/export` holds) to `out` (either may be an
    object-store URL); returns `out`. Its SparseEncoder output equals `SparseEncoder.from_pretrained(folder)`'s
    `encode` (`english_queries`: its `encode_english_queries`; `idf_queries`: its `encode_queries`)."""
    if english_queries and idf_queries:
        raise ValueError("export_connector_st: english_queries and idf_queries are two different query encoders")
    if not is_remote(folder) and not is_remote(out) and Path(out).resolve() == Path(folder).resolve():
        raise ValueError(f"{out}: the sentence-transformers folder must not be the connector folder itself")
    with readable_dir(folder) as local_src:
        return _export(Path(local_src), Path(folder), out, english_queries, idf_queries)


def _export(folder: Path, name: Path, out, english_queries: bool, idf_queries: bool):
    model, bridge_tokenizer, english_tokenizer = load_connector(folder)
    cfg = model.config
    tensors = connector_tensors(model)
    if idf_queries:
        weights = read_query_weights(folder, bridge_tokenizer, cfg.bridge_vocab)
        if weights is None:
            raise FileNotFoundError(f"{name / IDF_FILE}: missing (idf_queries needs the folder's query weights)")
        tensors["echo_idf"] = weights
    if cfg.english.arch not in EXPORTABLE_ARCHS:
        raise ValueError(f"{name / CONFIG_FILE}: English model arch {cfg.english.arch!r}: the "
                         f"sentence-transformers export supports {EXPORTABLE_ARCHS}")
    english = english_encoder(model)
    module_config = {
        "kind": cfg.kind, "bridge_hidden": cfg.bridge_hidden,
        "connector_hidden": cfg.connector_hidden or cfg.bridge_hidden,
        "layer_norm_eps": cfg.english.layer_norm_eps, "n_added": cfg.n_added, "echo": cfg.echo,
        "echo_pooling": cfg.echo_pooling,
        "english_size": cfg.english_size, "bridge_vocab": cfg.bridge_vocab, "pooling": cfg.splade_pooling,
        "max_seq_length": max_seq_length(model, bridge_tokenizer),
    }
    if english_queries:
        module_config.update(english_queries=True, memory=(folder / MEMORY_FILE).is_file())
    if idf_queries:
        module_config.update(echo_idf=True)
    with writable_dir(out) as local:
        local = Path(local)
        _copy_tree(folder / BRIDGE_DIR, local / BRIDGE_DIR)
        (local / ENGLISH_DIR).mkdir(parents=True, exist_ok=True)
        _write_json(local / ENGLISH_DIR / "config.json", english.config.to_hf())
        save_file(hf_tensors(english), str(local / ENGLISH_DIR / "model.safetensors"), metadata={"format": "pt"})
        english_tokenizer.save_pretrained(str(local / ENGLISH_DIR))
        save_file(tensors, str(local / ST_WEIGHTS), metadata={"format": "pt"})
        (local / MEMORY_FILE).unlink(missing_ok=True)
        if module_config.get("memory"):
            link_or_copy(folder / MEMORY_FILE, local / MEMORY_FILE)
        _write_json(local / MODULE_CONFIG, module_config)
        shutil.copy(MODULE_SOURCE, local / MODULE_SOURCE.name)
        _write_json(local / "modules.json", [{"idx": 0, "name": "0", "path": "", "type": CLASS_REF}])
        _write_json(local / "config_sentence_transformers.json", {
            "model_type": "SparseEncoder", "prompts": {"query": "", "document": ""}, "default_prompt_name": None,
            "similarity_fn_name": "dot"})
    return as_path(out)
