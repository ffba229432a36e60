"""Inverted-index retrieval == dense brute force (exact top-k, deterministic ties), and full-ranking ranks."""
import numpy as np
import pytest
import scipy.sparse as sp

from sembridge_jax.evaluation.index import InvertedIndex


def _integer_sparse(n, v, density, seed):
    # small integer weights: sums are exact in float32 and ties are frequent
    m = sp.random(n, v, density=density, random_state=seed, format="csr", dtype=np.float32)
    m.data = np.ceil(m.data * 3).astype(np.float32)
    return m


def _brute_order(scores_row):
    order = np.lexsort((np.arange(scores_row.size), -scores_row))
    return order


@pytest.mark.parametrize("block_size", [1, 7, 256])
def test_top_k_equals_dense_brute_force(block_size):
    docs, queries = _integer_sparse(400, 120, 0.06, 1), _integer_sparse(50, 120, 0.05, 2)
    queries = sp.vstack([queries, sp.csr_matrix((1, 120), dtype=np.float32)]).tocsr()  # an empty query
    k = 15
    idx, val = InvertedIndex(docs).search(queries, k, block_size=block_size, desc=None)
    dense = (queries @ docs.T).toarray()
    for r in range(queries.shape[0]):
        order = _brute_order(dense[r])
        order = order[dense[r][order] > 0][:k]
        assert idx[r, : order.size].tolist() == order.tolist()
        assert (idx[r, order.size:] == -1).all()
        np.testing.assert_array_equal(val[r, : order.size], dense[r][order])
    assert (idx[-1] == -1).all()


def test_ranks_equal_position_in_full_brute_force_ranking():
    docs, queries = _integer_sparse(300, 80, 0.05, 3), _integer_sparse(20, 80, 0.05, 4)
    rng = np.random.default_rng(0)
    targets = [rng.choice(300, 4, replace=False) for _ in range(20)]
    ranks = InvertedIndex(docs).ranks(queries, targets, block_size=6)
    dense = (queries @ docs.T).toarray()
    for r in range(20):
        position = np.empty(300, dtype=int)
        position[_brute_order(dense[r])] = np.arange(1, 301)
        assert ranks[r].tolist() == position[targets[r]].tolist()


def test_bad_input():
    with pytest.raises(ValueError, match="vocab size"):
        InvertedIndex(_integer_sparse(5, 10, 0.5, 0)).search(_integer_sparse(2, 11, 0.5, 0), 3)
    neg = sp.csr_matrix(np.array([[1.0, -1.0]], dtype=np.float32))
    with pytest.raises(ValueError, match="non-negative"):
        InvertedIndex(neg)
