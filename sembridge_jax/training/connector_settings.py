"""Config section `connector`: the connector route (docs/methods.md, "Connector route"): architecture, the
English alignment text, and the three stages. The English model is `source`, the frozen multilingual
encoder `bridge.model`, the parallel text `data.parallel.path`, the retrieval pairs `data.train` (any source train.py reads),
the dev set `eval.beir` and the model dtype `model.dtype`."""
from __future__ import annotations

from sembridge_jax.models.connector import CONNECTOR_KINDS, ECHO_POOLINGS
from sembridge_jax.schema import Field, Section

STAGES = ("align_en", "align_parallel", "retrieval", "xling_queries")  # in the order the runner trains them


def _stage(steps: int, batch_size: int, learning_rate: float, **extra) -> Section:
    return Section({
        "steps": Field(steps, "optimiser steps of the stage; 0 = skip it (every stage is off by default)", ge=0),
        "batch_size": Field(batch_size, "texts (or queries) per step, global", ge=1),
        "learning_rate": Field(learning_rate, "peak learning rate (warmup 5 %, cosine decay)", gt=0.0),
        **extra,
    })


def _align_fields(margin: float, nce: float) -> dict:
    return {
        "margin": Field(margin, "sparse MSE target of teacher-inactive terms inside MILCO's mask: -margin", ge=0.0),
        "nce": Field(nce, "weight of the vector InfoNCE against the batch's teacher vectors", ge=0.0),
    }


def _connector_rules(c):
    k = c.connector
    if k.align_parallel.steps and not c.data.parallel.path:
        yield "data.parallel.path", "must be set when connector.align_parallel.steps > 0"
    if k.retrieval.steps and not c.data.train.path:
        yield "data.train.path", "must be set (the retrieval pairs' source) when connector.retrieval.steps > 0"
    if (k.retrieval.steps and k.retrieval.xling) and not k.english_index:
        yield "connector.english_index", "must be set when connector.retrieval.xling > 0"
    if k.xling_queries.steps and not (k.english_index and c.data.train.path):
        yield "connector.english_index", "connector.xling_queries needs connector.english_index and data.train.path"
    if k.memory.max_pairs and not c.data.parallel.path:
        yield "data.parallel.path", "must be set when connector.memory.max_pairs > 0"
    if c.model.query_encoder == "idf" and not k.echo and any(k[s].steps for s in STAGES):
        yield "connector.echo", "model.query_encoder='idf' weights the LexEcho block in the connector route: turn it on"
    if k.align_en.steps and not (k.english.tsv or k.english.corpus):
        yield "connector.english.tsv", "set connector.english.tsv and/or connector.english.corpus for align_en"


CONNECTOR = Section({
    "kind": Field("mlp", "connector: per-token MLP (LUSIFER) or identity (states fed as they are)",
                  choices=CONNECTOR_KINDS),
    "hidden": Field(0, "connector hidden width; 0 = the bridge's hidden size", ge=0),
    "n_added": Field(0, "learnable tokens appended after each text (LUSIFER)", ge=0),
    "echo": Field(False, "LexEcho (MILCO): a second output block over the bridge vocabulary, the input's own "
                  "tokens weighted by a head on the bridge states (trained in align_en and retrieval)"),
    "echo_pooling": Field("log_sum", "how the echo block pools a token's occurrences in a text: log1p of their summed "
                          "weights (term-frequency saturation, as BM25) or the largest (SPLADE-max)",
                          choices=ECHO_POOLINGS),
    "train_english": Field(True, "train the English layers / MLM transform / input LayerNorm too (the "
                                 "vocabulary rows and output bias never train)"),
    "english_lr_scale": Field(0.25, "learning-rate factor of the trained English parts (layers, MLM transform, "
                              "input LayerNorm, positions) relative to the connector", gt=0.0),
    "state_cache": Field("", "cache of bridge states / teacher logits; '' = <workdir>/cache", path="output"),
    "english_index": Field("", "BEIR folder of the English versions of the pages (shared ids): the untouched "
                           "English model's index, for the cross-lingual term and evaluation", path="input"),
    "mixed_pool": Field(True, "after the last stage: target queries against one pool of the target and the "
                        "English pages (English inclination: Max@R, Complete@K); needs english_index"),
    "combine_with": Field("", "a train.py export folder (vocabulary transfer): after the last stage, score fusion "
                          "[connector | its target vocabulary] on the dev set", path="input"),
    "memory": Section({
        "max_pairs": Field(0, "parallel memory for English-index queries (models/memory.py): the first N pairs of "
                           "data.parallel.path; a query's English-block vector gets the English model's vectors of "
                           "the English sides of the pairs whose target sides are nearest in the bridge; 0 = off",
                           ge=0),
        "k": Field(10, "nearest pairs mixed (WECHSEL's top-10)", ge=1),
        "temperature": Field(0.1, "softmax temperature over their centred cosines (WECHSEL's 0.1)", gt=0.0),
        "weight": Field(1.0, "weight of the memory's vector added to the English block", gt=0.0),
    }),
    "english": Section({
        "tsv": Field("", "TSV whose first column is English text (header line skipped)", path="input"),
        "corpus": Field("", "BEIR folder whose English pages are split into lines / sentences", path="input"),
        "max_texts": Field(4000, "English alignment texts (seeded sample of the unique ones)", ge=1),
        "max_chars": Field(300, "longer lines are cut into sentences, then to this length", ge=20),
        "max_length": Field(64, "bridge / teacher tokens per alignment text", ge=8),
    }),
    "align_en": _stage(0, 64, 2e-3, **_align_fields(1.0, 0.0), **{
        "echo": Field(1.0, "weight of the LexEcho regression onto the teacher's weight of the aligned English "
                           "WordPiece (with connector.echo)", ge=0.0),
    }),
    "align_parallel": _stage(0, 64, 1e-3, **_align_fields(1.0, 0.2), **{
        "max_pairs": Field(4000, "parallel pairs (first N of data.parallel.path)", ge=1),
        "english_mix": Field(1000, "English-only alignment texts mixed into this stage (the first N of "
                             "align_en's)", ge=0),
    }),
    "retrieval": _stage(0, 32, 3e-4, **{
        "lambda_q": Field(1e-2, "FLOPS weight on queries", ge=0.0),
        "lambda_d": Field(5e-3, "FLOPS weight on pages", ge=0.0),
        "flops_warmup_steps": Field(6, "quadratic FLOPS warmup", ge=0),
        "xling": Field(1.0, "InfoNCE weight of the queries against the English index's pages", ge=0.0),
        "query_length": Field(32, "bridge tokens per query", ge=4),
        "doc_length": Field(64, "bridge tokens per page in training (states cached at model.max_doc_length)", ge=8),
    }),
    "xling_queries": _stage(0, 32, 3e-4, **{
        "lambda_q": Field(1e-2, "FLOPS weight on queries", ge=0.0),
        "flops_warmup_steps": Field(15, "quadratic FLOPS warmup", ge=0),
        "xling": Field(1.0, "InfoNCE weight of the queries against the English index's pages", gt=0.0),
        "query_length": Field(32, "bridge tokens per query", ge=4),
    }),
}, rules=(_connector_rules,))
