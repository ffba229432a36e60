"""Retrieval evaluation: encode (cached) -> inverted-index retrieval -> metrics; BM25 reference; English
inclination on mixed pools; result tables/plots; serving exports. CLI: `evaluate.py` (docs/evaluation.md).

    from sembridge_jax import SparseEncoder
    from sembridge_jax.data.retrieval import load_eval_dataset
    from sembridge_jax.evaluation.encode import CorpusEncoder
    from sembridge_jax.evaluation.evaluator import EvalSettings, evaluate_encoder
    encoder = CorpusEncoder(SparseEncoder.from_pretrained(folder))
    row = evaluate_encoder(encoder, load_eval_dataset(beir_dir), EvalSettings(), "name")
"""
