"""Flax NNX masked-LM encoders (BERT, DistilBERT, RoBERTa/XLM-R) with SPLADE and dense pooling.

    from flax import nnx
    from sembridge_jax.models import EncoderConfig, build_model
    model = build_model(EncoderConfig(vocab_size=1000, hidden_size=32, num_layers=2, num_heads=2,
                                      intermediate_size=64), nnx.Rngs(0))
    w = model.splade(input_ids, attention_mask)          # [B, V] float32

Sharding: see models/layers.py for getting the logical PartitionSpecs of a model's state.
Vocabulary rows: see models/vocab.py.
"""
from sembridge_jax.models.bert import BertEncoder
from sembridge_jax.models.build import ENCODERS, build_model, model_from_params
from sembridge_jax.models.config import EncoderConfig
from sembridge_jax.models.distilbert import DistilBertEncoder
from sembridge_jax.models.encoder import MaskedLMEncoder
from sembridge_jax.models.roberta import RobertaEncoder
from sembridge_jax.models.vocab import replace_vocab, vocab_params

__all__ = [
    "ENCODERS", "BertEncoder", "DistilBertEncoder", "EncoderConfig", "MaskedLMEncoder", "RobertaEncoder",
    "build_model", "model_from_params", "replace_vocab", "vocab_params",
]
