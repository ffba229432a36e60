"""Max@R / Complete@K on a hand-built mixed pool, computed by hand."""
import numpy as np
import pytest
import scipy.sparse as sp

from sembridge_jax.data.retrieval import RetrievalDataset, build_mixed_pool
from sembridge_jax.evaluation.encode import SparseCollection
from sembridge_jax.evaluation.evaluator import EvalSettings, evaluate_sparse
from sembridge_jax.evaluation.inclination import inclination_metrics


def test_metrics_from_ranks_by_hand():
    ranks = {"a": [1, 2], "b": [1, 7], "c": [3, 40]}
    out = inclination_metrics(ranks, complete_at=(2, 10))
    assert out == {"Max@R": pytest.approx((2 + 7 + 40) / 3), "Complete@2": pytest.approx(1 / 3),
                   "Complete@10": pytest.approx(2 / 3)}


def _ds(prefix, pages, queries, qrels):
    return RetrievalDataset(prefix, {p: {"title": "", "text": f"{prefix} {p}"} for p in pages}, queries, qrels)


def test_mixed_pool_end_to_end_by_hand():
    ko = _ds("ko", ["p1", "p2", "p3"], {"q1": "x", "q2": "y", "q3": "z"},
             {"q1": {"p1": 1}, "q2": {"p2": 1}, "q3": {"p3": 1}})
    en = _ds("en", ["p1", "p2"], {}, {})  # p3 has no English page: q3 is dropped
    pool = build_mixed_pool(ko, en)
    assert list(pool.corpus) == ["ko:p1", "ko:p2", "ko:p3", "en:p1", "en:p2"]
    assert pool.qrels == {"q1": {"ko:p1": 1, "en:p1": 1}, "q2": {"ko:p2": 1, "en:p2": 1}}
    # vocabulary of 3 terms; hand scores per query over [ko:p1, ko:p2, ko:p3, en:p1, en:p2]
    docs = sp.csr_matrix(np.array([[3, 0, 0], [0, 2, 0], [1, 1, 0], [0, 0, 1], [0, 0, 5]], dtype=np.float32))
    queries = sp.csr_matrix(np.array([[1, 0, 1], [0, 1, 0]], dtype=np.float32))
    # q1 scores: [3, 0, 1, 1, 5] -> order en:p2(5), ko:p1(3), ko:p3(1), en:p1(1) => ranks ko:p1=2, en:p1=4
    # q2 scores: [0, 2, 1, 0, 0] -> ko:p2(2), ko:p3(1), then unscored by index ko:p1, en:p1, en:p2 => en:p2=5
    vocab = ["a", "b", "c"]
    row = evaluate_sparse(SparseCollection(list(pool.queries), queries, vocab),
                          SparseCollection(list(pool.corpus), docs, vocab), pool,
                          EvalSettings(measures=("R@2",), depth=5, inclination=True, complete_at=(4, 5)), "toy")
    assert row["Max@R"] == pytest.approx((4 + 5) / 2)
    assert row["Complete@4"] == pytest.approx(1 / 2)
    assert row["Complete@5"] == pytest.approx(1.0)
    assert row["R@2"] == pytest.approx((1 / 2 + 1 / 2) / 2)


def test_english_side_queries_and_id_map():
    ko = _ds("ko", ["k1"], {}, {})
    en = _ds("en", ["e1"], {"eq": "t"}, {"eq": {"e1": 1}})
    pool = build_mixed_pool(ko, en, id_map={"k1": "e1"}, queries="english")
    assert pool.qrels == {"eq": {"ko:k1": 1, "en:e1": 1}}
    with pytest.raises(ValueError, match="no query"):
        build_mixed_pool(ko, en)
