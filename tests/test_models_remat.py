"""`config.remat` really rematerialises: the compiled train step needs much less scratch memory and
computes the same step as without remat.

XLA's `memory_analysis()` of the compiled step is deterministic, so this is not a timed test. The
encoder is small but activation-dominated (many tokens, several layers, a small vocabulary)."""
import dataclasses

import jax
import numpy as np
import optax
from flax import nnx

from sembridge_jax.models import EncoderConfig, build_model
from sembridge_jax.models.state import split_model
from sembridge_jax.training import losses, sharding, trainer

CONFIG = EncoderConfig(vocab_size=256, hidden_size=32, num_layers=4, num_heads=2, intermediate_size=128,
                       max_position_embeddings=64)
B, LQ, LD = 8, 16, 64


def host_batch():
    rng = np.random.default_rng(0)
    return {"query_input_ids": rng.integers(1, 256, (B, LQ)).astype(np.int32),
            "query_attention_mask": np.ones((B, LQ), np.int32),
            "doc_input_ids": rng.integers(1, 256, (B, 1, LD)).astype(np.int32),
            "doc_attention_mask": np.ones((B, 1, LD), np.int32)}


def compiled_step(remat: bool):
    """(compiled train step, initial state, batch) for CONFIG with/without remat."""
    model = build_model(dataclasses.replace(CONFIG, remat=remat), nnx.Rngs(0))
    layout, params = split_model(model)
    tx = optax.sgd(0.1)
    objective = trainer.splade_objective(losses.LossSettings(lambda_q=1e-3, lambda_d=1e-3))
    mesh = sharding.make_mesh({"data": 1}, jax.devices()[:1])
    step = trainer.build_sharded_step(layout, tx, objective, mesh, [])
    batch = step.put_batch(host_batch())
    compiled = step.step.lower(step.abstract_state, batch).compile()
    return compiled, trainer.init_state(params, tx, step.state_sharding), batch


def test_remat_shrinks_train_step_scratch_memory_and_keeps_the_step():
    plain_exe, plain_state, batch = compiled_step(remat=False)
    remat_exe, remat_state, _ = compiled_step(remat=True)
    plain_temp = plain_exe.memory_analysis().temp_size_in_bytes
    remat_temp = remat_exe.memory_analysis().temp_size_in_bytes
    # Without remat every layer's activations live until the backward pass; with it, one layer's.
    print(f"train step scratch: {plain_temp} B without remat, {remat_temp} B with")
    assert remat_temp < 0.6 * plain_temp, (remat_temp, plain_temp)

    new_plain, m_plain = plain_exe(plain_state, batch)
    new_remat, m_remat = remat_exe(remat_state, batch)
    np.testing.assert_allclose(float(m_remat["loss"]), float(m_plain["loss"]), rtol=1e-5)
    np.testing.assert_allclose(float(m_remat["grad_norm"]), float(m_plain["grad_norm"]), rtol=1e-4)
    for key, value in new_plain["params"].items():
        np.testing.assert_allclose(np.asarray(new_remat["params"][key]), np.asarray(value), atol=1e-5, err_msg=key)
