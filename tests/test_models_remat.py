"""`model.remat_policy` really rematerialises: the compiled train step needs less scratch memory the more
the policy recomputes (none > dots_with_no_batch_dims_saveable > full), and every policy computes the
same step.

XLA's `memory_analysis()` of the compiled step is deterministic, so this is not a timed test. The
encoder is small but activation-dominated (many tokens, several layers, a small vocabulary)."""
import dataclasses

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from sembridge_jax.models import EncoderConfig, build_model
from sembridge_jax.models.config import REMAT_POLICIES
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


def compiled_step(policy: str, pooling: str = "max", chunk: int = 0):
    """(compiled train step, initial state, batch) for CONFIG with `policy`."""
    config = dataclasses.replace(CONFIG, remat_policy=policy, splade_pooling=pooling, splade_chunk_size=chunk)
    layout, params = split_model(build_model(config, nnx.Rngs(0)))
    tx = optax.sgd(0.1)
    objective = trainer.splade_objective(losses.LossSettings(lambda_q=1e-3, lambda_d=1e-3))
    mesh = sharding.make_mesh({"data": 1}, jax.devices()[:1])
    step = trainer.build_sharded_step(layout, tx, objective, mesh, [])
    batch = step.put_batch(host_batch())
    compiled = step.step.lower(step.abstract_state, batch).compile()
    return compiled, trainer.init_state(params, tx, step.state_sharding), batch


@pytest.fixture(scope="module")
def steps():
    return {p: compiled_step(p) for p in REMAT_POLICIES}


@pytest.mark.slow  # compiles a train step per policy
def test_policies_trade_scratch_memory_for_recomputation(steps):
    temp = {p: exe.memory_analysis().temp_size_in_bytes for p, (exe, _, _) in steps.items()}
    print("train step scratch by remat_policy:", temp)
    # Without layer remat every layer's activations live until the backward pass; "full" keeps one
    # layer's, "dots_with_no_batch_dims_saveable" also each layer's weight-matmul outputs.
    assert temp["full"] < 0.6 * temp["none"], temp
    assert temp["full"] < temp["dots_with_no_batch_dims_saveable"] < temp["none"], temp
    assert temp["head"] == temp["none"]  # SPLADE-max never rematerialises its head (models/heads.py)


@pytest.mark.slow  # compiles a train step per policy
def test_every_policy_computes_the_same_step(steps):
    plain_exe, plain_state, batch = steps["none"]
    new_plain, m_plain = plain_exe(plain_state, batch)
    for policy in REMAT_POLICIES[1:]:
        exe, state, _ = steps[policy]
        new, m = exe(state, batch)
        np.testing.assert_allclose(float(m["loss"]), float(m_plain["loss"]), rtol=1e-5, err_msg=policy)
        np.testing.assert_allclose(float(m["grad_norm"]), float(m_plain["grad_norm"]), rtol=1e-4, err_msg=policy)
        for key, value in new_plain["params"].items():
            np.testing.assert_allclose(np.asarray(new["params"][key]), np.asarray(value), atol=1e-5,
                                       err_msg=f"{policy} {key}")


@pytest.mark.slow  # compiles a train step per policy
def test_head_policy_rematerialises_sum_pooling_chunks():
    (none, _, _), (head, _, _) = (compiled_step(p, pooling="sum", chunk=8) for p in ("none", "head"))
    assert head.memory_analysis().temp_size_in_bytes < none.memory_analysis().temp_size_in_bytes


def test_legacy_remat_flag_maps_to_a_policy():
    fields = {k: v for k, v in dataclasses.asdict(CONFIG).items() if k != "remat_policy"}
    assert EncoderConfig.from_dict({**fields, "remat": True}).remat_policy == "full"
    assert EncoderConfig.from_dict({**fields, "remat": False}).remat_policy == "head"
    with pytest.raises(ValueError, match="remat_policy must be one of"):
        EncoderConfig(remat_policy="layers")
