"""The connector's retrieval stream (`training.connector_data.RetrievalBatches`): each query's page group is
its positive then its hard negatives, the states of exactly those pages, against a direct NumPy slice."""
import numpy as np
import pytest

from sembridge_jax.training.connector_data import RaggedStates, RetrievalBatches


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
    negatives = [[1, 3], [0, 4], [5, 2], [2, 0]] if k else None
    stream = RetrievalBatches(queries, docs, pairs, batch_size=4, query_length=4, doc_length=5, seed=3,
                              negatives=negatives)
    for _ in range(3):
        batch = stream.next_batch()
        assert batch["doc_states"].shape == (4, 1 + k, 5, 6) and batch["doc_mask"].shape == (4, 1 + k, 5)
        for r in range(4):
            q = int(np.flatnonzero([np.array_equal(batch["query_states"][r], _page(queries, i, 4))
                                    for i in range(len(queries))])[0])
            group = batch["doc_states"][r]
            positives = [d for qq, d in pairs if qq == q]
            assert any(np.array_equal(group[0], _page(docs, d, 5)) for d in positives)
            for j, d in enumerate(negatives[q] if k else []):
                np.testing.assert_array_equal(group[1 + j], _page(docs, d, 5))
                np.testing.assert_array_equal(batch["doc_mask"][r, 1 + j], np.arange(5) < min(5, np.diff(docs.offsets)[d]))
                np.testing.assert_array_equal(batch["doc_ids"][r, 1 + j][:2], docs.ids[docs.offsets[d]:docs.offsets[d] + 2])


def test_negatives_need_pages_and_one_count():
    queries, docs = _ragged([3, 5], 4, 0), _ragged([2, 2, 2], 4, 1)
    with pytest.raises(ValueError, match="same count"):
        RetrievalBatches(queries, docs, [(0, 0), (1, 1)], batch_size=2, query_length=4, doc_length=4, seed=0,
                         negatives=[[1], [0, 2]])
