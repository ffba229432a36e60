"""The connector's retrieval stream (`training.connector_data.RetrievalBatches`): each pair's page group is
its positive then its hard negatives, the states of exactly those pages, against a direct NumPy slice; the
English vector is the pair's."""
import numpy as np
import pytest
import scipy.sparse as sp

from sembridge_jax.data.examples import Example
from sembridge_jax.training.connector_data import (
    RaggedStates,
    RetrievalBatches,
    _length_batches,
    bucket_length,
    pair_rows,
)


def _ragged(lengths, dim, seed):
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = rng.normal(size=(offsets[-1], dim)).astype(np.float16)
    return RaggedStates(flat, offsets, rng.integers(5, 99, offsets[-1]).astype(np.int32))


def _page(states, row, length):
    s, e = states.offsets[row], min(states.offsets[row + 1], states.offsets[row] + length)
    out = np.zeros((length, states.flat.shape[1]), np.float16)
    out[:e - s] = states.flat[s:e]
    return out


@pytest.mark.parametrize("k", [0, 2])
def test_page_groups_are_the_positive_then_the_negatives(k):
    queries, docs = _ragged([3, 5, 2, 4], 6, 0), _ragged([7, 2, 9, 4, 6, 3], 6, 1)
    pairs = [(0, 0), (1, 2), (2, 4), (3, 1), (1, 5)]
    negatives = [[1, 3], [0, 4], [5, 2], [2, 0], [3, 4]] if k else None
    english = sp.csr_matrix(np.arange(len(pairs))[:, None] + 1.0)  # row p holds p + 1
    stream = RetrievalBatches(queries, docs, pairs, batch_size=4, query_length=4, doc_length=5, seed=3,
                              negatives=negatives, english_docs=english)
    for _ in range(3):
        batch = stream.next_batch()
        assert batch["doc_states"].shape == (4, 1 + k, 5, 6) and batch["doc_mask"].shape == (4, 1 + k, 5)
        for r in range(4):
            q = int(np.flatnonzero([np.array_equal(batch["query_states"][r], _page(queries, i, 4))
                                    for i in range(len(queries))])[0])
            group = batch["doc_states"][r]
            p = int(batch["english_doc"][r, 0]) - 1
            assert pairs[p][0] == q
            np.testing.assert_array_equal(group[0], _page(docs, pairs[p][1], 5))
            for j, d in enumerate(negatives[p] if k else []):
                np.testing.assert_array_equal(group[1 + j], _page(docs, d, 5))
                np.testing.assert_array_equal(batch["doc_mask"][r, 1 + j], np.arange(5) < min(5, np.diff(docs.offsets)[d]))
                np.testing.assert_array_equal(batch["doc_ids"][r, 1 + j][:2], docs.ids[docs.offsets[d]:docs.offsets[d] + 2])


def test_negatives_and_english_vectors_are_one_per_pair():
    queries, docs = _ragged([3, 5], 4, 0), _ragged([2, 2, 2], 4, 1)
    pairs = [(0, 0), (1, 1)]
    with pytest.raises(ValueError, match="same count"):
        RetrievalBatches(queries, docs, pairs, batch_size=2, query_length=4, doc_length=4, seed=0,
                         negatives=[[1], [0, 2]])
    with pytest.raises(ValueError, match="same count"):
        RetrievalBatches(queries, docs, pairs, batch_size=2, query_length=4, doc_length=4, seed=0, negatives=[[1]])
    with pytest.raises(ValueError, match="1 English page vectors for 2 pairs"):
        RetrievalBatches(queries, docs, pairs, batch_size=2, query_length=4, doc_length=4, seed=0,
                         english_docs=sp.csr_matrix(np.ones((1, 3))))


def test_pair_rows_index_every_text_once():
    corpus = ["page a", "page b", "page c", "page a"]
    examples = [Example("q1", "page b", ("page c",)), Example("q2", "page a minus a span", ("page b",)),
                Example("q1", "page a", ("page d",))]
    rows = pair_rows(examples, corpus)
    assert rows.queries == ["q1", "q2"]
    assert rows.pages == corpus + ["page a minus a span", "page d"]
    for e, (q, d), negs in zip(examples, rows.pairs, rows.negatives, strict=True):
        assert rows.queries[q] == e.query and rows.pages[d] == e.positive
        assert [rows.pages[n] for n in negs] == list(e.negatives)
    assert rows.pairs[2] == (0, 0)  # a repeated text maps to its first row
    assert pair_rows([Example("q", "page a")], corpus).negatives is None


def test_length_buckets_pad_to_powers_of_two_then_steps_of_64():
    assert [bucket_length(n, 512) for n in (1, 8, 9, 33, 64, 65, 130, 257, 300, 511, 900)] == \
        [8, 8, 16, 64, 64, 128, 192, 320, 320, 512, 512]
    assert bucket_length(300, 256) == 256 and bucket_length(300, 384) == 320 and bucket_length(380, 384) == 384
    lengths = np.minimum(np.random.default_rng(0).integers(1, 600, 5000), 384)
    seen, shapes = [], set()
    for idx, rows, length in _length_batches(lengths, 384):
        assert len(idx) <= rows < 2 * max(len(idx), 1) and length == bucket_length(lengths[idx].max(), 384)
        assert rows * bucket_length(lengths[idx].min(), 384) <= 4096 or rows == 1
        seen += list(idx)
        shapes.add((rows, length))
    assert sorted(seen) == list(range(5000)) and len(shapes) <= 30  # every text once, few compiled shapes
