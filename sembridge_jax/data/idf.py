"""The inference-free query weights of a corpus (models/query_weights.py): its documents read from a BEIR
folder / corpus.jsonl (title + text, as the model reads pages) or a text / JSONL file (one document per line
or record), tokenised whole by the target tokenizer, each token's IDF counted over them."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from sembridge_jax.data.examples import DataError
from sembridge_jax.data.pairs import read_corpus
from sembridge_jax.data.sources import doc_texts
from sembridge_jax.data.text import load_texts
from sembridge_jax.models.query_weights import idf_weights

log = logging.getLogger(__name__)


def idf_documents(path: str | Path, title_in_doc: bool = True) -> list[str]:
    """The documents of `path` (see the module docstring); errors name the file."""
    if Path(path).is_dir() or Path(path).name == "corpus.jsonl":
        return list(doc_texts(read_corpus(path), title_in_doc).values())
    return load_texts(path)


def corpus_query_weights(path: str | Path, tokenizer, vocab_size: int, title_in_doc: bool = True) -> np.ndarray:
    """float32 [vocab_size]: the IDF of every token of `tokenizer` over the documents of `path`; 0 for the
    special tokens and for ids no token string maps to (model rows beyond the tokenizer, a duplicated
    vocabulary entry): no text ever holds them, and idf.json names tokens by their strings."""
    texts = idf_documents(path, title_in_doc)
    ids = tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
    named = np.zeros(vocab_size, bool)
    named[[i for i in tokenizer.get_vocab().values() if i < vocab_size]] = True
    return idf_weights(ids, vocab_size, ignore=[*tokenizer.all_special_ids, *np.flatnonzero(~named)])


def query_weights_for(config, tokenizer, vocab_size: int) -> np.ndarray | None:
    """The inference-free query weights of `model.query_encoder = "idf"` (`corpus_query_weights`) over
    `model.idf_corpus`, by default the training data's corpus; None for model-encoded queries. Both routes call
    it: the vocabulary model with the target tokenizer, the connector with the bridge tokenizer."""
    if config.model.query_encoder != "idf":
        return None
    spec = config.data.train
    path = config.model.idf_corpus or spec.corpus or (spec.path if spec.type in ("beir", "corpus") else "")
    if not path:
        raise DataError(f"model.idf_corpus: data.train (type {spec.type!r}) has no corpus to count the query "
                        "weights over; set model.idf_corpus to a BEIR corpus or a text file")
    weights = corpus_query_weights(path, tokenizer, vocab_size, spec.title_in_doc)
    log.info("query weights: the IDF of %d tokens over %s", int((weights > 0).sum()), path)
    return weights
