"""Query encoding cost: inference-free IDF queries (`model.query_encoder='idf'`) vs the model's own queries,
ours vs sentence-transformers, same folder, same queries, one process.

    python benchmarks/bench_queries.py --model runs/demo_ko/export --beir assets/data/lohelp-hangul --repeat 10

The folder must hold idf.json (a train.py export of configs/demo_ko.py, or `python -m sembridge_jax.export
--model DIR --out OUT --idf-corpus CORPUS`). Rows: ours `encode_queries` (the static weights; numpy), ours
`encode` (the model), sentence-transformers' `encode_query` (its Router's SparseStaticEmbedding, torch) and
`encode_document` on the queries (the model: what a symmetric SPLADE user runs per query). Each is timed
after one warm-up call (jit compilation, torch's first call); outputs are checked equal between the two
libraries. Report ratios, not times.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def timed(fn, reps: int = 3) -> tuple[float, object]:
    """Best wall time of `reps` calls after one warm-up call, and the last result."""
    out = fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="export folder with idf.json")
    p.add_argument("--beir", required=True, help="BEIR folder whose queries.jsonl is encoded")
    p.add_argument("--repeat", type=int, default=10, help="the queries repeated N times")
    p.add_argument("--max-length", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", default=None, help="write the rows as JSON here")
    a = p.parse_args(argv)

    import numpy as np
    import torch
    from sentence_transformers import SparseEncoder as STSparseEncoder

    from sembridge_jax.api import SparseEncoder

    queries = [json.loads(line)["text"] for line in (Path(a.beir) / "queries.jsonl").read_text().splitlines()
               if line.strip()] * a.repeat
    ours = SparseEncoder.from_pretrained(a.model)
    if ours.query_weights is None:
        raise SystemExit(f"{a.model}: no idf.json (export with --idf-corpus)")
    torch.set_num_threads(os.cpu_count() or 1)
    st = STSparseEncoder(a.model, device="cpu")
    st.max_seq_length = a.max_length
    kw = dict(batch_size=a.batch_size, convert_to_tensor=True)
    rows = {}
    rows["ours, IDF queries"], q_ours = timed(lambda: ours.encode_queries(queries, max_length=a.max_length))
    rows["sentence-transformers, IDF queries"], q_st = timed(lambda: st.encode_query(queries, **kw))
    rows["ours, model queries"], m_ours = timed(
        lambda: ours.encode(queries, batch_size=a.batch_size, max_length=a.max_length))
    rows["sentence-transformers, model queries"], m_st = timed(lambda: st.encode_document(queries, **kw))
    np.testing.assert_allclose(q_ours.toarray(), q_st.to_dense().numpy(), rtol=1e-6)
    np.testing.assert_allclose(m_ours.toarray(), m_st.to_dense().numpy(), atol=1e-4)
    result = {"queries": len(queries), "max_length": a.max_length, "cpus": os.cpu_count(),
              "queries_per_s": {k: len(queries) / v for k, v in rows.items()}}
    base = result["queries_per_s"]["sentence-transformers, model queries"]
    print(f"{len(queries)} queries, max length {a.max_length}, {os.cpu_count()} CPUs")
    print("| encoder | queries/s | vs sentence-transformers model queries |\n|---|---:|---:|")
    for k, v in result["queries_per_s"].items():
        print(f"| {k} | {v:,.0f} | {v / base:.1f}x |")
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
