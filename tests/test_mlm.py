"""Masked-LM stage: BERT's masking rule, and the loss against PyTorch `BertForMaskedLM` (1e-4)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from sembridge_jax.hf.load import load_model
from sembridge_jax.models.state import merge_model, split_model
from sembridge_jax.training.mlm import IGNORE, mask_tokens, max_predictions, mlm_loss
from tests.tiny_models import VOCAB, make_hf_folder

PAD, CLS, SEP, MASK = 0, 1, 2, 4  # tests/tiny_models.py tokenizer ids for BERT


def _batch(rows: int, length: int, seed: int):
    """[CLS] random words [SEP] [PAD]..., random lengths (one row at full length), token types 0/1."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, VOCAB, size=(rows, length))
    lengths = rng.integers(3, length + 1, size=rows)
    lengths[0] = length
    mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int32)
    ids = np.where(mask == 1, ids, PAD)
    ids[:, 0] = CLS
    ids[np.arange(rows), lengths - 1] = SEP
    special = np.isin(ids, (PAD, CLS, SEP)).astype(np.int32)
    types = np.where(np.arange(length)[None] >= length // 2, 1, 0) * mask
    return ids.astype(np.int32), mask, special, types.astype(np.int32)


def test_mask_tokens_follows_bert_rule():
    ids, mask, special, _ = _batch(512, 64, seed=0)
    ids[5, 1:-1], mask[5], special[5] = PAD, 0, 1  # a row with nothing maskable
    mask[5, :2], special[5, :2] = 1, 1
    masked, labels = mask_tokens(ids, mask, special, vocab_size=VOCAB, mask_token_id=MASK, prob=0.15, rng=7)
    chosen = labels != IGNORE
    maskable = (mask == 1) & (special == 0)
    assert not (chosen & ~maskable).any()  # never special tokens or padding
    n = maskable.sum(1)
    expected = np.where(n > 0, np.minimum(max_predictions(64, 0.15), np.maximum(1, np.rint(0.15 * n))), 0)
    np.testing.assert_array_equal(chosen.sum(1), expected)
    assert chosen[5].sum() == 0
    np.testing.assert_array_equal(labels[chosen], ids[chosen])
    np.testing.assert_array_equal(masked[~chosen], ids[~chosen])
    # 80 / 10 / 10: at chosen positions, the mask token / another id / the same id.
    total = chosen.sum()
    to_mask = (masked[chosen] == MASK).mean()
    kept = (masked[chosen] == ids[chosen]).mean()
    assert total > 2000 and abs(to_mask - 0.8) < 0.03 and abs(kept - 0.1) < 0.02
    assert abs((1 - to_mask - kept) - 0.1) < 0.02  # random ids (a draw of the original id counts as kept)
    assert masked.dtype == labels.dtype == np.int32


def test_mask_tokens_is_deterministic():
    ids, mask, special, _ = _batch(16, 32, seed=1)
    kw = dict(vocab_size=VOCAB, mask_token_id=MASK)
    a = mask_tokens(ids, mask, special, rng=3, **kw)
    b = mask_tokens(ids, mask, special, rng=np.random.default_rng(3), **kw)
    c = mask_tokens(ids, mask, special, rng=4, **kw)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[1], c[1])
    capped = mask_tokens(ids, mask, special, rng=3, max_predictions_per_row=2, **kw)[1]
    assert ((capped != IGNORE).sum(1) <= 2).all()
    with pytest.raises(ValueError, match="prob"):
        mask_tokens(ids, mask, special, prob=0.0, rng=0, **kw)


def _pair(tmp_path_factory, tie: bool):
    folder = tmp_path_factory.mktemp("bert")
    return make_hf_folder(folder, "bert", tie=tie, seed=11), load_model(folder)


@pytest.fixture(scope="module", params=[True, False], ids=["tied", "untied"])
def models(request, tmp_path_factory):
    return _pair(tmp_path_factory, request.param)


@pytest.fixture(scope="module")
def tied(tmp_path_factory):
    return _pair(tmp_path_factory, True)


def _torch_loss(tm, masked, mask, types, labels) -> float:
    with torch.no_grad():
        out = tm(**{k: torch.tensor(v, dtype=torch.long) for k, v in dict(
            input_ids=masked, attention_mask=mask, token_type_ids=types, labels=labels).items()})
    return float(out.loss)


def _full_logits_loss(ours, masked, mask, types, labels) -> float:
    """Reference: cross-entropy from the full [B, L, V] logits, in numpy float64."""
    logits = ours.mlm_logits(jnp.asarray(masked), jnp.asarray(mask), jnp.asarray(types))
    logits = np.asarray(logits, np.float64)
    rows, cols = np.nonzero(labels != IGNORE)
    z = logits[rows, cols]
    log_z = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1)
    return float(np.mean(log_z - z[np.arange(len(rows)), labels[rows, cols]]))


def test_mlm_loss_matches_bert_for_masked_lm(models):
    tm, ours = models
    ids, mask, special, types = _batch(6, 24, seed=2)
    k = max_predictions(24, 0.15)
    masked, labels = mask_tokens(ids, mask, special, vocab_size=VOCAB, mask_token_id=MASK, rng=0)
    expected = _torch_loss(tm, masked, mask, types, labels)
    args = (jnp.asarray(masked), jnp.asarray(mask), jnp.asarray(labels), jnp.asarray(types))
    loss_fn = nnx.jit(mlm_loss, static_argnames="max_predictions_per_row")
    loss, metrics = loss_fn(ours, *args, max_predictions_per_row=k)
    assert float(metrics["mlm_tokens"]) == (labels != IGNORE).sum()
    np.testing.assert_allclose(float(loss), expected, rtol=1e-4, atol=1e-4)
    assert expected > 1.0  # random weights: a loss far from 0, so the check has teeth
    # The gather over K positions equals gathering every position and the full-logits cross-entropy.
    all_positions, _ = loss_fn(ours, *args)
    np.testing.assert_allclose(float(all_positions), float(loss), rtol=1e-6)
    np.testing.assert_allclose(float(loss), _full_logits_loss(ours, masked, mask, types, labels), rtol=1e-5)


def test_mlm_loss_gradients(tied):
    tm, ours = tied
    ids, mask, special, types = _batch(4, 16, seed=3)
    masked, labels = mask_tokens(ids, mask, special, vocab_size=VOCAB, mask_token_id=MASK, rng=1)
    layout, params = split_model(ours)
    k = max_predictions(16, 0.15)

    @jax.jit
    def step(p, labels):
        def loss_fn(p):
            return mlm_loss(merge_model(layout, p), masked, mask, labels, types, max_predictions_per_row=k)

        return jax.value_and_grad(loss_fn, has_aux=True)(p)

    (loss, metrics), grads = step(params, labels)
    expected = _torch_loss(tm, masked, mask, types, labels)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-4, atol=1e-4)
    assert 0.0 <= float(metrics["mlm_accuracy"]) <= 1.0
    assert all(np.isfinite(np.asarray(g)).all() for g in grads.values())
    assert np.abs(np.asarray(grads["embeddings.word"])).max() > 0
    # No predicted position: loss 0 and zero gradients, not NaN.
    (loss, _), grads = step(params, np.full_like(labels, IGNORE))
    assert float(loss) == 0.0 and all(not np.asarray(g).any() for g in grads.values())
