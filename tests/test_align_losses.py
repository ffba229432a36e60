"""Alignment-stage losses against numpy loops and MILCO's own PyTorch expression."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from sembridge_jax.bridge.alignment import Alignment
from sembridge_jax.training.losses import hidden_mse, map_to_target_vocab, sparse_mse


def test_hidden_mse_matches_numpy():
    rng = np.random.default_rng(0)
    B, Ls, Lt, d = 3, 7, 5, 8
    s, t = rng.normal(size=(B, Ls, d)).astype(np.float32), rng.normal(size=(B, Lt, d)).astype(np.float32)
    ms = (np.arange(Ls)[None] < np.array([[7], [3], [1]])).astype(np.int32)
    mt = (np.arange(Lt)[None] < np.array([[2], [5], [4]])).astype(np.int32)
    expected = 0.0
    for b in range(B):
        ps = s[b][ms[b] == 1].mean(0)
        pt = t[b][mt[b] == 1].mean(0)
        expected += ((ps - pt) ** 2).sum()
    expected /= B * d
    got = hidden_mse(jnp.asarray(s), jnp.asarray(ms), jnp.asarray(t), jnp.asarray(mt))
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)
    # The teacher is frozen: no gradient flows into it.
    g_t = jax.grad(lambda t: hidden_mse(jnp.asarray(s), ms, t, mt))(jnp.asarray(t))
    assert not np.asarray(g_t).any()
    with pytest.raises(ValueError, match="hidden size"):
        hidden_mse(jnp.asarray(s), ms, jnp.asarray(t[..., :4]), mt)


def _milco(reps_a, reps_b) -> float:
    """thongnt99/milco milco/model/milco.py `compute_alignment_loss`, verbatim."""
    mask = (reps_a > 0) | (reps_b > 0)
    return float(torch.nn.functional.mse_loss(reps_a[mask], reps_b[mask]))


@pytest.mark.parametrize("signed", [False, True], ids=["splade", "raw_logits"])
def test_sparse_mse_matches_milco(signed):
    rng = np.random.default_rng(1)
    s = rng.normal(size=(4, 50)).astype(np.float32) - 0.8  # mostly inactive, like SPLADE vectors
    t = rng.normal(size=(4, 50)).astype(np.float32) - 0.8
    if not signed:
        s, t = np.maximum(s, 0), np.maximum(t, 0)
    expected = _milco(torch.from_numpy(s), torch.from_numpy(t))
    np.testing.assert_allclose(float(sparse_mse(jnp.asarray(s), jnp.asarray(t))), expected, rtol=1e-5)
    m = (s > 0) | (t > 0)
    np.testing.assert_allclose(float(sparse_mse(s, t)), np.mean((s[m] - t[m]) ** 2), rtol=1e-5)
    assert float(sparse_mse(np.zeros((2, 5)), np.zeros((2, 5)))) == 0.0  # nothing active: 0, not NaN
    g = jax.grad(lambda x: sparse_mse(x, t))(jnp.asarray(s))
    assert np.isfinite(np.asarray(g)).all() and not np.asarray(g)[~m].any()


def test_map_to_target_vocab_matches_a_loop():
    # Target vocabulary of 6: ids 0 and 3 copy source ids 2 and 0; ids 1, 2, 4 are weighted
    # combinations; id 5 has no entries (a "mean" token) and gets 0.
    alignment = Alignment(copy_src=np.array([2, -1, -1, 0, -1, -1]), rows=np.array([1, 1, 2, 4, 4, 4]),
                          cols=np.array([0, 3, 4, 1, 2, 4]), weights=np.array([0.7, 0.3, 1.0, 0.2, 0.5, 0.3]),
                          method="test", source_size=5, mean_ids=np.array([5]))
    rng = np.random.default_rng(2)
    teacher = np.maximum(rng.normal(size=(3, 5)), 0).astype(np.float32)
    expected = np.zeros((3, 6), np.float32)
    for t in range(6):
        if alignment.copy_src[t] >= 0:
            expected[:, t] = teacher[:, alignment.copy_src[t]]
        for r, c, w in zip(alignment.rows, alignment.cols, alignment.weights, strict=True):
            if r == t:
                expected[:, t] += w * teacher[:, c]
    args = (alignment.copy_src, alignment.rows, alignment.cols, alignment.weights, 6)
    np.testing.assert_allclose(np.asarray(map_to_target_vocab(teacher, *args)), expected, rtol=1e-6)
    jitted = jax.jit(lambda x: map_to_target_vocab(x, *args))
    np.testing.assert_allclose(np.asarray(jitted(teacher)), expected, rtol=1e-6)
    # On copies and weighted tokens, the same linear map as the alignment's own combine() (which
    # gives the "mean" token 5 the mean source row, a direction with no teacher signal: 0 here).
    eye = np.eye(5, dtype=np.float32)
    mapped = np.asarray(map_to_target_vocab(eye, *args))
    np.testing.assert_allclose(mapped[:, :5], alignment.combine(eye).T[:, :5], atol=1e-7)
    with pytest.raises(ValueError, match="copy_src"):
        map_to_target_vocab(teacher, alignment.copy_src, alignment.rows, alignment.cols, alignment.weights, 7)
