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
"""
from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from flax import nnx
from safetensors.numpy import save_file

from sembridge_jax.hf.params import params_to_hf
from sembridge_jax.models import MaskedLMEncoder

MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.sparse_encoder.models.MLMTransformer"},
    {"idx": 1, "name": "1", "path": "1_SpladePooling",
     "type": "sentence_transformers.sparse_encoder.models.SpladePooling"},
]


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


def save_pretrained(model: MaskedLMEncoder, tokenizer, out_dir: str | Path, *, pooling: str | None = None) -> Path:
    """Write the folder described in the module docstring; returns its path.

    `pooling` (max|sum) defaults to the model config's splade_pooling. `tokenizer` may be None
    (no tokenizer files: the folder then needs one added before sentence-transformers can load it).
    """
    cfg = model.config
    pooling = pooling or cfg.splade_pooling
    if pooling not in ("max", "sum"):
        raise ValueError(f"pooling must be max or sum, got {pooling!r}")
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
    if cfg.mlm_head:
        _write_json(out / "modules.json", MODULES)
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


def _versions() -> dict[str, str]:
    out = {}
    for name in ("sentence_transformers", "transformers", "torch"):
        try:
            out["pytorch" if name == "torch" else name] = version(name.replace("_", "-"))
        except PackageNotFoundError:
            continue
    return out
