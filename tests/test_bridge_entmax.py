"""Exactness of the blocked top-k entmax against the `entmax` package (the reference)."""
import entmax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from sembridge_jax.bridge.entmax import dense_softmax_combine, entmax_rows, entmax_topk, similarity_entmax

ALPHAS = [1.5, 2.0, 3.0, 4.0]


def _unit(x):
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _reference(q, k, alpha):
    """entmax_bisect on the exact (float64) cosines of the float32 vectors."""
    z = q.astype(np.float64) @ k.astype(np.float64).T
    return entmax.entmax_bisect(torch.from_numpy(z), alpha=alpha, dim=-1, n_iter=100).numpy()


def _dense(rows, cols, w, shape):
    out = np.zeros(shape)
    out[rows, cols] = w
    return out


@pytest.fixture(scope="module")
def random_vectors():
    rng = np.random.default_rng(0)
    return _unit(rng.standard_normal((40, 32))), _unit(rng.standard_normal((3000, 32)))


@pytest.fixture(scope="module")
def real_vectors(kit):
    """Real similarity rows: cosines between splade-tiny-en input embeddings (30522 x 128)."""
    emb = load_file(str(kit / "assets/splade-tiny-en/model.safetensors"))["bert.embeddings.word_embeddings.weight"]
    keys = _unit(emb)
    return keys[[2000, 2154, 3000, 4937, 5310, 7592, 10000, 15000]], keys


@pytest.mark.parametrize("alpha", ALPHAS)
def test_random_rows_match_entmax_bisect(random_vectors, alpha):
    q, k = random_vectors
    r, c, w, stats = similarity_entmax(q, k, alpha, k=(16, 256), block_rows=16, progress=False)
    np.testing.assert_allclose(_dense(r, c, w, (len(q), len(k))), _reference(q, k, alpha), atol=1e-5, rtol=0)
    assert sum(v for key, v in stats.items() if key != "unique_rows") == stats["unique_rows"] == len(q)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_real_rows_match_entmax_bisect(real_vectors, alpha):
    q, k = real_vectors
    r, c, w, _ = similarity_entmax(q, k, alpha, block_rows=8, progress=False)
    np.testing.assert_allclose(_dense(r, c, w, (len(q), len(k))), _reference(q, k, alpha), atol=1e-5, rtol=0)


def test_blocked_equals_unblocked(random_vectors):
    q, k = random_vectors
    z = q.astype(np.float64) @ k.astype(np.float64).T
    with jax.enable_x64(True):
        full = np.asarray(entmax_rows(jnp.asarray(z), 3.0))
    for block, ks in [(7, (4, 64)), (64, (64,)), (5, ())]:
        r, c, w, _ = similarity_entmax(q, k, 3.0, k=ks, block_rows=block, progress=False)
        np.testing.assert_allclose(_dense(r, c, w, z.shape), full, atol=1e-7, rtol=0)
    dup = [3, 0, 3, 7, 0, 3]  # repeated query rows are solved once and expanded back
    r, c, w, stats = similarity_entmax(q[dup], k, 3.0, k=(4, 64), block_rows=7, progress=False)
    assert stats["unique_rows"] == 3 and np.all(np.diff(r) >= 0)
    np.testing.assert_allclose(_dense(r, c, w, (len(dup), len(k))), full[dup], atol=1e-7, rtol=0)


def test_topk_falls_back_when_support_is_large():
    # a row whose support is ~all of 500 near-identical keys: no top-k proof can hold below 500
    rng = np.random.default_rng(1)
    base = _unit(rng.standard_normal((1, 16)))
    keys = _unit(np.concatenate([base + 1e-3 * rng.standard_normal((500, 16)), rng.standard_normal((100, 16))]))
    q = np.concatenate([base, _unit(rng.standard_normal((2, 16)))])
    r, c, w, stats = similarity_entmax(q, keys, 1.5, k=(8, 32), block_rows=4, progress=False)
    assert stats["full"] >= 1
    assert (r == 0).sum() > 32
    np.testing.assert_allclose(_dense(r, c, w, (3, 600)), _reference(q, keys, 1.5), atol=1e-5, rtol=0)
    # the proof itself: top-8 of that row is not exact, but it is for a peaked row
    with jax.enable_x64(True):
        z = jnp.asarray(q.astype(np.float64) @ keys.astype(np.float64).T)
        _, _, exact = entmax_topk(z, 4.0, 8)
        _, _, exact_wide = entmax_topk(z, 1.5, 8)
    assert not bool(exact_wide[0])
    assert bool(exact[1]) and bool(exact[2])


