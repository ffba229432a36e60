"""Export a model to a Hugging Face + sentence-transformers SparseEncoder folder (`export_to_hf`, CLI)."""
from sembridge_jax.export.writer import export_to_hf

__all__ = ["export_to_hf"]
