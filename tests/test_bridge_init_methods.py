"""The issue-11 init methods on synthetic cases whose answer is known: the residual is orthogonal to the
combination and norm-matched, OMP recovers a planted sparse combination (and equals textbook OMP), the
linear maps recover a planted map, the frequency bias equals a numpy computation; bad input fails before
any bridge encoding, naming the key or the file."""
import dataclasses
import hashlib
import json

import entmax
import numpy as np
import pytest
import torch

from sembridge_jax.bridge import apply_alignment, build_alignment
from sembridge_jax.bridge.alignment import Alignment
from sembridge_jax.bridge.frequency import frequency_bias, read_texts, token_counts
from sembridge_jax.bridge.linear_map import fit_map
from sembridge_jax.bridge.methods import MethodInputs, centre_per_vocabulary, get_method
from sembridge_jax.bridge.omp import omp
from sembridge_jax.schema import ConfigError
from tests.test_bridge_apply import WORDS, _tiny
from tests.test_bridge_overlap import wordpiece


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    copy = -np.ones(30, np.int32)
    copy[:10] = rng.permutation(50)[:10]
    # a shared offset per vocabulary, as a multilingual bridge gives every string of one language
    tv = _unit(rng.standard_normal((30, 8)) + 3.0 * np.eye(8)[0]).astype(np.float32)
    sv = _unit(rng.standard_normal((50, 8)) + 3.0 * np.eye(8)[1]).astype(np.float32)
    return MethodInputs(copy_src=copy, source_size=50, target_vectors=tv, source_vectors=sv, alpha=4.0, block_rows=8,
                        omp_k=5)


def _align(name, x, seed=0):
    canonical, m = get_method(name)
    init = m.initialise(x)
    return Alignment(copy_src=x.copy_src, rows=init.rows, cols=init.cols, weights=init.weights, method=canonical,
                     source_size=x.source_size, new_kind=m.rows, dense_query=init.dense_query,
                     dense_keys=init.dense_keys, metadata={"seed": seed}, params=init.params)


def _centred(x):
    t = x.target_vectors.astype(np.float64)
    s = x.source_vectors.astype(np.float64)
    return _unit(t - t.mean(0)), _unit(s - s.mean(0))


def _dense(al):
    w = np.zeros((al.target_size, al.source_size))
    w[al.rows, al.cols] = al.weights
    return w


def test_centred_entmax_weights(inputs):
    tc, sc = _centred(inputs)
    new = np.flatnonzero(inputs.copy_src < 0)
    ref = entmax.entmax_bisect(torch.from_numpy(tc[new] @ sc.T), alpha=4.0, dim=-1, n_iter=100).numpy()
    for name in ("sembridge_centred", "identity_semantic"):
        al = _align(name, inputs)
        np.testing.assert_allclose(_dense(al)[new], ref, atol=1e-6)
    got = centre_per_vocabulary(inputs.target_vectors, inputs.source_vectors)
    np.testing.assert_allclose(got[0], tc, atol=1e-6)
    np.testing.assert_allclose(got[1], sc, atol=1e-6)


def test_residual_is_orthogonal_norm_matched_and_seeded(inputs):
    rows = np.random.default_rng(5).standard_normal((50, 6)) + 0.7
    m = rows.mean(0)
    rho = np.linalg.norm(rows - m, axis=1).mean()
    new = np.flatnonzero(inputs.copy_src < 0)
    for w in (0.0, 0.3, 0.5, 1.0):
        al = _align("identity_semantic", dataclasses.replace(inputs, identity_weight=w), seed=1)
        out = al.combine(rows, name="emb")
        dev = out[new] - m
        np.testing.assert_allclose(np.linalg.norm(dev, axis=1), rho, rtol=1e-9)  # norm-matched
        c_hat = _unit(_dense(al)[new] @ rows - m)
        along = (dev / rho * c_hat).sum(1)
        np.testing.assert_allclose(along, np.sqrt(1 - w), atol=1e-9)  # the semantic share of the energy
        rest = dev / rho - along[:, None] * c_hat  # the token-unique part: orthogonal, energy w
        np.testing.assert_allclose((rest * c_hat).sum(1), 0.0, atol=1e-9)
        np.testing.assert_allclose(np.linalg.norm(rest, axis=1), np.sqrt(w), atol=1e-9)
        np.testing.assert_array_equal(out[:10], rows[inputs.copy_src[:10]])
    same = _align("identity_semantic", inputs, seed=1)
    np.testing.assert_array_equal(same.combine(rows, name="emb"), _align("identity_semantic", inputs, 1).combine(rows, name="emb"))
    assert not np.allclose(same.combine(rows, name="emb"), same.combine(rows, name="decoder"))  # per tensor
    assert not np.allclose(same.combine(rows, name="emb"), _align("identity_semantic", inputs, 2).combine(rows, name="emb"))
    bias = np.random.default_rng(6).standard_normal(50)  # a one-column tensor gets the combination itself
    np.testing.assert_allclose(same.combine(bias, name="b")[new], _dense(same)[new] @ bias, atol=1e-9)


