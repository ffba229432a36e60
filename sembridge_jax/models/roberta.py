"""RoBERTa / XLM-RoBERTa (RobertaForMaskedLM, XLMRobertaForMaskedLM): padding-offset position ids.

Positions count only non-pad tokens and start at padding_idx + 1 (`config.position_offset`); pad
tokens get position padding_idx. The lm_head applies exact GELU whatever `hidden_act` says.
"""
import jax
import jax.numpy as jnp

from sembridge_jax.models.encoder import MaskedLMEncoder


class RobertaEncoder(MaskedLMEncoder):
    mlm_activation = "gelu"

    def position_ids(self, input_ids, attention_mask) -> jax.Array:
        """Like transformers' create_position_ids_from_input_ids: pads are found by id, not by mask."""
        real = (input_ids != self.config.pad_token_id).astype(jnp.int32)
        offset = self.config.position_offset - 1
        return jnp.where(real == 1, jnp.cumsum(real, axis=1) + offset, self.config.pad_token_id)
