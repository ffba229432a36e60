"""DistilBERT (DistilBertForMaskedLM): no token types (type_vocab_size 0), vocab_transform uses `activation`.

Its `vocab_transform`, `vocab_layer_norm`, `vocab_projector` map to our mlm/transform, mlm/norm and
the vocabulary projection (see hf/params.py).
"""
from sembridge_jax.models.encoder import MaskedLMEncoder


class DistilBertEncoder(MaskedLMEncoder):
    """DistilBERT: the shared encoder; token_type_ids are ignored (the config has no token types)."""
