"""Evaluate SPLADE retrievers (trains nothing): nDCG@10, R@100, MRR@10, active dims, FLOPS; BM25 reference;
English-inclination metrics on mixed pools; comparison table + FLOPS/nDCG plot; serving exports.

From a training config (dataset, lengths, pruning, metrics from config.eval / config.model):
  python evaluate.py --config configs/ko_splade.py [--checkpoint WORKDIR [--step N]] [--config.eval.k=200]
Without a config, HF / sentence-transformers folders (or hub ids) on BEIR folders:
  python evaluate.py --model ../shared/assets/splade-tiny-en --beir ../shared/data/ko/lohelp-hangul \\
      --split dev --bm25 --out runs/eval_tiny
MIRACL / Mr.TyDi (hub ids or local json/parquet files):
  python evaluate.py --model DIR --hf miracl/miracl --hf-corpus miracl/miracl-corpus --language ko --out OUT
English inclination (mixed KO+EN pool; each query's page is relevant in both languages):
  python evaluate.py --model DIR --mixed ../shared/data/ko/lohelp ../shared/data/ko/lohelp-en \\
      --complete-at 10 100 --out OUT
Several --model / --checkpoint values give one comparison table (OUT/results.md, OUT/results.json) and
OUT/flops_vs_nDCG_at_10.png. --export anserini pisa ciff es [--export-scale auto|X] writes serving files
under OUT/export/ (docs/serving.md).
Queries: a folder with idf.json (inference-free query weights) scores its queries with them, a --config run
with `model.query_encoder='idf'` with the IDF of its `model.idf_corpus`; --idf-corpus CORPUS gives any model
such queries (the IDF over CORPUS), --model-queries encodes them with the model instead. A connector folder
(the connector runner's <workdir>/export) is a --model too; its idf.json / --idf-corpus weights fill the
queries' LexEcho block (over the bridge tokenizer), the English block staying the model's.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from sembridge_jax.api import SparseEncoder
from sembridge_jax.cli import EXIT_CODES, run_cli
from sembridge_jax.config import parse_config_args
from sembridge_jax.data.idf import corpus_query_weights, query_weights_for
from sembridge_jax.data.retrieval import (
    build_mixed_pool,
    load_beir,
    load_eval_dataset,
    load_hf_retrieval,
    load_id_map,
    subsample,
)
from sembridge_jax.evaluation import serving_export
from sembridge_jax.evaluation.encode import CorpusEncoder
from sembridge_jax.evaluation.evaluator import EvalSettings, encode_dataset, evaluate_bm25, evaluate_encoder
from sembridge_jax.evaluation.metrics import DEFAULT_MEASURES
from sembridge_jax.evaluation.report import markdown_table, write_report
from sembridge_jax.export.checkpoint import load_model_from_checkpoint
from sembridge_jax.export.connector import is_connector_folder
from sembridge_jax.hf.load import check_model_location
from sembridge_jax.models.connector import static_width
from sembridge_jax.storage import as_path, writable_dir

EXPORTS = ("anserini", "pisa", "ciff", "es")


def _scale(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be 'auto' or a number > 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=EXIT_CODES)
    m = p.add_argument_group("models")
    m.add_argument("--model", action="append", default=[], help="HF/SparseEncoder folder or hub id (repeatable)")
    m.add_argument("--checkpoint", action="append", default=[], help="training workdir (repeatable)")
    m.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
    m.add_argument("--name", action="append", default=[], help="display names, in --model then --checkpoint order")
    m.add_argument("--bm25", action="store_true", help="add the BM25 reference run")
    q = m.add_mutually_exclusive_group()
    q.add_argument("--idf-corpus", default=None,
                   help="inference-free queries: each token at its IDF over this BEIR folder / corpus.jsonl / text file")
    q.add_argument("--model-queries", action="store_true",
                   help="encode queries with the model even where the folder or config has query weights")
    d = p.add_argument_group("data")
    d.add_argument("--beir", action="append", default=[], help="BEIR folder (repeatable)")
    d.add_argument("--split", default=None, help="qrels split (default dev, or config.eval.split)")
    d.add_argument("--hf", default=None, help="MIRACL/Mr.TyDi topics: hub id or local json/parquet")
    d.add_argument("--hf-corpus", default=None, help="its corpus: hub id or local files")
    d.add_argument("--language", default=None, help="hub config name (MIRACL 'ko', Mr.TyDi 'korean')")
    d.add_argument("--mixed", nargs=2, metavar=("TARGET_BEIR", "ENGLISH_BEIR"), help="mixed-pool inclination run")
    d.add_argument("--id-map", default=None, help="TSV target_id<TAB>english_id (default: same ids)")
    d.add_argument("--mixed-queries", choices=("target", "english"), default="target")
    d.add_argument("--prefixes", nargs=2, default=("ko:", "en:"), metavar=("TARGET", "ENGLISH"))
    d.add_argument("--max-queries", type=int, default=None, help="first N queries by id (0 = all)")
    d.add_argument("--max-docs", type=int, default=0, help="judged docs + seeded sample up to N (0 = all)")
    d.add_argument("--seed", type=int, default=0)
    s = p.add_argument_group("settings")
    s.add_argument("--measures", nargs="+", default=None, help=f"ir-measures names (default {DEFAULT_MEASURES})")
    s.add_argument("--depth", type=int, default=None, help="documents retrieved per query (default 100)")
    s.add_argument("--batch-size", type=int, default=None)
    s.add_argument("--query-max-length", type=int, default=None)
    s.add_argument("--doc-max-length", type=int, default=None)
    s.add_argument("--query-top-k", type=int, default=None, help="prune query vectors to k terms (0 = off)")
    s.add_argument("--doc-top-k", type=int, default=None, help="prune document vectors to k terms (0 = off)")
    s.add_argument("--complete-at", type=int, nargs="+", default=None,
                   help="K of Complete@K (default: config eval.mixed.complete_at, else 10 100)")
    s.add_argument("--cache", default=None, help="encoded-collection cache (default OUT/cache)")
    p.add_argument("--out", default=None, help="output folder (default <workdir>/eval with --config)")
    p.add_argument("--export", nargs="+", choices=EXPORTS, default=[],
                   help="serving exports (docs/serving.md): anserini, pisa, ciff (PISA, BMP), es (OpenSearch)")
    p.add_argument("--export-scale", type=_scale, default="auto",
                   help="impact = round(weight * scale); auto (default): 100, and for ciff the largest scale "
                        "that keeps every impact within 8 bits (BMP)")
    return p


def _pick(cli, config_value, default):
    return cli if cli is not None else (config_value if config_value is not None else default)


def make_settings(args, config=None, inclination: bool = False) -> EvalSettings:
    ev = config.eval if config is not None else None
    measures = tuple(_pick(args.measures, tuple(ev.metrics) if ev else None, DEFAULT_MEASURES))
    d = EvalSettings()
    return EvalSettings(
        measures=measures,
        depth=_pick(args.depth, ev.k if ev else None, d.depth),
        batch_size=_pick(args.batch_size, ev.batch_size if ev else None, d.batch_size),
        query_max_length=_pick(args.query_max_length, config.model.max_query_length if config else None,
                               d.query_max_length),
        doc_max_length=_pick(args.doc_max_length, config.model.max_doc_length if config else None, d.doc_max_length),
        query_top_k=_pick(args.query_top_k, ev.query_top_k if ev else None, d.query_top_k),
        doc_top_k=_pick(args.doc_top_k, ev.doc_top_k if ev else None, d.doc_top_k),
        cache_dir=args.cache, inclination=inclination,
        complete_at=tuple(_pick(args.complete_at, tuple(ev.mixed.complete_at) if ev else None, d.complete_at)))


def load_datasets(args, config=None) -> list[tuple[object, bool]]:
    """(dataset, is_mixed_pool) pairs from the CLI, else from config.eval."""
    split = _pick(args.split, config.eval.split if config is not None else None, "dev")
    max_q = _pick(args.max_queries, config.eval.max_queries if config is not None else None, 0)
    # hub sources read only what the caps keep (MIRACL's corpus is millions of passages)
    caps = {"max_queries": max_q, "max_docs": args.max_docs}
    out = [(load_beir(b, split), False) for b in args.beir]
    if args.hf:
        out.append((load_hf_retrieval(args.hf, args.hf_corpus, language=args.language, split=split, **caps), False))
    if args.mixed:
        target, english = (load_beir(x, split, queries=side == args.mixed_queries)
                           for x, side in zip(args.mixed, ("target", "english"), strict=True))
        id_map = load_id_map(args.id_map) if args.id_map else None
        out.append((build_mixed_pool(target, english, id_map=id_map, prefixes=tuple(args.prefixes),
                                     queries=args.mixed_queries), True))
    if not out and config is not None and config.eval.beir:
        out.append((load_eval_dataset(config.eval.beir, split=split, subset=config.eval.subset,
                                      corpus=config.eval.corpus, **caps), False))
    if not args.mixed and config is not None and config.eval.mixed.target:
        mixed = config.eval.mixed
        target = load_beir(mixed.target, split, queries=mixed.queries == "target")
        english = load_beir(mixed.english, split, queries=mixed.queries == "english")
        id_map = load_id_map(mixed.id_map) if mixed.id_map else None
        out.append((build_mixed_pool(target, english, id_map=id_map, prefixes=tuple(args.prefixes),
                                     queries=mixed.queries), True))
    if not out:
        raise SystemExit("no benchmark: give --beir, --hf or --mixed (or a config with eval.beir)")
    if max_q or args.max_docs:
        out = [(subsample(ds, max_queries=max_q, max_docs=args.max_docs, seed=args.seed), mixed) for ds, mixed in out]
    return out


def load_models(args, config=None) -> list[tuple[str, object]]:
    """(display name, loader) pairs; loaders run lazily so one model is in memory at a time. The folders are
    checked now (config, weights, tokenizer vocabulary)."""
    for m in args.model:
        if not is_connector_folder(m):  # a connector folder is checked as it loads (export/connector.py)
            check_model_location(m)
    specs = [(Path(m).name or m, lambda m=m: _queries(args, config, SparseEncoder.from_pretrained(m)))
             for m in args.model]
    workdirs = args.checkpoint or ([config.workdir] if config is not None and not args.model else [])
    specs += [(Path(w).name + (f"@{args.step}" if args.step is not None else ""),
               lambda w=w: _queries(args, config, SparseEncoder(*load_model_from_checkpoint(w, args.step)[:2]),
                                    from_config=True)) for w in workdirs]
    if args.name:
        if len(args.name) != len(specs):
            raise SystemExit(f"--name given {len(args.name)} times for {len(specs)} models")
        specs = [(n, loader) for n, (_, loader) in zip(args.name, specs, strict=True)]
    return specs


def _queries(args, config, encoder: SparseEncoder, from_config: bool = False) -> CorpusEncoder:
    """The encoder with the query weights the command line asks for (see the module docstring): a checkpoint's
    from its config, a folder's its own, --idf-corpus's or none."""
    if args.model_queries:
        encoder.query_weights = None
    elif args.idf_corpus:  # a connector's weights are its LexEcho block's, over the bridge tokenizer
        encoder.query_weights = corpus_query_weights(args.idf_corpus, encoder.tokenizer, static_width(encoder.model))
    elif from_config and config is not None:
        encoder.query_weights = query_weights_for(config, encoder.tokenizer, encoder.vocab_size)
    return CorpusEncoder(encoder)


def _es_index_name(name: str) -> str:
    """Index names must be lower case, without \\ / * ? " < > | , # : or spaces, not starting with - _ +."""
    return re.sub(r"[^a-z0-9._-]+", "_", name.lower()).lstrip("-_+.") or "splade"