def test_alpha1_is_softmax_and_alpha2_is_sparsemax(random_vectors):
    q, k = random_vectors
    z = (q @ k.T).astype(np.float64)
    with jax.enable_x64(True):
        soft = np.asarray(entmax_rows(jnp.asarray(z), 1.0))
        sparse = np.asarray(entmax_rows(jnp.asarray(z), 2.0))
    np.testing.assert_allclose(soft, torch.softmax(torch.from_numpy(z), -1).numpy(), atol=1e-12)
    np.testing.assert_allclose(sparse, entmax.sparsemax(torch.from_numpy(z), dim=-1).numpy(), atol=1e-9)
    values = np.random.default_rng(2).standard_normal((len(k), 5)).astype(np.float32)
    comb = dense_softmax_combine(q, k, values, block_rows=16)
    np.testing.assert_allclose(comb, soft @ values, atol=1e-5)


def test_rejects_bad_alpha(random_vectors):
    q, k = random_vectors
    with pytest.raises(ValueError, match="alpha"):
        similarity_entmax(q, k, 0.5, progress=False)
    with pytest.raises(ValueError, match="dense"):
        similarity_entmax(q, k, 1.0, progress=False)


SHARDED = r"""
import json, sys
import jax, numpy as np
from sembridge_jax.bridge import entmax as E

rng = np.random.default_rng(2)
unit = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
base = unit(rng.standard_normal((1, 16)))
keys = unit(np.concatenate([base + 1e-3 * rng.standard_normal((500, 16)), rng.standard_normal((700, 16))]))
q = np.concatenate([base, keys[600:620], unit(rng.standard_normal((17, 16)))])  # 38 rows: ragged over 4 devices
devices = jax.devices()
split = E.RowSplit(devices)
_, idx = E._block_candidates(split.block(np.zeros((7, 16), np.float32), 2), split.replicate(keys), 4)
runs = {n: E.similarity_entmax(q, keys, 3.0, k=(2, 32), block_rows=3, progress=False, devices=devices[:n])
        for n in (1, len(devices))}
(r1, c1, w1, s1), (r4, c4, w4, s4) = runs.values()
values = rng.standard_normal((len(keys), 3)).astype(np.float32)
dense = [E.dense_softmax_combine(q, keys, values, temperature=0.1, block_rows=3, devices=devices[:n]) for n in (1, 4)]
print(json.dumps({"devices": len(devices), "shards": len(idx.addressable_shards),
                  "rows_per_shard": [s.data.shape[0] for s in idx.addressable_shards],
                  "same_support": bool(np.array_equal(r1, r4) and np.array_equal(c1, c4)),
                  "max_diff": float(np.abs(w1 - w4).max()), "stats": [s1, s4],
                  "softmax_diff": float(np.abs(dense[0] - dense[1]).max()), "softmax_shape": dense[1].shape}))
"""


def test_rows_are_split_over_devices(tmp_path):
    """4 simulated CPU devices: each holds its own target rows (and their top-k), and the result
    (top-k, retry and full-row stages included) equals the one-device run."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=4")
    proc = subprocess.run([sys.executable, "-c", SHARDED], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == 4 and out["shards"] == 4 and out["rows_per_shard"] == [2, 2, 2, 2]
    assert out["same_support"] and out["max_diff"] < 1e-6
    assert out["softmax_shape"] == [38, 3] and out["softmax_diff"] < 1e-5  # the dense softmax methods too
    one, four = out["stats"]
    assert one == four and one["full"] >= 1 and one["top2"] >= 1 and one["top32"] >= 1, one
