"""CLI: write a folder that transformers (AutoModelForMaskedLM) and sentence_transformers.SparseEncoder load.

    python -m sembridge_jax.export --model DIR_OR_HUB_ID --out DIR [--pooling max|sum]
    python -m sembridge_jax.export --checkpoint TRAIN_WORKDIR [--step N] --out DIR [--idf-corpus CORPUS]
    python -m sembridge_jax.export --connector CONNECTOR_FOLDER --out DIR [--english-queries | --idf-queries]

--connector turns a connector folder (the connector runner's <workdir>/export) into a sentence-transformers
SparseEncoder folder with its PyTorch module code inside (load it with trust_remote_code=True; connector_st.py);
with --english-queries the folder encodes queries for an existing English index (English vocabulary only,
+ the connector folder's parallel memory: `SparseEncoder.encode_english_queries`); with --idf-queries it encodes
queries for the folder's own documents with the LexEcho block at the folder's query weights (its idf.json:
`SparseEncoder.encode_queries`).

TRAIN_WORKDIR and DIR may be object-store URLs (gs://bucket/run). --idf-corpus (a BEIR folder / corpus.jsonl or a
text file) adds inference-free query weights counted over it (idf.json: sentence-transformers then loads a Router
whose queries need no model run); a --model folder's own idf.json is kept unless --idf-corpus replaces it.

Extending: a new source (e.g. an Orbax checkpoint) adds its option in `build_parser` and a branch
in `load_source` that returns (model, tokenizer); `export_to_hf` (writer.py) does the writing.
"""
from __future__ import annotations

import argparse
import sys

from sembridge_jax.cli import EXIT_CODES, run_cli
from sembridge_jax.data.idf import corpus_query_weights
from sembridge_jax.export.checkpoint import load_model_from_checkpoint
from sembridge_jax.export.connector_st import export_connector_st
from sembridge_jax.export.writer import export_to_hf
from sembridge_jax.hf.hub import resolve_model_dir
from sembridge_jax.hf.load import load_pretrained
from sembridge_jax.hf.save import read_query_weights


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sembridge_jax.export", description=__doc__.split("\n")[0],
                                epilog=EXIT_CODES)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", help="Hugging Face folder or hub id to export")
    src.add_argument("--checkpoint", help="training workdir, local or gs:// (or one of its compare/<method> run folders)")
    src.add_argument("--connector", help="connector folder (connector_config.json): write a sentence-transformers "
                                         "folder with PyTorch module code (load with trust_remote_code=True)")
    p.add_argument("--english-queries", action="store_true",
                   help="with --connector: the English-index query encoder (English block + parallel memory)")
    p.add_argument("--idf-queries", action="store_true",
                   help="with --connector: the query encoder whose LexEcho block holds the folder's idf.json weights")
    p.add_argument("--step", type=int, default=None, help="with --checkpoint: the step (default: the newest)")
    p.add_argument("--out", required=True, help="output folder, local or gs://")
    p.add_argument("--pooling", choices=["max", "sum"], default=None,
                   help="SPLADE pooling written to 1_SpladePooling (default: the model config's)")
    p.add_argument("--idf-corpus", default=None,
                   help="BEIR folder / corpus.jsonl or text file: write inference-free query weights (its IDF)")
    return p


def load_source(args: argparse.Namespace):
    """(model, tokenizer, query weights or None) named by the command line."""
    if args.model:
        model, tokenizer, _ = load_pretrained(args.model)
        return model, tokenizer, read_query_weights(resolve_model_dir(args.model), tokenizer, model.config.vocab_size)
    if args.checkpoint:
        model, tokenizer, step = load_model_from_checkpoint(args.checkpoint, args.step)
        print(f"restored {args.checkpoint} step {step}")
        return model, tokenizer, None
    raise SystemExit("nothing to export: pass --model DIR or --checkpoint WORKDIR")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.connector:
        if args.pooling:
            raise SystemExit("--pooling does not apply to --connector (the connector folder sets its pooling)")
        if args.idf_corpus:
            raise SystemExit("--idf-corpus does not apply to --connector (the connector runner writes its idf.json)")
        out = export_connector_st(args.connector, args.out, english_queries=args.english_queries,
                                  idf_queries=args.idf_queries)
        print(f"wrote {out}")
        return 0
    if args.english_queries or args.idf_queries:
        raise SystemExit("--english-queries and --idf-queries apply to --connector only")
    model, tokenizer, weights = load_source(args)
    if args.idf_corpus:
        weights = corpus_query_weights(args.idf_corpus, tokenizer, model.config.vocab_size)
    out = export_to_hf(model, tokenizer, args.out, pooling=args.pooling, query_weights=weights)
    print(f"wrote {out}")
    return 0


def cli() -> int:
    """The console entry point: ``main`` with one error line and the documented exit codes."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
