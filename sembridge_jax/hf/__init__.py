"""Hugging Face import (`load_pretrained`) and export (`save_pretrained`) of our encoders."""
from sembridge_jax.hf.load import load_pretrained
from sembridge_jax.hf.save import save_pretrained

__all__ = ["load_pretrained", "save_pretrained"]
