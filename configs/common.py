"""The paper's fine-tuning setting (SemBridge, docs/methods.md "The paper's algorithm"), shared by every language.

`paper_config(lang)` is the only place the paper's choices live; `configs/<lang>_splade.py`
just picks the language. Hub ids here are resolved by the hub code at run time: models and tokenizers by
huggingface_hub / transformers, WebFAQ by `datasets`, MIRACL file by file by `sembridge_jax/data/hub.py`
(its repos hold loading scripts that `datasets` >= 4 refuses). The MIRACL repos are gated: set HF_TOKEN.

Checked against a local hub with the real repo layouts (tests/test_paper_config_hub.py, tests/hub/): the
Korean config end to end with tiny random weights and a few rows (see configs/ko_splade.py for the command
and what was not run). The other languages share everything but the names in the two tables below, which
the local hub does not serve.
"""

from sembridge_jax.config import default_config

# Target tokenizers of the paper, per language (docs/methods.md, "Paper setup").
PAPER_TOKENIZERS = {
    "ar": "UBC-NLP/ARBERT",
    "zh": "fnlp/bart-base-chinese",
    "hi": "l3cube-pune/hindi-bert-v2",
    "ko": "monologg/kobigbird-bert-base",
    "ru": "DeepPavlov/rubert-base-cased",
}
# WebFAQ (PaDaS-Lab/webfaq) names its subsets by ISO 639-3 code.
WEBFAQ_SUBSETS = {"ar": "ara", "zh": "zho", "hi": "hin", "ko": "kor", "ru": "rus"}


def paper_config(lang: str):
    """SemBridge on naver/splade-v3 -> `lang`: bge-m3 bridge, alpha 4, WebFAQ fine-tuning, MIRACL eval."""
    if lang not in PAPER_TOKENIZERS:
        raise ValueError(f"paper_config: language {lang!r} not in {sorted(PAPER_TOKENIZERS)}")
    c = default_config()
    c.workdir = f"runs/{lang}_splade"
    c.source = "naver/splade-v3"
    c.target_tokenizer = PAPER_TOKENIZERS[lang]

    c.bridge.model = "BAAI/bge-m3"  # its own pooling (CLS) + normalisation via sentence-transformers
    c.bridge.backend = "sentence_transformers"
    c.bridge.batch_size = 512
    c.init.method = "sembridge"
    c.init.alpha = 4.0

    c.model.dtype = "bfloat16"
    c.model.splade_chunk_size = 32
    c.model.max_query_length = 64
    c.model.max_doc_length = 256

    # WebFAQ question/answer pairs. PaDaS-Lab/webfaq has one config per ISO 639-3 language, each with
    # the single split "default"; columns: id, origin, url, question, answer, semantic_similarity_score,
    # topic, question_type. We use question -> answer.
    c.data.train.type = "hf"
    c.data.train.name = "PaDaS-Lab/webfaq"
    c.data.train.subset = WEBFAQ_SUBSETS[lang]
    c.data.train.split = "default"
    c.data.train.query_field = "question"
    c.data.train.positive_field = "answer"
    c.data.train.negatives_field = ""
    c.data.train.scores_field = ""

    # MIRACL (miracl/miracl, subset = language code, split dev): the evaluation loader
    # (data/retrieval.py) joins its topics/qrels with miracl/miracl-corpus.
    c.data.dev.beir = "miracl/miracl"
    c.data.dev.subset = lang
    c.data.dev.corpus = "miracl/miracl-corpus"
    c.data.dev.split = "dev"
    c.data.dev.max_queries = 200
    c.eval.beir = "miracl/miracl"
    c.eval.subset = lang
    c.eval.corpus = "miracl/miracl-corpus"
    c.eval.split = "dev"
    c.eval.metrics = ("nDCG@10", "R@100")

    c.loss.preset = "sentence_transformers"
    c.train.num_steps = 3000
    c.train.batch_size = 64
    c.train.learning_rate = 2e-5
    c.train.warmup_steps = 300
    c.train.eval_every = 1000
    c.checkpoint.every_steps = 1000
    c.compare.methods = ("mvgauss", "ofa", "random")
    return c
