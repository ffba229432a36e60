"""Config section `data`: the training source (`data.train`), the dev set (`data.dev`), parallel text,
raw target-language text (`data.text`, the `mlm` / `vocab_warmup` stages)."""
from __future__ import annotations

from pathlib import Path

from sembridge_jax.data.pairs import PAIR_KINDS
from sembridge_jax.data.retrieval import beir_split_problem
from sembridge_jax.data.sources import MINE_WITH, READERS, first_records_problem
from sembridge_jax.data.text import TEXT_KINDS
from sembridge_jax.schema import Field, Section


def _train_rules(c):
    t = c.data.train
    if t.type in ("jsonl", "tsv", "beir") and not t.path:
        yield "data.train.path", f"must be set for data.train.type={t.type!r}"
    if t.type in ("hf", "tfds") and not t.name:
        yield "data.train.name", f"must be set for data.train.type={t.type!r}"
    if t.type == "corpus" and not t.corpus:
        yield "data.train.corpus", "must be set for data.train.type='corpus' (a BEIR corpus.jsonl or its folder)"
    if t.type == "corpus" and "title" not in t.pair_kinds and not t.spans_per_doc:
        yield "data.train.spans_per_doc", "must be >= 1 when pair_kinds has no 'title' (no pair otherwise)"
    qrels = Path(t.path) / "qrels" / f"{t.split}.tsv"
    if t.type == "beir" and t.path and not qrels.is_file():
        yield "data.train.split", f"has no qrels file {qrels}"
    if t.corpus_pairs and t.type == "corpus":
        yield "data.train.corpus_pairs", "is for labelled sources; data.train.type='corpus' trains on those pairs alone"
    if t.corpus_pairs and t.type != "beir" and not t.corpus:
        yield "data.train.corpus", f"must be set for data.train.corpus_pairs: a {t.type!r} source has no documents"
    if t.mine_negatives:
        yield from _mining_rules(c)
    else:
        if t.num_hard_negatives and t.type in ("beir", "corpus"):
            yield "data.train.num_hard_negatives", (f"must be 0 for {t.type} sources (they hold no negatives) "
                                                    "unless data.train.mine_negatives")
        if t.num_hard_negatives and t.type not in ("tsv", "beir", "corpus") and not t.negatives_field:
            yield "data.train.negatives_field", "must be set when num_hard_negatives > 0"
    problem = first_records_problem(t)
    if problem:
        yield "data.train.path", f"cannot be read: {problem}"


def _mining_rules(c):
    t = c.data.train
    if t.type not in ("beir", "corpus") and not t.corpus:
        yield "data.train.corpus", (f"must be set for data.train.mine_negatives: a {t.type!r} source has no "
                                    "documents to mine (a BEIR corpus.jsonl or its folder)")
    if t.num_hard_negatives < 1:
        yield "data.train.num_hard_negatives", "must be >= 1 with data.train.mine_negatives (the mined count)"
    if t.mine_depth < t.mine_skip_top + t.num_hard_negatives:
        yield "data.train.mine_depth", (f"must be >= mine_skip_top + num_hard_negatives "
                                        f"({t.mine_skip_top} + {t.num_hard_negatives})")
    if c.loss.distill != "none":
        yield "data.train.mine_negatives", f"mined negatives have no teacher scores for loss.distill={c.loss.distill!r}"


def _span_words(value):
    if len(value) != 2 or not all(isinstance(v, int) for v in value) or not 1 <= value[0] <= value[1]:
        return f"must be (min, max) words with 1 <= min <= max, got {tuple(value)}"
    return None


