"""Config section `data`: the training source (`data.train`), the dev set (`data.dev`), parallel text,
raw target-language text (`data.text`, the `mlm` / `vocab_warmup` stages)."""
from __future__ import annotations

from pathlib import Path

from sembridge_jax.data.examples import READERS
from sembridge_jax.data.text import TEXT_KINDS
from sembridge_jax.schema import Field, Section


def _train_rules(c):
    t = c.data.train
    if t.type in ("jsonl", "tsv", "beir") and not t.path:
        yield "data.train.path", f"must be set for data.train.type={t.type!r}"
    if t.type in ("hf", "tfds") and not t.name:
        yield "data.train.name", f"must be set for data.train.type={t.type!r}"
    qrels = Path(t.path) / "qrels" / f"{t.split}.tsv"
    if t.type == "beir" and t.path and not qrels.is_file():
        yield "data.train.split", f"has no qrels file {qrels}"
    if t.num_hard_negatives and t.type == "beir":
        yield "data.train.num_hard_negatives", "must be 0 for beir sources (qrels hold no negatives)"
    if t.num_hard_negatives and t.type != "tsv" and not t.negatives_field:
        yield "data.train.negatives_field", "must be set when num_hard_negatives > 0"


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
    "title_in_doc": Field(True, "beir: document text = title + ' ' + text"),
    "tsv_header": Field(False, "tsv: the first line is a header"),
    "skip_bad_lines": Field(False, "skip and count malformed lines instead of failing"),
    "max_examples": Field(0, "keep the first N examples (before shuffling); 0 = all", ge=0),
    "query_prefix": Field("", "prepended to every query (e.g. 'query: ')"),
    "doc_prefix": Field("", "prepended to every document"),
}, rules=(_train_rules,))

DEV = Section({
    "beir": Field("", "dev set during training: BEIR folder or hub dataset id; '' = none", path="input_or_hub"),
    "subset": Field("", "hub dataset config (MIRACL language 'ko')"),
    "corpus": Field("", "hub corpus of a hub dev set ('miracl/miracl-corpus'); '' = judged passages",
                    path="input_or_hub"),
    "split": Field("dev", "qrels split"),
    "max_queries": Field(200, "evaluate on the first N queries; 0 = all", ge=0),
    "max_docs": Field(0, "corpus cap: judged documents + a seeded sample of the others up to N; 0 = all", ge=0),
})

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
