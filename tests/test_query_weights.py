"""Inference-free queries (models/query_weights.py, data/idf.py): the IDF table against bm25s' Lucene idf over
a Counter's document frequencies, the query vectors against sentence-transformers' SparseStaticEmbedding, the
export as a sentence-transformers Router (encode_query / encode_document = ours), the file round trip, the
evaluation cache and the export CLI; bad input names the file or key."""
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from bm25s.scoring import _score_idf_lucene
from sentence_transformers import SparseEncoder as STSparseEncoder
from sentence_transformers.sparse_encoder.modules import SparseStaticEmbedding

from sembridge_jax.api import SparseEncoder
from sembridge_jax.data.examples import DataError
from sembridge_jax.data.idf import corpus_query_weights, idf_documents
from sembridge_jax.evaluation.encode import CorpusEncoder
from sembridge_jax.export.__main__ import main as export_main
from sembridge_jax.hf.save import IDF_FILE, QUERY_MODULE, ROUTER_FILE, read_query_weights
from sembridge_jax.models.query_weights import idf_weights, static_query_vectors, with_static_block
from tests.tiny_models import make_hf_folder

REPO = Path(__file__).resolve().parents[1]

DOCS = ["the cat sat on the mat", "northern lights over the sea", "a cat and a dog", "lights on", "hello world",
        "the sea the sea the sea"]
QUERIES = ["cat lights", "the sea", "hello hello world", "dog", "zebra unknown words", ""]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    f = tmp_path_factory.mktemp("qw")
    make_hf_folder(f, "bert", seed=5)
    return f


@pytest.fixture(scope="module")
def encoder(folder):
    return SparseEncoder.from_pretrained(folder)


@pytest.fixture(scope="module")
def weights(encoder, tmp_path_factory):
    docs = tmp_path_factory.mktemp("docs") / "docs.txt"
    docs.write_text("\n".join(DOCS) + "\n")
    return corpus_query_weights(docs, encoder.tokenizer, encoder.vocab_size)


def test_idf_is_lucene_idf_over_document_frequencies(encoder, weights):
    tok = encoder.tokenizer
    assert encoder.vocab_size > len(tok)  # the tiny model has rows no token names
    docs = tok(DOCS, add_special_tokens=False)["input_ids"]
    df = Counter(t for ids in docs for t in set(ids))
    ref = np.array([_score_idf_lucene(df.get(t, 0), len(docs)) for t in range(encoder.vocab_size)], np.float32)
    ref[tok.all_special_ids] = 0.0
    ref[sorted(set(range(encoder.vocab_size)) - set(tok.get_vocab().values()))] = 0.0  # no token names them
    np.testing.assert_allclose(weights, ref, rtol=1e-6)
    np.testing.assert_allclose(idf_weights(docs, encoder.vocab_size)[len(tok):], np.log1p(len(docs) / 0.5 + 1))
    cat, the = tok.convert_tokens_to_ids(["cat", "the"])
    assert weights[cat] > weights[the] > 0  # "the" is in more documents


def test_idf_errors():
    with pytest.raises(ValueError, match="no documents"):
        idf_weights([], 10)
    with pytest.raises(ValueError, match="token id 12 outside the vocabulary of 10"):
        idf_weights([[1, 12]], 10)


def test_query_vectors_equal_sentence_transformers_static_embedding(encoder, weights):
    tok = encoder.tokenizer
    st = SparseStaticEmbedding(tokenizer=tok, weight=torch.tensor(weights), frozen=True)
    features = st.preprocess(QUERIES)
    ref = st(features)["sentence_embedding"].numpy()
    ours = static_query_vectors(tok(QUERIES, add_special_tokens=False)["input_ids"], weights).toarray()
    np.testing.assert_allclose(ours, ref, rtol=1e-6)
    # with the special tokens a model's tokenisation adds: the same vectors (their weight is 0)
    static = SparseEncoder(encoder.model, tok, query_weights=weights)
    np.testing.assert_allclose(static.encode_queries(QUERIES, max_length=32).toarray(), ref, rtol=0, atol=0)
    assert (ours > 0).sum(1)[2] == 2  # "hello hello world": distinct tokens once


