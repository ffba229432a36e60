"""Export our encoder as a Hugging Face + sentence-transformers SparseEncoder folder.

The folder loads as is with `transformers.AutoModelForMaskedLM.from_pretrained(dir)` and
`sentence_transformers.SparseEncoder(dir)`:

    config.json, model.safetensors, tokenizer files        (transformers)
    modules.json                                            MLMTransformer (path "") + SpladePooling
    sentence_bert_config.json                               max_seq_length of the MLMTransformer
    1_SpladePooling/config.json                             pooling_strategy max|sum, activation relu
    config_sentence_transformers.json                       model_type SparseEncoder, dot similarity

The module types are the sentence-transformers 5 names, which sentence-transformers 6 still maps
to its Transformer(fill-mask) + SpladePooling, so the folder works with both.
A model without MLM head is written as a plain Hugging Face base model (no sentence-transformers files).

With `query_weights` (inference-free queries, models/query_weights.py) the folder also holds
    idf.json                                                {token: weight}, OpenSearch's format
and sentence-transformers loads it as a Router (sentence-transformers >= 5.1): the "query" route is
query_0_SparseStaticEmbedding/ (the weights and a copy of the tokenizer), the "document" route the model in
this folder itself (module path ".") + 1_SpladePooling, so `encode_query` / `encode_document` give what
`SparseEncoder.encode_queries` / `encode` give, and transformers still reads the one copy of the weights.
"""
from __future__ import annotations

import json
import shutil
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from flax import nnx
from safetensors.numpy import save_file

from sembridge_jax.hf.params import params_to_hf
from sembridge_jax.models import MaskedLMEncoder

MLM_TRANSFORMER = "sentence_transformers.sparse_encoder.models.MLMTransformer"
SPLADE_POOLING = "sentence_transformers.sparse_encoder.models.SpladePooling"
MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": MLM_TRANSFORMER},
    {"idx": 1, "name": "1", "path": "1_SpladePooling", "type": SPLADE_POOLING},
]
IDF_FILE = "idf.json"
QUERY_MODULE = "query_0_SparseStaticEmbedding"
ROUTER_FILE = "router_config.json"
ROUTER_MODULES = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.router.Router"}]


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def hf_tensors(model: MaskedLMEncoder) -> dict[str, np.ndarray]:
    """The model's parameters under their Hugging Face names, float32."""
    params = {path: np.asarray(var[...], np.float32)
              for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    return params_to_hf(params, model.config)


def max_seq_length(model: MaskedLMEncoder, tokenizer) -> int:
    """The longest input the model's position table allows, capped by the tokenizer's model_max_length."""
    limit = model.config.max_tokens
    t = getattr(tokenizer, "model_max_length", None)
    return int(min(limit, t)) if t else int(limit)


def save_pretrained(model: MaskedLMEncoder, tokenizer, out_dir: str | Path, *, pooling: str | None = None,
                    query_weights: np.ndarray | None = None) -> Path:
    """Write the folder described in the module docstring; returns its path.

    `pooling` (max|sum) defaults to the model config's splade_pooling. `tokenizer` may be None
    (no tokenizer files: the folder then needs one added before sentence-transformers can load it).
    `query_weights` [vocab_size]: the inference-free query weights (needs the tokenizer and the MLM head);
    without them the query files of an earlier export in the folder are removed.
    """
    cfg = model.config
    pooling = pooling or cfg.splade_pooling
    if pooling not in ("max", "sum"):
        raise ValueError(f"pooling must be max or sum, got {pooling!r}")
    if query_weights is not None:
        _check_query_weights(cfg, tokenizer, query_weights)  # before anything is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hf_config = cfg.to_hf()
    if tokenizer is not None:
        # Keep the special-token ids the tokenizer defines (RoBERTa's bos/eos) in config.json.
        for key in ("bos_token_id", "eos_token_id"):
            value = getattr(tokenizer, key, None)
            if value is not None:
                hf_config[key] = int(value)
    _write_json(out / "config.json", hf_config)
    save_file(hf_tensors(model), str(out / "model.safetensors"), metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))
    _write_query_files(out, tokenizer, query_weights)
    if cfg.mlm_head:
        _write_json(out / "modules.json", MODULES if query_weights is None else ROUTER_MODULES)
        _write_json(out / "sentence_bert_config.json",
                    {"max_seq_length": max_seq_length(model, tokenizer), "do_lower_case": False})
        _write_json(out / "1_SpladePooling" / "config.json",
                    {"pooling_strategy": pooling, "activation_function": "relu", "embedding_dimension": cfg.vocab_size})
        _write_json(out / "config_sentence_transformers.json", {
            "model_type": "SparseEncoder",
            "__version__": _versions(),
            "prompts": {"query": "", "document": ""},
            "default_prompt_name": None,
            "similarity_fn_name": "dot",
        })
    return out


