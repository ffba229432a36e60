"""Our ranking metrics and FLOPS against ir-measures, pytrec_eval and sentence-transformers."""
import numpy as np
import pytest
import scipy.sparse as sp

from sembridge_jax.evaluation.metrics import active_dims, flops, mean_metrics, per_query_metrics

QRELS = {
    "q1": {"d1": 2, "d2": 1, "d5": 0},
    "q2": {"d3": 1},
    "q3": {"d4": 1, "d6": 3, "d7": 1},
    "q4": {"d9": 1},  # no run at all: scores 0
    "q5": {"d1": 0},  # no relevant document: not averaged (trec_eval convention for these measures)
}
RUN = {
    "q1": ["d5", "d2", "d8", "d1"],
    "q2": ["d1", "d2", "d4", "d5", "d6", "d7", "d8", "d9", "d10", "d11", "d3"],  # relevant at rank 11
    "q3": ["d6", "d4", "d0", "d7"],
    "q5": ["d1"],
}
MEASURES = ("nDCG@10", "nDCG@3", "R@100", "R@2", "RR@10", "P@3")


def _trec_run(run):
    return {q: {d: float(len(docs) - i) for i, d in enumerate(docs)} for q, docs in run.items()}


def test_matches_ir_measures_per_query():
    import ir_measures

    ours = per_query_metrics(QRELS, RUN, MEASURES)
    judged = {q for q, r in QRELS.items() if any(g > 0 for g in r.values())}
    for name in MEASURES:
        ref = {m.query_id: m.value for m in ir_measures.iter_calc([ir_measures.parse_measure(name)], QRELS, _trec_run(RUN))}
        assert set(ours[name]) == judged
        for q in judged:
            assert ours[name][q] == pytest.approx(ref.get(q, 0.0), abs=1e-12), (name, q)


def test_matches_pytrec_eval_directly():
    import pytrec_eval

    ev = pytrec_eval.RelevanceEvaluator({q: r for q, r in QRELS.items() if q != "q5"},
                                        {"ndcg_cut.10", "recall.100", "recip_rank"})
    ref = ev.evaluate(_trec_run({q: d for q, d in RUN.items() if q != "q5"}))
    ours = per_query_metrics(QRELS, RUN, ("nDCG@10", "R@100", "RR@1000"))
    for q, vals in ref.items():
        assert ours["nDCG@10"][q] == pytest.approx(vals["ndcg_cut_10"], abs=1e-12)
        assert ours["R@100"][q] == pytest.approx(vals["recall_100"], abs=1e-12)
        assert ours["RR@1000"][q] == pytest.approx(vals["recip_rank"], abs=1e-12)
    # hand value: q1 DCG = 1/log2(3) + 2/log2(5), ideal = 2 + 1/log2(3)
    assert ours["nDCG@10"]["q1"] == pytest.approx((1 / np.log2(3) + 2 / np.log2(5)) / (2 + 1 / np.log2(3)))
    assert mean_metrics(QRELS, RUN, ("RR@10",))["RR@10"] == pytest.approx((1 / 2 + 0 + 1 + 0) / 4)


def test_other_measures_go_through_ir_measures():
    import ir_measures

    ours = mean_metrics(QRELS, RUN, ("AP@100",))["AP@100"]
    judged = {q: r for q, r in QRELS.items() if q != "q5"}
    ref = ir_measures.calc_aggregate([ir_measures.parse_measure("AP@100")], judged, _trec_run(RUN))
    assert ours == pytest.approx(ref[ir_measures.parse_measure("AP@100")], abs=1e-12)
    with pytest.raises(ValueError, match="unknown measure"):
        mean_metrics(QRELS, RUN, ("NotAMeasure@3",))


def test_flops_and_active_dims_match_sentence_transformers():
    import torch
    from sentence_transformers.util import compute_count_vector

    q = sp.random(40, 300, density=0.05, random_state=1, format="csr", dtype=np.float32)
    d = sp.random(70, 300, density=0.2, random_state=2, format="csr", dtype=np.float32)

    def count(x):
        c = x.tocoo()
        t = torch.sparse_coo_tensor(np.vstack([c.row, c.col]), c.data, c.shape, check_invariants=True)
        return compute_count_vector(t).double() / x.shape[0]

    assert flops(q, d) == pytest.approx(float(count(q) @ count(d)), rel=1e-12)
    assert active_dims(q) == pytest.approx(q.nnz / 40)
    # FLOPS is the expected number of shared non-zero dimensions of a query-document pair
    brute = ((q > 0).astype(np.float64) @ (d > 0).astype(np.float64).T).mean()
    assert flops(q, d) == pytest.approx(brute, rel=1e-12)