def test_mvgauss_nm_rows_are_norm_matched_source_shaped_draws(inputs):
    rng = np.random.default_rng(7)
    rows = rng.standard_normal((400, 5)) @ np.diag([3.0, 1.0, 0.5, 0.2, 0.1]) + 1.0
    x = dataclasses.replace(inputs, copy_src=-np.ones(3000, np.int32), source_size=400)
    m, rho = rows.mean(0), np.linalg.norm(rows - rows.mean(0), axis=1).mean()
    energy = {}
    for noise in ("mvgauss", "isotropic"):
        al = _align("mvgauss_nm", dataclasses.replace(x, identity_noise=noise), seed=3)
        dev = al.combine(rows, name="w") - m
        np.testing.assert_allclose(np.linalg.norm(dev, axis=1), rho, rtol=1e-9)
        energy[noise] = ((dev / rho) ** 2).mean(0)  # the share of each axis in the directions
    np.testing.assert_allclose(energy["isotropic"], 0.2, atol=0.02)  # uniform directions
    assert energy["mvgauss"][0] > 0.6 and np.all(np.diff(energy["mvgauss"]) < 0)  # shaped like the source


def _omp_textbook(t, atoms, k):
    res, sel = t.copy(), []
    for _ in range(k):
        c = np.abs(atoms @ res)
        c[sel] = -1
        sel.append(int(c.argmax()))
        coef, *_ = np.linalg.lstsq(atoms[sel].T, t, rcond=None)
        res = t - atoms[sel].T @ coef
    return sel, coef


def test_omp_recovers_a_planted_sparse_combination():
    rng = np.random.default_rng(8)
    atoms = _unit(rng.standard_normal((400, 64)))
    planted = np.stack([rng.choice(400, 5, replace=False) for _ in range(20)])
    coefs = rng.uniform(0.5, 2.0, (20, 5)) * rng.choice([-1, 1], (20, 5))  # any sign, not summing to 1
    targets = np.einsum("nk,nkd->nd", coefs, atoms[planted])
    for dtype in ("float64", "float32"):
        r, c, w, stats = omp(targets, atoms, 8, block_rows=8, solve_dtype=dtype, progress=False)
        for i in range(20):  # exactly 5 atoms: the reconstruction is exact, so OMP stops there
            got = dict(zip(c[r == i].tolist(), w[r == i].tolist(), strict=True))
            assert sorted(got) == sorted(planted[i].tolist())
            np.testing.assert_allclose([got[a] for a in planted[i]], coefs[i], atol=1e-4)
        assert stats["omp_atoms_median"] == 5 and stats["omp_residual_median"] < 1e-4


def test_omp_equals_textbook_omp_and_the_affine_rows(inputs):
    al = _align("omp", inputs)
    tc, sc = _centred(inputs)
    new = np.flatnonzero(inputs.copy_src < 0)
    for t in new:
        sel, coef = _omp_textbook(tc[t], sc, 5)
        got = dict(al.support(int(t)))
        assert sorted(got) == sorted(sel)
        np.testing.assert_allclose([got[s] for s in sel], coef, atol=1e-5)
    rows = np.random.default_rng(9).standard_normal((50, 4)) + 2.0
    m = rows.mean(0)
    np.testing.assert_allclose(al.combine(rows)[new], m + _dense(al)[new] @ (rows - m), atol=1e-9)


