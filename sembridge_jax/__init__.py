"""sembridge-jax: move English learned-sparse retrievers (SPLADE) into other languages.

Public API (imported lazily so `import sembridge_jax` stays cheap):
    SparseEncoder        Flax NNX sparse encoder + tokenizer: from_pretrained / encode / save_pretrained
    build_alignment      SemBridge (or baseline) vocabulary alignment for a target tokenizer
    apply_alignment      rebuild a model's vocabulary rows (embeddings, MLM decoder, bias) from an alignment
    Alignment            the saved, inspectable alignment artifact
    load_pretrained      (model, tokenizer, config) from a Hugging Face folder or hub id
    save_pretrained      write a Hugging Face + sentence-transformers SparseEncoder folder
    export_to_hf         the same, for a (model, tokenizer) pair (also `python -m sembridge_jax.export`)
    EncoderConfig, build_model   the Flax NNX encoders (BERT, DistilBERT, RoBERTa/XLM-R)
"""
import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "SparseEncoder": "sembridge_jax.api",
    "build_alignment": "sembridge_jax.bridge",
    "apply_alignment": "sembridge_jax.bridge",
    "Alignment": "sembridge_jax.bridge",
    "load_pretrained": "sembridge_jax.hf",
    "save_pretrained": "sembridge_jax.hf",
    "export_to_hf": "sembridge_jax.export",
    "EncoderConfig": "sembridge_jax.models",
    "build_model": "sembridge_jax.models",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sembridge_jax' has no attribute {name!r}")
