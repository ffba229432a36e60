"""Public API: SparseEncoder construction, encode -> CSR, bucketing, top-k, save_pretrained."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from flax import nnx
from sentence_transformers import SparseEncoder as STSparseEncoder

from sembridge_jax import api
from sembridge_jax.api import SparseEncoder, bucket
from sembridge_jax.hf.load import load_model
from sembridge_jax.models import EncoderConfig, build_model
from tests.tiny_models import make_hf_folder, tiny_tokenizer

# One batch size and max length throughout, so the jitted encoder compiles few shapes.
KW = dict(batch_size=4, max_length=16)
TEXTS = ["what causes the northern lights", "hello", "the cat sat on the mat " * 3, "world", "lights on",
         "the the the", "mat", "causes of the northern cat lights"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    f = tmp_path_factory.mktemp("api")
    make_hf_folder(f, "roberta", seed=31)
    return f


@pytest.fixture(scope="module")
def encoder(folder):
    return SparseEncoder.from_pretrained(folder)


def test_encode_returns_csr_in_input_order(encoder):
    X = encoder.encode(TEXTS, **KW)
    assert isinstance(X, sp.csr_matrix) and X.shape == (len(TEXTS), encoder.vocab_size)
    reversed_ = encoder.encode(TEXTS[::-1], **KW).toarray()[::-1]
    np.testing.assert_allclose(X.toarray(), reversed_, atol=1e-5)
    assert len({X[i].nnz for i in range(len(TEXTS))}) > 1  # rows really differ
    assert encoder.encode([]).shape == (0, encoder.vocab_size)
    with pytest.raises(TypeError):
        encoder.encode("a single string")


def test_encode_matches_sentence_transformers_with_truncation(folder, encoder):
    st = STSparseEncoder(str(folder), device="cpu")
    st.max_seq_length = KW["max_length"]  # TEXTS[2] is longer: both truncate it
    ref = st.encode(TEXTS, convert_to_tensor=True).to_dense().numpy()
    np.testing.assert_allclose(encoder.encode(TEXTS, **KW).toarray(), ref, atol=1e-4)


def test_top_k(encoder):
    full = encoder.encode(TEXTS, **KW).toarray()
    pruned = encoder.encode(TEXTS, top_k=3, **KW).toarray()
    for f, p in zip(full, pruned, strict=True):
        assert (p > 0).sum() == 3
        assert set(np.flatnonzero(p)) == set(np.argsort(-f)[:3])


def test_shapes_are_bucketed(encoder):
    assert [bucket(n, 32) for n in (1, 3, 5, 32, 40)] == [1, 4, 8, 32, 32]
    assert bucket(3, 256, floor=8) == 8 and bucket(300, 256, floor=8) == 256
    api._splade_batch.clear_cache()
    texts = [" ".join(["cat"] * n) for n in range(1, 14)]
    encoder.encode(texts, **KW)
    # 13 texts (3..15 tokens) in length-sorted batches of 4: rows 4 or 1, token buckets 8 or 16.
    assert api._splade_batch._cache_size() <= 3


def test_construct_from_model_and_tokenizer_and_save(tmp_path, folder, encoder):
    enc = SparseEncoder(load_model(folder), encoder.tokenizer)
    assert enc.config == encoder.config and enc.vocab_size == 1000
    out = enc.save_pretrained(tmp_path / "saved")
    again = SparseEncoder.from_pretrained(out)
    np.testing.assert_allclose(again.encode(TEXTS, **KW).toarray(), enc.encode(TEXTS, **KW).toarray(), atol=1e-6)
    st = STSparseEncoder(str(out), device="cpu")
    st.max_seq_length = KW["max_length"]
    with torch.no_grad():
        ref = st.encode(TEXTS, convert_to_tensor=True).to_dense().numpy()
    np.testing.assert_allclose(enc.encode(TEXTS, **KW).toarray(), ref, atol=1e-4)


def test_fresh_model_and_headless_model(tmp_path):
    cfg = EncoderConfig(vocab_size=120, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                        max_position_embeddings=32)
    tok = tiny_tokenizer(tmp_path / "tok", pad_id=0)
    enc = SparseEncoder(build_model(cfg, nnx.Rngs(0)), tok)
    assert enc.encode(["hello world"]).shape == (1, 120)
    with pytest.raises(ValueError, match="MLM head"):
        SparseEncoder(build_model(cfg.replace(mlm_head=False), nnx.Rngs(0)), tok)


def test_max_length_is_capped_by_the_position_table(encoder):
    long_text = ["cat " * 200]
    assert encoder.config.max_tokens == 64  # RoBERTa: 66 positions minus the padding offset
    capped = encoder.encode(long_text, max_length=1000).toarray()
    np.testing.assert_array_equal(capped, encoder.encode(long_text, max_length=64).toarray())