def test_query_top_k_keeps_the_heaviest_tokens(encoder, weights):
    ids = encoder.tokenizer(QUERIES, add_special_tokens=False)["input_ids"]
    full = static_query_vectors(ids, weights).toarray()
    top = static_query_vectors(ids, weights, top_k=1).toarray()
    for f, t in zip(full, top, strict=True):
        assert (t > 0).sum() == min(1, (f > 0).sum())
        if f.any():
            assert t.max() == f.max() and t[np.argmax(t)] == f[np.argmax(t)]


def test_without_weights_queries_go_through_the_model(encoder):
    np.testing.assert_array_equal(encoder.encode_queries(QUERIES[:4], max_length=16).toarray(),
                                  encoder.encode(QUERIES[:4], max_length=16).toarray())


@pytest.fixture(scope="module")
def splade_tiny():
    """The bundled splade-tiny-en: a tokenizer with one token per model row, as sentence-transformers' Router needs."""
    return SparseEncoder.from_pretrained(REPO / "assets/splade-tiny-en")


def test_export_is_a_sentence_transformers_router_equal_to_ours(tmp_path, splade_tiny):
    encoder = splade_tiny
    docs = tmp_path / "docs.txt"
    docs.write_text("\n".join(DOCS) + "\n")
    weights = corpus_query_weights(docs, encoder.tokenizer, encoder.vocab_size)
    out = tmp_path / "export"
    SparseEncoder(encoder.model, encoder.tokenizer, query_weights=weights).save_pretrained(out)
    table = json.loads((out / IDF_FILE).read_text())
    vocab = encoder.tokenizer.get_vocab()
    assert table == pytest.approx({t: float(weights[i]) for t, i in vocab.items() if weights[i]})
    ours = SparseEncoder.from_pretrained(out)
    np.testing.assert_array_equal(ours.query_weights, weights)
    st = STSparseEncoder(str(out), device="cpu")
    q = st.encode_query(QUERIES[:5], convert_to_tensor=True).to_dense().numpy()
    np.testing.assert_allclose(ours.encode_queries(QUERIES[:5], max_length=32).toarray(), q, rtol=1e-6)
    d = st.encode_document(DOCS, convert_to_tensor=True).to_dense().numpy()
    np.testing.assert_allclose(ours.encode(DOCS, max_length=32).toarray(), d, atol=1e-4)
    # transformers still reads the one copy of the weights at the top of the folder
    from transformers import AutoModelForMaskedLM
    assert AutoModelForMaskedLM.from_pretrained(str(out)).config.vocab_size == encoder.vocab_size
    # a re-export without weights leaves no query files behind: a plain symmetric folder again
    encoder.save_pretrained(out)
    assert not (out / IDF_FILE).exists() and not (out / ROUTER_FILE).exists() and not (out / QUERY_MODULE).exists()
    assert SparseEncoder.from_pretrained(out).query_weights is None
    np.testing.assert_allclose(STSparseEncoder(str(out), device="cpu").encode_query(
        DOCS[:2], convert_to_tensor=True).to_dense().numpy(), encoder.encode(DOCS[:2], max_length=32).toarray(),
        atol=1e-4)


def test_bad_weights_and_files(tmp_path, encoder, weights):
    with pytest.raises(ValueError, match=r"query_weights: expected shape"):
        SparseEncoder(encoder.model, encoder.tokenizer, query_weights=weights[:-1])
    with pytest.raises(ValueError, match=r"one token per model row \(69 tokens, 1000 rows\)"):
        SparseEncoder(encoder.model, encoder.tokenizer, query_weights=weights).save_pretrained(tmp_path / "x")
    assert not (tmp_path / "x").exists()  # refused before anything is written
    (tmp_path / IDF_FILE).write_text(json.dumps({"cat": 1.0, "no-such-token-xyz": 2.0}))
    with pytest.raises(ValueError, match=rf"{IDF_FILE}: 1 tokens not in the folder's tokenizer.*no-such-token-xyz"):
        read_query_weights(tmp_path, encoder.tokenizer, encoder.vocab_size)
    assert read_query_weights(tmp_path / "absent", encoder.tokenizer, encoder.vocab_size) is None


