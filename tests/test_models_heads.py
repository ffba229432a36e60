"""SPLADE head: chunked == unchunked == PyTorch (values and gradients), top-k pruning, dense pooling, memory."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from sembridge_jax.models.heads import dense_pool, keep_top_k, splade_pool


def _inputs(seed=0, B=3, L=13, d=8, V=50):
    k = jax.random.split(jax.random.PRNGKey(seed), 3)
    h = jax.random.normal(k[0], (B, L, d))
    W = jax.random.normal(k[1], (V, d)) * 0.5
    b = jax.random.normal(k[2], (V,)) * 0.5
    mask = jnp.ones((B, L), jnp.int32).at[1, 9:].set(0).at[2, 4:].set(0)
    return h, mask, W, b


def _torch_reference(h, mask, W, b, pooling):
    """Independent PyTorch SPLADE: log1p(relu(logits)) masked, then max/sum over tokens."""
    logits = torch.tensor(np.asarray(h)) @ torch.tensor(np.asarray(W)).T + torch.tensor(np.asarray(b))
    act = torch.log1p(torch.relu(logits)) * torch.tensor(np.asarray(mask))[..., None]
    return (act.amax(1) if pooling == "max" else act.sum(1)).numpy()


@pytest.mark.parametrize("pooling", ["max", "sum"])
@pytest.mark.parametrize("chunk", [0, 1, 4, 5, 13, 64])
def test_chunked_equals_unchunked_and_torch(pooling, chunk):
    h, mask, W, b = _inputs()
    ref = _torch_reference(h, mask, W, b, pooling)
    full = np.asarray(splade_pool(h, mask, W, b, pooling, 0))
    got = np.asarray(splade_pool(h, mask, W, b, pooling, chunk))
    np.testing.assert_allclose(full, ref, atol=1e-5)
    np.testing.assert_allclose(got, full, atol=1e-5)


@pytest.mark.parametrize("pooling", ["max", "sum"])
def test_gradients_through_chunked_head_equal_unchunked(pooling):
    h, mask, W, b = _inputs(seed=1)
    probe = jax.random.normal(jax.random.PRNGKey(9), (h.shape[0], W.shape[0]))

    def loss(h, W, b, chunk):
        return (splade_pool(h, mask, W, b, pooling, chunk) * probe).sum()

    full = jax.grad(loss, argnums=(0, 1, 2))(h, W, b, 0)
    chunked = jax.jit(jax.grad(loss, argnums=(0, 1, 2)), static_argnums=3)(h, W, b, 4)
    for g_full, g_chunk in zip(full, chunked, strict=False):
        assert np.abs(np.asarray(g_full)).max() > 0
        np.testing.assert_allclose(np.asarray(g_chunk), np.asarray(g_full), atol=1e-5)


def test_top_k_keeps_exactly_the_k_largest():
    w = jax.random.uniform(jax.random.PRNGKey(3), (4, 100))
    pruned = np.asarray(keep_top_k(w, 7))
    w = np.asarray(w)
    for row, kept in zip(w, pruned, strict=False):
        nz = np.flatnonzero(kept)
        assert len(nz) == 7
        assert set(nz) == set(np.argsort(-row)[:7])
        np.testing.assert_array_equal(kept[nz], row[nz])
    h, mask, W, b = _inputs()
    via_head = np.asarray(splade_pool(h, mask, W, b, "max", 4, top_k=5))
    assert ((via_head > 0).sum(1) <= 5).all()


def test_dense_pool_mean_cls_normalised():
    x = jax.random.normal(jax.random.PRNGKey(4), (2, 5, 6))
    mask = jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    mean = np.asarray(dense_pool(x, mask, "mean"))
    ref = np.asarray(x[0, :3].mean(0))
    np.testing.assert_allclose(mean[0], ref / np.linalg.norm(ref), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(mean, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(dense_pool(x, mask, "cls", normalize=False)), np.asarray(x[:, 0]))


def test_chunked_head_compiles_to_less_memory():
    """Forward + backward of the chunked head holds a few [B, chunk, V] blocks, never [B, L, V]; the
    unchunked one holds at least the [B, L, V] float32 logits."""
    B, L, d, V, chunk = 4, 64, 16, 2048, 8
    h, W, b = jnp.zeros((B, L, d)), jnp.zeros((V, d)), jnp.zeros((V,))
    mask = jnp.ones((B, L))

    def temp_bytes(pooling, chunk):
        fn = jax.jit(jax.grad(lambda h, W: splade_pool(h, mask, W, b, pooling, chunk).sum(), argnums=(0, 1)))
        return fn.lower(h, W).compile().memory_analysis().temp_size_in_bytes

    for pooling in ("max", "sum"):
        full, chunked = temp_bytes(pooling, 0), temp_bytes(pooling, chunk)
        assert full >= B * L * V * 4, pooling
        assert chunked < 5 * B * chunk * V * 4, (pooling, chunked)  # a few chunk blocks, not [B, L, V]
        assert chunked < full / 3, (pooling, chunked, full)


@pytest.mark.parametrize("chunk", [0, 4])
def test_max_head_gradient_matches_torch_autograd(chunk):
    """The custom backward pass of SPLADE-max (gradient through the saved argmax positions) against
    PyTorch autograd of the plain formula, chunked and not, with padding and a bias."""
    h, mask, W, b = _inputs(seed=2)
    probe = np.asarray(jax.random.normal(jax.random.PRNGKey(8), (h.shape[0], W.shape[0])))
    th, tW, tb = (torch.tensor(np.asarray(x), requires_grad=True) for x in (h, W, b))
    act = torch.log1p(torch.relu(th @ tW.T + tb)) * torch.tensor(np.asarray(mask))[..., None]
    (act.amax(1) * torch.tensor(probe)).sum().backward()
    grads = jax.jit(jax.grad(lambda h, W, b: (splade_pool(h, mask, W, b, "max", chunk) * probe).sum(),
                             argnums=(0, 1, 2)))(h, W, b)
    for got, want in zip(grads, (th.grad, tW.grad, tb.grad), strict=True):
        np.testing.assert_allclose(np.asarray(got), want.numpy(), atol=1e-5)


def test_max_head_of_a_fully_masked_row_is_zero_with_zero_gradient():
    h, mask, W, b = _inputs(seed=3)
    mask = mask.at[0].set(0)
    w, grads = jax.value_and_grad(lambda h, W, b: splade_pool(h, mask, W, b, "max", 4)[0].sum(),
                                  argnums=(0, 1, 2))(h, W, b)
    assert float(w) == 0.0
    assert all(np.isfinite(np.asarray(g)).all() and not np.asarray(g).any() for g in grads)
