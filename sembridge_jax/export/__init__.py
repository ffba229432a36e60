"""Export a model to a Hugging Face + sentence-transformers SparseEncoder folder (`export_to_hf`, CLI), and
rebuild a trained model from a training workdir (`load_model_from_checkpoint`)."""
from sembridge_jax.export.checkpoint import load_model_from_checkpoint
from sembridge_jax.export.writer import export_to_hf

__all__ = ["export_to_hf", "load_model_from_checkpoint"]
