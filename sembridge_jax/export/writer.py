"""`export_to_hf(model, tokenizer, out_dir)`: the one writing step every export source ends in."""
from __future__ import annotations

from pathlib import Path


def export_to_hf(model, tokenizer, out_dir: str | Path, *, pooling: str | None = None) -> Path:
    """Write `model` + `tokenizer` to `out_dir` as a Hugging Face + SparseEncoder folder; returns it."""
    from sembridge_jax.hf.save import save_pretrained

    return save_pretrained(model, tokenizer, out_dir, pooling=pooling)