def test_linear_maps_recover_a_planted_map(inputs):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((300, 6))
    w_true, b_true = rng.standard_normal((6, 4)), rng.standard_normal(4)
    w, b = fit_map(x, x @ w_true + b_true, "ridge", ridge_lambda=1e-9, block=64)
    np.testing.assert_allclose(w, w_true, atol=1e-6)
    np.testing.assert_allclose(b, b_true, atol=1e-6)
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    w, b = fit_map(x, 2.5 * x @ q + 1.0, "procrustes", block=64)  # a scaled rotation plus an offset
    np.testing.assert_allclose(w, 2.5 * q, atol=1e-9)
    np.testing.assert_allclose(b, 1.0, atol=1e-9)

    # the row kind: rows that ARE a linear map of the (centred) source bridge vectors are predicted
    # for the new tokens up to the norm matching
    tc, sc = _centred(inputs)
    new = np.flatnonzero(inputs.copy_src < 0)
    w_true = rng.standard_normal((8, 5))
    rows = sc @ w_true + 1.0
    m, rho = rows.mean(0), np.linalg.norm(rows - rows.mean(0), axis=1).mean()
    al = _align("ridge", dataclasses.replace(inputs, ridge_lambda=1e-9))
    np.testing.assert_allclose(al.combine(rows)[new] - m, rho * _unit(tc[new] @ w_true + 1.0 - m), atol=1e-6)
    for fit in ("overlap", "both"):  # fitted on other pairs: norm-matched predictions
        al = _align("procrustes", dataclasses.replace(inputs, map_fit=fit))
        assert al.params == {"map_fit": fit, "map": "procrustes"}
        np.testing.assert_allclose(np.linalg.norm(al.combine(rows)[new] - m, axis=1), rho, rtol=1e-9)


def test_frequency_bias_equals_numpy(tmp_path):
    tok = wordpiece(WORDS)
    texts = ["the cat sat on the mat.", "a big dog", "the dogs running", "red red red cat"]
    tf, df = token_counts(texts, tok, len(tok))
    want_tf, want_df = np.zeros(len(tok)), np.zeros(len(tok))
    for t in texts:
        ids = [i for i in tok.convert_tokens_to_ids(tok.tokenize(t)) if i not in tok.all_special_ids]  # "dogs": [UNK]
        for i in ids:
            want_tf[i] += 1
        for i in set(ids):
            want_df[i] += 1
    np.testing.assert_array_equal(tf, want_tf)
    np.testing.assert_array_equal(df, want_df)
    b_s = np.random.default_rng(11).standard_normal(40)
    x = np.log((want_tf + 1) / (want_tf.sum() + len(tok)))
    np.testing.assert_allclose(frequency_bias("unigram", tf, df, 4, b_s),
                               b_s.mean() + b_s.std() * (x - x.mean()) / x.std(), atol=1e-12)
    x = np.log(5.0 / (want_df + 1))
    np.testing.assert_allclose(frequency_bias("idf", tf, df, 4, b_s),
                               b_s.mean() + b_s.std() * (x - x.mean()) / x.std(), atol=1e-12)

    (tmp_path / "beir").mkdir()
    (tmp_path / "beir/corpus.jsonl").write_text('{"_id": "1", "title": "T", "text": "body"}\n\n'
                                                '{"_id": "2", "text": "only"}\n')
    assert read_texts(tmp_path / "beir") == ["T body", "only"]
    (tmp_path / "lines.txt").write_text("one\n\n  two  \n")
    assert read_texts(tmp_path / "lines.txt") == ["one", "two"]


def _fake_bridge(texts, bridge, **kw):
    """Deterministic stand-in bridge vectors (one per string)."""
    return np.stack([np.random.default_rng(int(hashlib.md5(t.encode()).hexdigest()[:8], 16)).standard_normal(16)
                     for t in texts]).astype(np.float32)


