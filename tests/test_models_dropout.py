"""Training-mode dropout (`dropout_key`, `train.dropout`) against PyTorch/transformers in train mode.

The masks our forward pass draws are recorded and handed, in call order, to torch's dropout calls: the
outputs then agree only if both apply dropout at the same places, with the same rates and scaling."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from transformers import AutoModelForMaskedLM

from sembridge_jax.hf.load import load_model
from sembridge_jax.models import encoder, layers
from sembridge_jax.training import losses, trainer
from tests.test_models_parity import _batch
from tests.tiny_models import make_hf_folder


def _recording(masks):
    """`layers.dropout` that also keeps the mask of every call that drops something."""
    plain = layers.dropout

    def record(x, rate, key):
        out = plain(x, rate, key)
        if key is not None and rate > 0:
            masks.append((np.asarray(out) != 0, rate))
        return out

    return record


@pytest.mark.parametrize("model_type", ["bert", "distilbert", "roberta"])
def test_train_mode_forward_matches_pytorch_with_the_same_masks(tmp_path, monkeypatch, model_type):
    make_hf_folder(tmp_path, model_type, seed=4)
    ours = load_model(tmp_path)
    assert ours.config.hidden_dropout == 0.1 and ours.config.attention_dropout == 0.1
    with_types = model_type != "distilbert"
    ids, mask, types = _batch(ours.config.pad_token_id, with_types, seed=3)
    masks = []
    monkeypatch.setattr(layers, "dropout", _recording(masks))
    monkeypatch.setattr(encoder, "dropout", layers.dropout)
    h = ours.hidden_states(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(types) if with_types else None,
                           dropout_key=jax.random.key(7))
    W, b = ours.vocab_projection()
    got = np.asarray(h @ W.T + b)
    # embeddings + per layer: probabilities, attention output (not in DistilBERT), FFN output
    per_layer = 2 if model_type == "distilbert" else 3
    assert len(masks) == 1 + per_layer * ours.config.num_layers
    assert 0.03 < 1 - np.mean(masks[0][0]) < 0.2  # about 10 % of the embedding outputs dropped

    tm = AutoModelForMaskedLM.from_pretrained(tmp_path, attn_implementation="eager").train()
    queue = list(masks)

    def replay(x, p=0.5, training=True, inplace=False):
        if not training or p == 0:
            return x
        keep, rate = queue.pop(0)
        assert rate == pytest.approx(p)
        return x * torch.from_numpy(keep.reshape(x.shape).astype(np.float32)) / (1 - p)

    monkeypatch.setattr(torch.nn.functional, "dropout", replay)
    kw = dict(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
    if with_types:
        kw["token_type_ids"] = torch.tensor(types)
    with torch.no_grad():
        ref = tm(**kw).logits.numpy()
    assert not queue  # torch dropped at exactly as many places
    valid = mask.astype(bool)
    np.testing.assert_allclose(got[valid], ref[valid], atol=1e-4, rtol=1e-4)
    plain = np.asarray(ours.mlm_logits(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(types) if with_types else None))
    assert np.abs(plain - got)[valid].max() > 1e-2  # the masks did change the output


def test_no_key_or_zero_rate_is_the_plain_forward_and_a_key_is_reproducible(tmp_path):
    make_hf_folder(tmp_path, "bert", seed=5)
    ours = load_model(tmp_path)
    ids, mask, types = (jnp.asarray(a) for a in _batch(0, True, seed=1))
    plain = np.asarray(ours.splade(ids, mask, types))
    key = jax.random.key(3)
    dropped = np.asarray(ours.splade(ids, mask, types, dropout_key=key))
    np.testing.assert_array_equal(dropped, np.asarray(ours.splade(ids, mask, types, dropout_key=key)))
    assert not np.allclose(dropped, plain, atol=1e-3)
    assert not np.allclose(dropped, np.asarray(ours.splade(ids, mask, types, dropout_key=jax.random.key(4))),
                           atol=1e-3)
    zero = load_model(tmp_path, hidden_dropout=0.0, attention_dropout=0.0)
    np.testing.assert_array_equal(np.asarray(zero.splade(ids, mask, types, dropout_key=key)), plain)


def test_dropout_function_against_numpy():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(64, 256)).astype(np.float32))
    assert layers.dropout(x, 0.1, None) is x
    out = np.asarray(layers.dropout(x, 0.25, jax.random.key(0)))
    kept = out != 0
    assert abs(1 - kept.mean() - 0.25) < 0.01
    np.testing.assert_allclose(out[kept], np.asarray(x)[kept] / 0.75, rtol=1e-6)


def test_retrieval_objective_draws_masks_from_seed_and_step(tmp_path):
    """`train.dropout`: the loss at a step is a function of (seed, step), so a resumed run sees the same masks;
    another step draws others; no seed is the deterministic loss."""
    make_hf_folder(tmp_path, "bert", seed=6)
    model = load_model(tmp_path)
    rng = np.random.default_rng(0)
    batch = {"query_input_ids": jnp.asarray(rng.integers(5, 1000, (4, 6))),
             "query_attention_mask": jnp.ones((4, 6), jnp.int32),
             "doc_input_ids": jnp.asarray(rng.integers(5, 1000, (4, 1, 9))),
             "doc_attention_mask": jnp.ones((4, 1, 9), jnp.int32)}
    settings = losses.LossSettings()
    loss = lambda seed, step: float(trainer.splade_objective(settings, dropout_seed=seed)(model, batch, step)[0])
    assert loss(0, 5) == loss(0, 5)
    assert loss(0, 5) != loss(0, 6)
    assert loss(None, 5) == loss(None, 6) != loss(0, 5)
