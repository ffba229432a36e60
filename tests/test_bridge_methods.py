"""Init methods on synthetic bridge vectors, checked against direct numpy computations; artifact I/O."""
import entmax
import numpy as np
import pytest
import torch

from sembridge_jax.bridge.alignment import Alignment
from sembridge_jax.bridge.methods import METHODS, MethodInputs, get_method


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    copy = -np.ones(30, np.int32)
    copy[:10] = rng.permutation(50)[:10]  # 10 overlapping target tokens
    return MethodInputs(copy_src=copy, source_size=50, target_vectors=_unit(rng.standard_normal((30, 8))),
                        source_vectors=_unit(rng.standard_normal((50, 8))), alpha=4.0, block_rows=8)


def _align(name, x, **meta):
    canonical, m = get_method(name)
    init = m.initialise(x)
    return Alignment(copy_src=x.copy_src, rows=init.rows, cols=init.cols, weights=init.weights, method=canonical,
                     source_size=x.source_size, new_kind=m.rows, dense_query=init.dense_query,
                     dense_keys=init.dense_keys, target_tokens=[f"t{i}" for i in range(30)],
                     source_tokens=[f"s{i}" for i in range(50)], metadata=meta, mean_ids=init.mean_ids,
                     params=init.params)


def _dense_weights(al):
    w = np.zeros((al.target_size, al.source_size))
    w[al.rows, al.cols] = al.weights
    return w


def test_sembridge_and_sparsemax_weights(inputs):
    z = inputs.target_vectors.astype(np.float64) @ inputs.source_vectors.astype(np.float64).T
    new = np.flatnonzero(inputs.copy_src < 0)
    for name, alpha in (("sembridge", 4.0), ("sparsemax", 2.0)):
        w = _dense_weights(_align(name, inputs))
        ref = entmax.entmax_bisect(torch.from_numpy(z[new]), alpha=alpha, dim=-1, n_iter=100).numpy()
        np.testing.assert_allclose(w[new], ref, atol=1e-6)
        assert (w[:10] == 0).all()


def test_focus_uses_overlap_only(inputs):
    al = _align("focus", inputs)
    tv, copy = inputs.target_vectors.astype(np.float64), inputs.copy_src
    ov = np.flatnonzero(copy >= 0)
    new = np.flatnonzero(copy < 0)
    w_ov = entmax.sparsemax(torch.from_numpy(tv[new] @ tv[ov].T), dim=-1).numpy()
    expect = np.zeros((30, 50))
    for r, t in enumerate(new):
        np.add.at(expect[t], copy[ov], w_ov[r])
    np.testing.assert_allclose(_dense_weights(al), expect, atol=1e-6)
    assert set(np.unique(al.cols)) <= set(copy[ov])


def test_wechsel_topk_softmax(inputs):
    al = _align("ofa", inputs)
    assert al.method == "wechsel"
    z = inputs.target_vectors @ inputs.source_vectors.T
    t = int(np.flatnonzero(inputs.copy_src < 0)[0])
    top = np.argsort(-z[t])[:10]
    e = np.exp((z[t, top] - z[t, top].max()) / 0.1)
    np.testing.assert_allclose(_dense_weights(al)[t, top], e / e.sum(), atol=1e-6)
    assert (al.support_sizes() == 10).all()


def test_softmax_all_combines_densely(inputs):
    al = _align("softmax_all", inputs)
    rows = np.random.default_rng(1).standard_normal((50, 6)).astype(np.float32)
    z = inputs.target_vectors @ inputs.source_vectors.T
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    out = al.combine(rows)
    new = np.flatnonzero(inputs.copy_src < 0)
    np.testing.assert_allclose(out[new], (p @ rows)[new], atol=1e-5)
    np.testing.assert_array_equal(out[:10], rows[inputs.copy_src[:10]])
    assert len(al.support(int(new[0]))) == 32


def test_unkfilter_drops_unknown_sources_and_means_unknown_targets(inputs, tmp_path):
    import dataclasses

    s_unk = np.zeros(50, bool)
    s_unk[[3, 7, 40]] = True
    t_unk = np.zeros(30, bool)
    t_unk[[12, 20]] = True
    x = dataclasses.replace(inputs, source_unknown=s_unk, target_unknown=t_unk)
    al = _align("sembridge_unkfilter", x)
    new = np.flatnonzero(x.copy_src < 0)
    known = new[~t_unk[new]]
    keep = np.flatnonzero(~s_unk)
    z = x.target_vectors[known].astype(np.float64) @ x.source_vectors[keep].astype(np.float64).T
    ref = np.zeros((30, 50))
    ref[np.ix_(known, keep)] = entmax.entmax_bisect(torch.from_numpy(z), alpha=4.0, dim=-1, n_iter=100).numpy()
    np.testing.assert_allclose(_dense_weights(al), ref, atol=1e-6)
    np.testing.assert_array_equal(al.mean_ids, [12, 20])
    rows = np.random.default_rng(3).standard_normal((50, 4)).astype(np.float32)
    out = al.combine(rows)
    np.testing.assert_allclose(out[[12, 20]], np.repeat(rows.mean(0, keepdims=True), 2, 0), atol=1e-6)
    np.testing.assert_allclose(out[known], (ref @ rows.astype(np.float64))[known], atol=1e-5)
    back = Alignment.load(al.save(tmp_path / "unk"))
    np.testing.assert_array_equal(back.mean_ids, al.mean_ids)
    assert back.summary()["mean_init"] == 2 and "mean init" in back.describe(12)
    # without masks it is plain sembridge
    plain = _align("sembridge", inputs)
    same = _align("sembridge_unkfilter", inputs)
    np.testing.assert_array_equal(_dense_weights(plain), _dense_weights(same))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_save_load_roundtrip(inputs, tmp_path, name):
    al = _align(name, inputs, seed=7, timings={"weights_s": 0.1})
    rows = np.random.default_rng(2).standard_normal((50, 4)).astype(np.float32)
    back = Alignment.load(al.save(tmp_path / name))
    assert back.method == al.method and back.new_kind == al.new_kind and back.metadata["seed"] == 7
    np.testing.assert_array_equal(back.combine(rows, name="x"), al.combine(rows, name="x"))
    assert back.summary() == al.summary()
    assert "t12" in back.describe(12)


def test_alignment_validation():
    with pytest.raises(ValueError, match="no weights"):
        Alignment(copy_src=[-1, 0], rows=[], cols=[], weights=[], method="sembridge", source_size=3)
    with pytest.raises(ValueError, match="source_size"):
        Alignment(copy_src=[5, 0], rows=[], cols=[], weights=[], method="mean", source_size=3, new_kind="mean")
    with pytest.raises(ValueError, match="unknown init method"):
        get_method("nope")