def test_build_apply_identity_semantic_with_frequency_bias(tmp_path, monkeypatch):
    monkeypatch.setattr("sembridge_jax.bridge.build.encode_texts", _fake_bridge)
    src_tok = wordpiece(WORDS)
    tgt_tok = wordpiece(["cat", "zebra", "the", "##xyz", "qq", "moo", "red"])
    (tmp_path / "ko.txt").write_text("zebra moo moo\nthe cat qq\nzebra\n")
    kw = dict(bridge="fake", bias_text=str(tmp_path / "ko.txt"), seed=4)
    al = build_alignment(src_tok, tgt_tok, **kw)  # the default method
    assert al.method == "identity_semantic" and al.params == {"identity_weight": 0.5, "identity_noise": "mvgauss"}
    assert al.text_stats["n_texts"] == 3 and al.metadata["bias_init"] == "auto"
    back = Alignment.load(al.save(tmp_path / "al"))
    assert back.params == al.params and back.text_stats["n_texts"] == 3
    np.testing.assert_array_equal(back.text_stats["df"], al.text_stats["df"])
    model = _tiny("bert", len(src_tok), pad=0)
    b_s = np.asarray(model.mlm.bias[...])
    new, copied = al.new_ids, al.copy_src >= 0
    from sembridge_jax.models.vocab import vocab_params
    for bias_init, want in (("auto", np.full(len(new), b_s.mean())), ("mean", np.full(len(new), b_s.mean())),
                            ("idf", frequency_bias("idf", al.text_stats["tf"], al.text_stats["df"], 3, b_s)[new])):
        b = vocab_params(apply_alignment(model, back, bias_init=bias_init))[("mlm", "bias")]
        np.testing.assert_allclose(b[new], want, atol=1e-6)
        np.testing.assert_array_equal(b[copied], b_s[al.copy_src[copied]])
    e1 = vocab_params(apply_alignment(model, back))[("embeddings", "word")]
    e2 = vocab_params(apply_alignment(model, build_alignment(src_tok, tgt_tok, **kw)))[("embeddings", "word")]
    np.testing.assert_array_equal(e1, e2)  # deterministic per seed
    with pytest.raises(ValueError, match="bias_text"):
        apply_alignment(model, build_alignment(src_tok, tgt_tok, bridge="fake"), bias_init="unigram")

    v1 = tmp_path / "v1"  # an artifact of format 1 still loads
    Alignment(copy_src=[0, -1], rows=[], cols=[], weights=[], method="mean", source_size=2, new_kind="mean").save(v1)
    meta = json.loads((v1 / "alignment.json").read_text())
    (v1 / "alignment.json").write_text(json.dumps({**meta, "format_version": 1}))
    assert Alignment.load(v1).new_kind == "mean"
    (v1 / "alignment.json").write_text(json.dumps({**meta, "format_version": 9}))
    with pytest.raises(ValueError, match="format_version 9"):
        Alignment.load(v1)


@pytest.mark.parametrize("kwargs,match", [
    ({"method": "nope"}, "init.method"),
    ({"method": "omp", "omp_k": 0}, "init.omp_k"),
    ({"identity_weight": 1.5}, "init.identity_weight"),
    ({"identity_weight": -0.1}, "init.identity_weight"),
    ({"bias_init": "idf"}, "init.bias_text"),
    ({"bias_init": "unigram", "bias_text": "EMPTY"}, "empty.txt"),
    ({"bias_text": "MISSING"}, "init.bias_text"),
])
def test_bad_input_fails_before_bridge_encoding(kwargs, match, tmp_path, monkeypatch):
    def no_encoding(*a, **k):
        raise AssertionError("the bridge encoding started")

    monkeypatch.setattr("sembridge_jax.bridge.build.encode_texts", no_encoding)
    (tmp_path / "empty.txt").write_text("\n  \n")
    paths = {"EMPTY": str(tmp_path / "empty.txt"), "MISSING": str(tmp_path / "missing.txt")}
    kwargs = {k: paths.get(v, v) for k, v in kwargs.items()}
    with pytest.raises(ConfigError, match=match):
        build_alignment(wordpiece(WORDS), wordpiece(["zebra"]), bridge="fake", **kwargs)


def test_bad_input_in_config_and_cli(capsys):
    from sembridge_jax.bridge.__main__ import main
    from sembridge_jax.config import default_config, validate

    for key, value, match in (("identity_weight", 2.0, "init.identity_weight"), ("omp_k", 0, "init.omp_k"),
                              ("bias_init", "idf", "init.bias_text")):
        c = default_config()
        c.source = c.target_tokenizer = "org/name"
        c.init[key] = value
        with pytest.raises(ConfigError, match=match):
            validate(c, "my.py")
    with pytest.raises(SystemExit):
        main(["build", "--source", "org/src", "--target-tokenizer", "org/tgt", "--out", "x", "--method", "omp",
              "--omp-k", "0"])
    assert "init.omp_k" in capsys.readouterr().err
