"""Retrieval evaluation: encode (cached) -> inverted-index retrieval -> metrics; BM25 reference; English
inclination on mixed pools; result tables/plots; serving exports. CLI: `evaluate.py` (docs/evaluation.md).

    from sembridge_jax.evaluation.datasets import load_eval_dataset
    from sembridge_jax.evaluation.encode import CorpusEncoder
    from sembridge_jax.evaluation.evaluator import EvalSettings, evaluate_encoder
    row = evaluate_encoder(CorpusEncoder.from_pretrained(folder), load_eval_dataset(beir_dir), EvalSettings(), "name")
"""