def test_evaluation_cache_keys_the_query_encoder(tmp_path, encoder, weights):
    static = SparseEncoder(encoder.model, encoder.tokenizer, query_weights=weights)
    ids = [f"q{i}" for i in range(4)]
    a = CorpusEncoder(static).encode(ids, QUERIES[:4], max_length=16, cache_dir=tmp_path, queries=True)
    b = CorpusEncoder(encoder).encode(ids, QUERIES[:4], max_length=16, cache_dir=tmp_path, queries=True)
    c = CorpusEncoder(static).encode(ids, QUERIES[:4], max_length=16, cache_dir=tmp_path)  # documents: the model
    np.testing.assert_array_equal(a.matrix.toarray(), static.encode_queries(QUERIES[:4], max_length=16).toarray())
    np.testing.assert_array_equal(b.matrix.toarray(), c.matrix.toarray())
    assert not np.array_equal(a.matrix.toarray(), b.matrix.toarray())
    assert len(list(tmp_path.glob("*.npz"))) == 2  # model queries and documents share one entry


def _beir(folder):
    folder.mkdir()
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps({"_id": f"d{i}", "title": "t" if i else "", "text": t})
                                                   for i, t in enumerate(DOCS)) + "\n")
    return folder


def test_corpus_documents_and_the_export_cli(tmp_path, splade_tiny):
    encoder, folder = splade_tiny, REPO / "assets/splade-tiny-en"
    beir = _beir(tmp_path / "beir")
    texts = idf_documents(beir)
    assert texts == [DOCS[0]] + [f"t {d}" for d in DOCS[1:]]  # title + text, as the model reads pages
    (tmp_path / "docs.txt").write_text("\n".join(DOCS) + "\n\n")
    assert idf_documents(tmp_path / "docs.txt") == DOCS
    w = corpus_query_weights(tmp_path / "docs.txt", encoder.tokenizer, encoder.vocab_size)
    assert export_main(["--model", str(folder), "--out", str(tmp_path / "x"), "--idf-corpus",
                        str(tmp_path / "docs.txt")]) == 0
    np.testing.assert_array_equal(SparseEncoder.from_pretrained(tmp_path / "x").query_weights, w)
    assert export_main(["--model", str(tmp_path / "x"), "--out", str(tmp_path / "y")]) == 0  # kept
    np.testing.assert_array_equal(SparseEncoder.from_pretrained(tmp_path / "y").query_weights, w)
    with pytest.raises(DataError, match="missing.txt does not exist"):
        idf_documents(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(DataError, match="empty.txt: no text"):
        idf_documents(tmp_path / "empty.txt")


def test_the_pipeline_names_the_key_when_no_corpus_is_known(encoder, tmp_path):
    from sembridge_jax.config import default_config
    from sembridge_jax.data.idf import query_weights_for

    c = default_config()
    c.data.train.type, c.data.train.path = "jsonl", str(tmp_path / "pairs.jsonl")
    assert query_weights_for(c, encoder.tokenizer, encoder.vocab_size) is None  # model queries: nothing read
    c.model.query_encoder = "idf"
    with pytest.raises(DataError, match=r"model.idf_corpus: data.train \(type 'jsonl'\) has no corpus"):
        query_weights_for(c, encoder.tokenizer, encoder.vocab_size)
    (tmp_path / "docs.txt").write_text("\n".join(DOCS) + "\n")
    c.model.idf_corpus = str(tmp_path / "docs.txt")
    np.testing.assert_array_equal(query_weights_for(c, encoder.tokenizer, encoder.vocab_size),
                                  corpus_query_weights(tmp_path / "docs.txt", encoder.tokenizer, encoder.vocab_size))


def test_evaluate_cli_query_options(tmp_path, splade_tiny):
    import evaluate

    beir = _beir(tmp_path / "beir")
    (beir / "queries.jsonl").write_text("\n".join(json.dumps({"_id": f"q{i}", "text": q})
                                                  for i, q in enumerate(QUERIES[:4])) + "\n")
    (beir / "qrels").mkdir()
    (beir / "qrels/dev.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(4)))
    model = str(REPO / "assets/splade-tiny-en")
    common = ["--model", model, "--beir", str(beir), "--query-max-length", "16", "--doc-max-length", "32"]
    static = evaluate.main([*common, "--idf-corpus", str(beir), "--out", str(tmp_path / "a")])[0]
    plain = evaluate.main([*common, "--out", str(tmp_path / "b")])[0]
    tok = splade_tiny.tokenizer
    distinct = np.mean([len(set(tok(q, add_special_tokens=False)["input_ids"])) for q in QUERIES[:4]])
    assert static["query_active_dims"] == pytest.approx(distinct)
    assert plain["query_active_dims"] > distinct  # the model expands its queries
    with pytest.raises(SystemExit):
        evaluate.main([*common, "--idf-corpus", str(beir), "--model-queries", "--out", str(tmp_path / "c")])


def test_idf_queries_read_the_whole_query_like_sentence_transformers(splade_tiny, tmp_path):
    """max_length bounds the model's input only: an IDF query keeps the tokens beyond it, as
    SparseStaticEmbedding does (the export's query route), and the evaluation cache keys them apart."""
    docs = tmp_path / "docs.txt"
    docs.write_text("\n".join(DOCS) + "\n")
    static = SparseEncoder(splade_tiny.model, splade_tiny.tokenizer,
                           query_weights=corpus_query_weights(docs, splade_tiny.tokenizer, splade_tiny.vocab_size))
    long = ["cat " * 20 + "northern lights"]
    lights = splade_tiny.tokenizer.convert_tokens_to_ids("lights")
    assert static.encode_queries(long, max_length=8)[0, lights] > 0
    st = SparseStaticEmbedding(tokenizer=splade_tiny.tokenizer, weight=torch.tensor(static.query_weights))
    np.testing.assert_allclose(static.encode_queries(long, max_length=8).toarray(),
                               st(st.preprocess(long))["sentence_embedding"].detach().numpy(), rtol=1e-6)
    coll = CorpusEncoder(static).encode(["q"], long, max_length=8, cache_dir=tmp_path / "c", queries=True)
    assert coll.matrix[0, lights] > 0


def test_a_missing_idf_corpus_fails_at_config_time():
    from sembridge_jax.config import load_config

    with pytest.raises(ValueError, match="'model.idf_corpus' points to a missing local path: /nope/corpus.jsonl"):
        load_config(REPO / "configs/demo_ko.py", ["model.idf_corpus=/nope/corpus.jsonl"])


def test_with_static_block_replaces_the_last_columns():
    """A connector's queries: the first block kept as encoded, the last len(weights) columns the static vectors."""
    rng = np.random.default_rng(0)
    dense = rng.uniform(0, 2, (3, 10)) * (rng.random((3, 10)) < 0.5)
    weights = np.array([0, 1.5, 2.0, 0.5], np.float32)
    out = with_static_block(sp.csr_matrix(dense), [[1, 2, 2], [0], [3, 1]], weights).toarray()
    expected = dense.copy()
    expected[:, 6:] = [[0, 1.5, 2.0, 0], [0, 0, 0, 0], [0, 1.5, 0, 0.5]]
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="2 queries and a block of 4"):
        with_static_block(sp.csr_matrix(dense), [[1], [2]], weights)