def export_serving(out: Path, name: str, ds, q, d, kinds, scale: float | str = "auto") -> None:
    """Each engine's files in its own folder; the documents apart from the queries (Anserini reads
    every file of its input folder as documents). The scales used go to scales.json."""
    folder = out / "export" / re.sub(r"[^\w.@-]+", "_", name) / re.sub(r"[^\w.@-]+", "_", ds.name)
    texts = ds.doc_texts()
    scales = {}
    if "anserini" in kinds:
        scales["anserini"] = s = serving_export.export_scale(d, "anserini", scale)
        serving_export.export_anserini_docs(d, folder / "anserini" / "docs" / "docs.jsonl", texts=texts, scale=s)
        serving_export.export_anserini_queries(q, folder / "anserini" / "queries.tsv", scale=s)
    if "pisa" in kinds:
        scales["pisa"] = s = serving_export.export_scale(d, "pisa", scale)
        serving_export.export_pisa(d, folder / "pisa" / "index", scale=s)
        serving_export.export_weighted_queries(q, folder / "pisa" / "queries.txt", scale=s, separator=":")
    if "ciff" in kinds:
        s, sq = serving_export.export_scale(d, "ciff", scale), serving_export.bmp_query_scale(q)
        scales["ciff"] = {"documents": s, "queries": sq}
        serving_export.export_ciff(d, folder / "ciff" / "index.ciff", scale=s)
        serving_export.export_weighted_queries(q, folder / "ciff" / "queries.txt", scale=sq, separator=":")
        for problem in serving_export.bmp_warnings(serving_export.impacts(q, sq), serving_export.impacts(d, s)):
            print(f"warning: {name} on {ds.name}, CIFF for BMP: {problem}")
    if "es" in kinds:
        serving_export.export_es_bulk(d, folder / "es" / "bulk.ndjson", index=_es_index_name(name),
                                      texts=texts)
        serving_export.export_es_queries(q, folder / "es" / "queries.jsonl")
        (folder / "es" / "mapping.json").write_text(json.dumps(serving_export.es_mapping(), indent=1))
    if scales:
        (folder / "scales.json").write_text(json.dumps(scales, indent=1))
    print(f"exported {name} on {ds.name} to {folder}")


