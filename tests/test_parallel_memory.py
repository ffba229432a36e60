"""`models.memory.ParallelMemory` against a brute-force numpy implementation; its file; bad input."""
import numpy as np
import pytest
import scipy.sparse as sp

from sembridge_jax.models.memory import ParallelMemory
from sembridge_jax.training.connector_data import RaggedStates


def _memory(n=50, d=16, v=300, **settings):
    rng = np.random.default_rng(0)
    pools = rng.normal(size=(n, d)).astype(np.float32) + 3.0  # a shared offset, as bridge pools have
    values = sp.random(n, v, density=0.05, random_state=1, format="csr", dtype=np.float32)
    return ParallelMemory.build(pools, values, **settings), pools, values


def _brute_force(pools_db, values, queries, k, temperature):
    center = pools_db.mean(0)
    keys = (pools_db - center) / np.linalg.norm(pools_db - center, axis=1, keepdims=True)
    out = np.zeros((len(queries), values.shape[1]))
    for i, q in enumerate(queries):
        q = (q - center) / np.linalg.norm(q - center)
        sims = keys @ q
        top = np.argsort(-sims)[:k]
        w = np.exp(sims[top] / temperature)
        out[i] = (w / w.sum()) @ values.toarray()[top]
    return out


@pytest.mark.parametrize("k,temperature", [(1, 0.1), (10, 0.1), (5, 0.02), (50, 1.0)])
def test_vectors_match_brute_force(k, temperature):
    memory, pools, values = _memory(k=k, temperature=temperature, weight=0.5)
    queries = np.random.default_rng(1).normal(size=(7, 16)).astype(np.float32) + 3.0
    ref = _brute_force(pools, values, queries, k, temperature)
    np.testing.assert_allclose(memory.vectors(queries).toarray(), ref, atol=1e-5)
    english = sp.random(7, 300, density=0.1, random_state=2, format="csr", dtype=np.float32)
    np.testing.assert_allclose(memory.add_to(english, queries).toarray(), english.toarray() + 0.5 * ref, atol=1e-5)


def test_a_key_finds_itself_with_a_sharp_temperature():
    memory, pools, values = _memory(k=10, temperature=1e-3)
    np.testing.assert_allclose(memory.vectors(pools[:5]).toarray(), values[:5].toarray(), atol=1e-5)


def test_file_round_trip(tmp_path):
    memory, _, _ = _memory(k=4, temperature=0.2, weight=2.0)
    (tmp_path / "m.npz").write_bytes(memory.to_bytes())
    back = ParallelMemory.load(tmp_path / "m.npz")
    assert (back.k, back.temperature, back.weight) == (4, 0.2, 2.0)
    np.testing.assert_array_equal(back.keys, memory.keys)
    np.testing.assert_array_equal(back.values.toarray(), memory.values.toarray())
    (tmp_path / "bad.npz").write_bytes(b"not a memory")
    with pytest.raises(ValueError, match="bad.npz"):
        ParallelMemory.load(tmp_path / "bad.npz")


def test_bad_input():
    with pytest.raises(ValueError, match="no parallel pairs"):
        ParallelMemory.build(np.zeros((0, 4), np.float32), sp.csr_matrix((0, 10)))
    with pytest.raises(ValueError, match="3 keys"):
        ParallelMemory.build(np.ones((3, 4), np.float32), sp.csr_matrix((2, 10)))
    with pytest.raises(ValueError, match="k must be"):
        ParallelMemory.build(np.ones((3, 4), np.float32), sp.csr_matrix((3, 10)), k=0)


def test_ragged_means_equal_padded_mean_pool():
    rng = np.random.default_rng(0)
    lengths = np.array([3, 1, 5])
    flat = rng.normal(size=(lengths.sum(), 6)).astype(np.float16)
    states = RaggedStates(flat, np.concatenate([[0], np.cumsum(lengths)]), np.zeros(lengths.sum(), np.int32))
    x, m = states.batch(range(3), 5)
    padded_mean = (x.astype(np.float32) * m[..., None]).sum(1) / m.sum(1, keepdims=True)
    np.testing.assert_allclose(states.means(), padded_mean, rtol=1e-6)
