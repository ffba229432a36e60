"""Optimiser pieces: LR schedule, frozen-parameter masks, gradient accumulation, the NaN check.

A 3-parameter SPLADE-shaped module keeps compilation cheap; the real encoder runs in the other
tests/test_train_*.py files."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from sembridge_jax.models.state import merge_model, split_model
from sembridge_jax.training import losses, optim, sharding, trainer


class TinySplade(nnx.Module):
    """emb [V, d] (vocabulary rows, tied output), w [d, d], b [V]: log1p(relu) max-pooled logits."""

    def __init__(self, vocab=16, dim=4, seed=0):
        k1, k2 = jax.random.split(jax.random.key(seed))
        self.emb = nnx.Param(jax.random.normal(k1, (vocab, dim)), out_sharding=("vocab", "embed"), eager_sharding=False)
        self.w = nnx.Param(jax.random.normal(k2, (dim, dim)), out_sharding=("embed", "mlp"), eager_sharding=False)
        self.b = nnx.Param(jnp.full((vocab,), 0.1), out_sharding=("vocab",), eager_sharding=False)

    def splade(self, ids, mask, token_type_ids=None):
        h = jnp.tanh(self.emb[...][ids] @ self.w[...])
        w = jnp.log1p(jax.nn.relu(h @ self.emb[...].T + self.b[...])) * mask[..., None]
        return w.max(axis=1)


def train_cfg(**kw):
    base = dict(learning_rate=0.1, num_steps=10, warmup_steps=0, decay="constant", weight_decay=0.0,
                clip_norm=0.0, trainable="all")
    return ml_collections.ConfigDict({**base, **kw})


def batch(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return {"query_input_ids": rng.integers(0, 16, (n, 3)).astype(np.int32),
            "query_attention_mask": np.ones((n, 3), np.int32),
            "doc_input_ids": rng.integers(0, 16, (n, 1, 5)).astype(np.int32),
            "doc_attention_mask": np.ones((n, 1, 5), np.int32)}


OBJECTIVE = trainer.splade_objective(losses.LossSettings(lambda_q=1e-2, lambda_d=1e-2))


def one_step(model, tx, host_batch, accum=1):
    layout, params = split_model(model)
    mesh = sharding.make_mesh({"data": 1}, jax.devices()[:1])
    step = trainer.build_sharded_step(layout, tx, OBJECTIVE, mesh, [], grad_accum_steps=accum)
    state = trainer.init_state(params, tx, step.state_sharding)
    new, metrics = step.step(state, step.put_batch(trainer.micro_batches(host_batch, accum)))
    return params, new, metrics


def test_schedule_warmup_then_linear_or_cosine_decay():
    lin = optim.learning_rate_schedule(1.0, num_steps=10, warmup_steps=2, decay="linear")
    np.testing.assert_allclose([float(lin(s)) for s in (0, 1, 2, 6, 10)], [0.0, 0.5, 1.0, 0.5, 0.0], atol=1e-6)
    cos = optim.learning_rate_schedule(1.0, num_steps=10, warmup_steps=0, decay="cosine")
    np.testing.assert_allclose([float(cos(s)) for s in (0, 5, 10)], [1.0, 0.5, 0.0], atol=1e-6)
    with pytest.raises(ValueError, match="train.decay"):
        optim.learning_rate_schedule(1.0, 10, 0, "step")


def test_vocab_only_training_freezes_the_rest():
    model = TinySplade()
    layout, _ = split_model(model)
    assert optim.trainable_mask(layout.logical_axes, "vocab") == {"b": True, "emb": True, "w": False}
    tx, _ = optim.make_optimizer(train_cfg(trainable="vocab", clip_norm=1.0), layout.shapes, layout.logical_axes)
    before, state, _ = one_step(model, tx, batch())
    after = state["params"]
    np.testing.assert_array_equal(np.asarray(after["w"]), np.asarray(before["w"]))
    assert np.abs(np.asarray(after["emb"]) - np.asarray(before["emb"])).max() > 1e-3
    # frozen parameters carry no Adam moments
    mu = optax.tree_utils.tree_get(state["opt"], "mu")
    assert isinstance(mu["w"], optax.MaskedNode) and mu["emb"].shape == (16, 4)
    with pytest.raises(ValueError, match="train.trainable"):
        optim.trainable_mask(layout.logical_axes, "encoder")


@pytest.mark.parametrize("model_type,tie", [("bert", True), ("bert", False), ("distilbert", True),
                                            ("roberta", True)])
def test_weight_decay_follows_the_hf_trainer_parameter_groups(model_type, tie):
    """Our decay mask equals the decay group that transformers' own Trainer builds for the same
    PyTorch *ForMaskedLM (`Trainer.get_decay_parameter_names`, the recipe sentence-transformers'
    trainers inherit): biases of any rank (our [heads, head_dim] q/k/v biases, the MLM output bias)
    and LayerNorm are not decayed; embeddings and the untied decoder are."""
    import transformers

    from sembridge_jax.hf.params import PREFIX, param_table
    from sembridge_jax.models import EncoderConfig, build_model
    from tests.tiny_models import tiny_config

    hf_config = tiny_config(model_type, tie)
    torch_model = transformers.AutoModelForMaskedLM.from_config(hf_config)
    hf_decay = set(transformers.Trainer.get_decay_parameter_names(None, torch_model))
    config = EncoderConfig.from_hf(hf_config.to_dict())
    layout, _ = split_model(build_model(config, nnx.Rngs(0)))
    mask = optim.weight_decay_mask(layout.shapes)
    hf_name = {".".join(map(str, e.path)): (PREFIX[config.arch] if e.backbone else "") + e.names[0]
               for e in param_table(config)}
    assert set(hf_name) == set(mask)
    assert all(hf_name[k] in dict(torch_model.named_parameters(remove_duplicate=False)) for k in mask)
    assert {k: hf_name[k] in hf_decay for k in mask} == mask
    assert not mask["layers.0.attention.query_bias"] and layout.shapes["layers.0.attention.query_bias"] == (4, 8)
    assert mask["embeddings.word"] and not mask["mlm.bias"] and not mask["embeddings.norm.scale"]


def test_gradient_accumulation_averages_micro_batch_gradients():
    """A = 2 micro-batches of 2: the update is the mean of the two micro-batch gradients (each with
    its own in-batch negatives), computed here directly with jax.grad."""
    model, host = TinySplade(), batch(4)
    tx = optax.sgd(1.0)
    before, state, metrics = one_step(model, tx, host, accum=2)
    layout, _ = split_model(model)

    def loss(params, b):
        return OBJECTIVE(merge_model(layout, params), b, 0)[0]

    halves = [{k: jnp.asarray(v[i * 2:(i + 1) * 2]) for k, v in host.items()} for i in range(2)]
    grads = [jax.grad(loss)(before, h) for h in halves]
    for k in before:
        expected = np.asarray(before[k]) - 0.5 * (np.asarray(grads[0][k]) + np.asarray(grads[1][k]))
        np.testing.assert_allclose(np.asarray(state["params"][k]), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(metrics["loss"]), np.mean([float(loss(before, h)) for h in halves]), rtol=1e-5)
    with pytest.raises(ValueError, match="grad_accum_steps"):
        trainer.micro_batches(batch(3), 2)


def test_check_finite_names_the_step():
    trainer.check_finite(3, {"loss": 1.0, "grad_norm": 2.0})
    with pytest.raises(FloatingPointError, match="step 7"):
        trainer.check_finite(7, {"loss": float("nan"), "grad_norm": 1.0})
    with pytest.raises(FloatingPointError, match="grad_norm"):
        trainer.check_finite(7, {"loss": 1.0, "grad_norm": float("inf")})


def test_bfloat16_compute_trains_with_float32_parameters(tmp_path):
    """model.dtype = bfloat16 inside the real sharded train step: activations in bf16, parameters
    and optimiser state stay float32, the loss tracks the float32 run and goes down."""
    import dataclasses
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from train_tiny import tiny_config, tiny_dataset, tiny_model, tiny_tokenizer

    from sembridge_jax.models import build_model
    from sembridge_jax.training.batches import TrainData
    from sembridge_jax.training.monitor import read_metrics

    tokenizer = tiny_tokenizer(tmp_path / "tok")
    data_path = tiny_dataset(tmp_path / "train.jsonl")
    runs = {}
    for dtype in ("float32", "bfloat16"):
        config = tiny_config(tmp_path / dtype, data_path, steps=8)
        f32 = tiny_model(len(tokenizer))
        model = build_model(dataclasses.replace(f32.config, dtype=dtype), nnx.Rngs(0))
        nnx.update(model, nnx.state(f32, nnx.Param))  # same initial float32 weights
        result = trainer.fit(config, model, tmp_path / dtype, TrainData(config, tokenizer, process_index=0,
                                                                          process_count=1))
        losses_ = [r["loss"] for r in read_metrics(tmp_path / dtype / "metrics.jsonl")]
        runs[dtype] = (losses_, result.model)
    (f32_losses, _), (bf16_losses, bf16_model) = runs["float32"], runs["bfloat16"]
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(nnx.state(bf16_model, nnx.Param)))
    assert np.isfinite(bf16_losses).all() and bf16_losses[-1] < bf16_losses[0]
    np.testing.assert_allclose(bf16_losses, f32_losses, rtol=3e-2)


def test_lr_scales_scale_each_group_and_clip_jointly():
    import jax.numpy as jnp

    from sembridge_jax.training.optim import lr_scale, make_optimizer

    assert lr_scale("layers.0.ffn_up.kernel", (("layers", 0.25),)) == 0.25
    assert lr_scale("layersx.w", (("layers", 0.25),)) == 1.0
    shapes = {"connector.w": (3,), "layers.0.w": (3,)}
    cfg = train_cfg(weight_decay=0.0, clip_norm=0.0, warmup_steps=0, decay="constant", lr_scales=(("layers", 0.25),))
    tx, _ = make_optimizer(cfg, shapes, {k: None for k in shapes})
    params = {k: jnp.ones(s) for k, s in shapes.items()}
    grads = {k: jnp.array([1.0, -2.0, 3.0]) for k in shapes}
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(np.asarray(updates["layers.0.w"]), 0.25 * np.asarray(updates["connector.w"]), rtol=1e-6)
    assert np.abs(np.asarray(updates["connector.w"])).min() > 0