def _check_query_weights(cfg, tokenizer, weights) -> None:
    """Query weights need a tokenizer with one token per model row (SparseStaticEmbedding sizes its table by
    the tokenizer; idf.json names every weighted id by its token), an MLM head and shape [vocab_size]."""
    if tokenizer is None or not cfg.mlm_head or np.shape(weights) != (cfg.vocab_size,):
        raise ValueError(f"save_pretrained: query weights need a tokenizer, an MLM head and shape ({cfg.vocab_size},),"
                         f" got {np.shape(weights)}")
    if len(tokenizer.get_vocab()) != len(weights):
        raise ValueError(f"save_pretrained: query weights need a tokenizer with one token per model row "
                         f"({len(tokenizer.get_vocab())} tokens, {len(weights)} rows): sentence-transformers' "
                         "SparseStaticEmbedding could not load them")
    check_named(tokenizer, weights, "save_pretrained")


def check_named(tokenizer, weights, caller: str) -> None:
    """idf.json names every weighted id by its token: a weight at an id no token names is refused."""
    named = set(tokenizer.get_vocab().values())
    unnamed = [i for i in np.flatnonzero(weights) if i not in named]
    if unnamed:
        raise ValueError(f"{caller}: query weights at ids no token of the tokenizer names (e.g. {unnamed[0]}): "
                         "idf.json could not hold them")


def _write_query_files(out: Path, tokenizer, weights: np.ndarray | None) -> None:
    """idf.json, the Router config and its query module (see the module docstring), or none of them."""
    if weights is None:
        for stale in (out / IDF_FILE, out / ROUTER_FILE):
            stale.unlink(missing_ok=True)
        shutil.rmtree(out / QUERY_MODULE, ignore_errors=True)
        return
    write_query_weights(out, tokenizer, weights)
    query = out / QUERY_MODULE
    _write_json(query / "config.json", {"frozen": True})
    save_file({"weight": np.asarray(weights, np.float32)}, str(query / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(str(query))
    _write_json(out / ROUTER_FILE, {
        "types": {QUERY_MODULE: "sentence_transformers.sparse_encoder.modules.sparse_static_embedding."
                                "SparseStaticEmbedding", ".": MLM_TRANSFORMER, "1_SpladePooling": SPLADE_POOLING},
        "structure": {"query": [QUERY_MODULE], "document": [".", "1_SpladePooling"]},
        "parameters": {"default_route": "document", "allow_empty_key": True, "route_mappings": {}},
    })


def write_query_weights(folder: Path, tokenizer, weights: np.ndarray) -> None:
    """`folder`/idf.json: {token: weight} for every id of `tokenizer` with a weight (OpenSearch's format)."""
    vocab = {i: t for t, i in tokenizer.get_vocab().items()}
    _write_json(folder / IDF_FILE, {vocab[i]: float(weights[i]) for i in sorted(vocab) if weights[i]})


def read_query_weights(folder: str | Path, tokenizer, vocab_size: int) -> np.ndarray | None:
    """The folder's inference-free query weights [vocab_size] from its idf.json, or None without one; a
    token the tokenizer does not know is an error naming the file."""
    path = Path(folder) / IDF_FILE
    if not path.is_file():
        return None
    table = json.loads(path.read_text(encoding="utf-8"))
    vocab = tokenizer.get_vocab()
    unknown = [t for t in table if t not in vocab]
    if unknown:
        raise ValueError(f"{path}: {len(unknown)} tokens not in the folder's tokenizer, e.g. {unknown[0]!r}")
    weights = np.zeros(vocab_size, np.float32)
    for token, w in table.items():
        weights[vocab[token]] = w
    return weights


def _versions() -> dict[str, str]:
    out = {}
    for name in ("sentence_transformers", "transformers", "torch"):
        try:
            out["pytorch" if name == "torch" else name] = version(name.replace("_", "-"))
        except PackageNotFoundError:
            continue
    return out
