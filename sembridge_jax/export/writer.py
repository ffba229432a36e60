"""`export_to_hf(model, tokenizer, out_dir)`: the one writing step every export source ends in."""
from __future__ import annotations

import os

from sembridge_jax.hf.save import save_pretrained
from sembridge_jax.storage import as_path, writable_dir


def export_to_hf(model, tokenizer, out_dir: str | os.PathLike, *, pooling: str | None = None, query_weights=None):
    """Write `model` + `tokenizer` (+ inference-free `query_weights`) as a Hugging Face + SparseEncoder folder at
    `out_dir`, a local path or an object-store URL (gs://..., staged locally and uploaded); returns it."""
    with writable_dir(out_dir) as local:
        save_pretrained(model, tokenizer, local, pooling=pooling, query_weights=query_weights)
    return as_path(out_dir)