TRAIN = Section({
    "type": Field("jsonl", "training source kind", choices=tuple(READERS)),
    "path": Field("", "jsonl/tsv: the file; beir: the folder; hf: local data_files for json/parquet/csv builders",
                  path="input"),
    "name": Field("", "hf: dataset id or builder ('json'); tfds: dataset name ('xquad/ko')"),
    "subset": Field("", "hf: config name; '' = default"),
    "split": Field("train", "hf/tfds split, beir qrels split"),
    "data_dir": Field("", "tfds: data_dir of the prepared dataset; '' = tfds default", path="input"),
    "query_field": Field("query", "field of the query text (jsonl/hf/tfds)"),
    "positive_field": Field("positive", "field of the relevant document text"),
    "negatives_field": Field("negatives", "field with a list of hard-negative texts; '' = none"),
    "scores_field": Field("scores", "teacher scores [positive, negatives...]; '' = none"),
    "num_hard_negatives": Field(0, "hard negatives per example used in training (static)", ge=0),
    "title_in_doc": Field(True, "beir and mined negatives: document text = title + ' ' + text"),
    "corpus": Field("", "BEIR corpus.jsonl (or its folder): the documents of type 'corpus', and the ones "
                        "mine_negatives draws from ('' = a beir source's own)", path="input"),
    "pair_kinds": Field(PAIR_KINDS, "corpus: label-free pairs, 'title' -> body and/or 'span' -> document "
                                    "(inverse cloze)", choices=PAIR_KINDS),
    "spans_per_doc": Field(1, "corpus: span pairs per document", ge=0),
    "span_words": Field((8, 24), "corpus: (min, max) words of a span query, at most half of the body",
                        check=_span_words),
    "remove_span": Field(True, "corpus: the positive of a span pair leaves the span out (inverse cloze)"),
    "corpus_pairs": Field(False, "labelled sources: also train on the label-free pairs (pair_kinds ...) of "
                                 "data.train.corpus, a beir source's own corpus when unset: every document "
                                 "then takes part in training, not only the labelled ones"),
    "mine_negatives": Field(False, "replace the hard negatives by num_hard_negatives negatives mined from the "
                                   "corpus (ranked by mine_with), never a known positive of the query; cached "
                                   "beside the corpus"),
    "mine_with": Field("bm25", "mining: what ranks the corpus: 'bm25' (shared terms) or 'bridge' (cosine of the "
                               "dense bridge model bridge.model, prompts bridge.query_prompt / doc_prompt)",
                       choices=MINE_WITH),
    "mine_depth": Field(100, "mining: negatives are drawn from the top mine_depth non-positives of the ranking",
                        ge=1),
    "mine_skip_top": Field(0, "mining: drop the first N non-positives of the ranking (likely unlabelled "
                              "positives)", ge=0),
    "group_by_query": Field(True, "batches never show a query one of its known positives as a negative (an "
                                  "example that would waits for a later batch); data whose queries have one "
                                  "positive each and share no document keeps the plain shuffled order"),
    "seed": Field(0, "seed of the corpus pairs' spans and of the mined negatives' draw; kept apart from "
                     "`seed` so the data stays put when the training order changes"),
    "tsv_header": Field(False, "tsv: the first line is a header"),
    "skip_bad_lines": Field(False, "skip and count malformed lines instead of failing"),
    "max_examples": Field(0, "keep the first N examples (before shuffling); 0 = all", ge=0),
    "query_prefix": Field("", "prepended to every query (e.g. 'query: ')"),
    "doc_prefix": Field("", "prepended to every document"),
}, rules=(_train_rules,))

def _dev_rules(c):
    problem = beir_split_problem(c.data.dev.beir, c.data.dev.split)
    if problem:
        yield "data.dev.beir", problem


DEV = Section({
    "beir": Field("", "dev set during training: BEIR folder or hub dataset id; '' = none", path="input_or_hub"),
    "subset": Field("", "hub dataset config (MIRACL language 'ko')"),
    "corpus": Field("", "hub corpus of a hub dev set ('miracl/miracl-corpus'); '' = judged passages",
                    path="input_or_hub"),
    "split": Field("dev", "qrels split"),
    "max_queries": Field(200, "evaluate on the first N queries; 0 = all", ge=0),
    "max_docs": Field(0, "corpus cap: judged documents + a seeded sample of the others up to N; 0 = all", ge=0),
}, rules=(_dev_rules,))

PARALLEL = Section({
    "path": Field("", "TSV 'en<TAB>target' with a header line; '' = no cross-lingual term", path="input"),
    "batch_size": Field(16, "parallel pairs per step (global)", ge=1),
    "max_pairs": Field(0, "keep the first N pairs; 0 = all", ge=0),
})



def _text_rules(c):
    t = c.data.text
    if t.kind == "hf" and not t.name:
        yield "data.text.name", "must be set for data.text.kind='hf'"


TEXT = Section({
    "path": Field("", "raw target-language text: a text file (one text a line), JSONL, or an hf builder's "
                  "data_files; '' = none", path="input"),
    "kind": Field("auto", "'auto' (hf with a name, jsonl for .jsonl/.json, else txt) | txt | jsonl | hf",
                  choices=TEXT_KINDS),
    "field": Field("text", "jsonl / hf: the field holding the text"),
    "name": Field("", "hf: dataset id or builder ('json', 'text')"),
    "subset": Field("", "hf: config name; '' = default"),
    "split": Field("train", "hf: split"),
    "max_texts": Field(0, "keep the first N texts; 0 = all", ge=0),
    "skip_bad_lines": Field(False, "skip and count malformed records instead of failing"),
}, rules=(_text_rules,))

DATA = Section({"train": TRAIN, "dev": DEV, "parallel": PARALLEL, "text": TEXT})