def main(argv=None) -> list[dict]:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    config = None
    if any(a.startswith("--config") for a in argv):
        args, config = parse_config_args(argv, parser)
    else:
        args = parser.parse_args(argv)
    out = str(args.out or (as_path(config.workdir) / "eval" if config is not None else "eval_out"))
    args.cache = args.cache or str(as_path(out) / "cache")
    make_settings(args, config)  # an unknown measure or a depth below a cutoff fails before any loading
    models = load_models(args, config)  # model folders checked (not loaded) before any benchmark is read
    datasets = load_datasets(args, config)
    if not models and not args.bm25:
        raise SystemExit("nothing to evaluate: give --model, --checkpoint, --config or --bm25")
    rows = []
    with writable_dir(out) as local_out:  # a gs:// --out is written locally, uploaded at the end
        if args.bm25:
            for ds, mixed in datasets:
                rows.append(evaluate_bm25(ds, make_settings(args, config, mixed)))
                print(markdown_table(rows[-1:]), flush=True)
        for name, loader in models:
            encoder = loader()
            for ds, mixed in datasets:
                settings = make_settings(args, config, mixed)
                rows.append(evaluate_encoder(encoder, ds, settings, name))
                print(markdown_table(rows[-1:]), flush=True)
                if args.export:  # the vectors come back from the encoder's cache
                    export_serving(local_out, name, ds, *encode_dataset(encoder, ds, settings), args.export,
                                   args.export_scale)
            del encoder
        settings = vars(make_settings(args, config))
        files = write_report(rows, local_out, settings={**settings, "argv": argv})
    print(markdown_table(rows))
    print(f"wrote {out}: " + ", ".join(str(p.relative_to(local_out)) for p in files.values()))
    return rows


if __name__ == "__main__":
    sys.exit(run_cli(main))
