"""BERT (BertForMaskedLM / BertModel): absolute positions 0..L-1, token types, MLM transform with hidden_act."""
from sembridge_jax.models.encoder import MaskedLMEncoder


class BertEncoder(MaskedLMEncoder):
    """BERT: the shared encoder as is."""
