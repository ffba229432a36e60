"""Our evaluator vs sentence-transformers' SparseInformationRetrievalEvaluator on the kit's Korean dev set.

Subset (CI on 2 cores): ko/lohelp-hangul dev, the first 30 queries by id, all their relevant pages, and a
seeded sample (seed 0) of other pages up to 100 documents; texts truncated to 128 tokens on both sides.
The model is splade-tiny-en as is (a plain BertForMaskedLM folder; sentence-transformers adds SpladePooling).
"""
import pytest

from sembridge_jax import api
from sembridge_jax.data.retrieval import load_beir, subsample
from sembridge_jax.evaluation.encode import CorpusEncoder
from sembridge_jax.evaluation.evaluator import EvalSettings, evaluate_encoder


@pytest.mark.kit
@pytest.mark.slow
def test_ndcg_matches_sentence_transformers_evaluator(kit, tmp_path):
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.evaluation import SparseInformationRetrievalEvaluator

    model_dir = str(kit / "assets" / "splade-tiny-en")
    ds = subsample(load_beir(kit / "data" / "ko" / "lohelp-hangul", "dev"), max_queries=30, max_docs=100, seed=0)
    st = SparseEncoder(model_dir, device="cpu")
    st.max_seq_length = 128
    ev = SparseInformationRetrievalEvaluator(
        ds.queries, dict(zip(ds.doc_ids(), ds.doc_texts(), strict=True)),
        {q: {d for d, g in r.items() if g > 0} for q, r in ds.qrels.items()},
        ndcg_at_k=[10], mrr_at_k=[10], precision_recall_at_k=[100], accuracy_at_k=[10], map_at_k=[10],
        batch_size=32, write_csv=False)
    ref = ev(st)
    row = evaluate_encoder(CorpusEncoder(api.SparseEncoder.from_pretrained(model_dir)), ds,
                           EvalSettings(measures=("nDCG@10", "RR@10", "R@100"), query_max_length=128,
                                        doc_max_length=128, cache_dir=str(tmp_path)), "splade-tiny-en")
    assert row["nDCG@10"] > 0.05  # a real signal, not two zeros
    assert row["nDCG@10"] == pytest.approx(ref["dot_ndcg@10"], abs=1e-3)
    assert row["RR@10"] == pytest.approx(ref["dot_mrr@10"], abs=1e-3)
    assert row["R@100"] == pytest.approx(ref["dot_recall@100"], abs=1e-3)
    assert row["flops"] == pytest.approx(ref["avg_flops"], rel=1e-3)
    assert row["query_active_dims"] == pytest.approx(ref["query_active_dims"], rel=1e-3)
    assert row["doc_active_dims"] == pytest.approx(ref["corpus_active_dims"], rel=1e-3)
