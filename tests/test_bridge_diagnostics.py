"""Diagnostics of an initialisation (bridge/diagnostics.py) against brute-force loops; the `diagnose` CLI and
the row diagnostics that `build` records, on a tiny model."""
import json

import numpy as np
import pytest
import scipy.sparse as sp
from transformers import BertTokenizer

from sembridge_jax.bridge.diagnostics import bias_stats, distinctness, row_diagnostics, self_activation
from tests.tiny_models import make_hf_folder


def _self_activation_loops(token_ids, dense, new_mask):
    share, mass, share_new = [], [], []
    for i, own in enumerate(token_ids):
        v = dense[i]
        if len(own):
            share.append(sum(v[t] > 0 for t in own) / len(own))
            new = [t for t in own if new_mask[t]]
            if new:
                share_new.append(sum(v[t] > 0 for t in new) / len(new))
        total = sum(x for x in v if x > 0)
        mass.append(sum(v[t] for t in own if v[t] > 0) / total if total > 0 else 0.0)
    return {"selfact_share": np.mean(share), "selfact_mass": np.mean(mass), "selfact_share_new": np.mean(share_new)}


def _distinctness_loops(new, source):
    x = [np.asarray(r, np.float64) for r in new]
    m = np.asarray(source, np.float64).mean(0)

    def cosines(rows):
        return [a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) for i, a in enumerate(rows) for b in rows[i + 1:]]

    c, cc = cosines(x), cosines([r - m for r in x])
    s = np.linalg.svd(np.array([r - m for r in x]), compute_uv=False)
    p = s / s.sum()
    return {"cos_mean": np.mean(c), "cos_p99": np.percentile(c, 99), "cosc_mean": np.mean(cc),
            "cosc_p99": np.percentile(cc, 99), "eff_rank": np.exp(-sum(q * np.log(q) for q in p if q > 0)),
            "norm_ratio": np.mean([np.linalg.norm(r) for r in x]) / np.mean(np.linalg.norm(source, axis=1)),
            "devnorm_ratio": np.mean([np.linalg.norm(r - m) for r in x]) / np.mean(np.linalg.norm(source - m, axis=1))}


def test_self_activation_equals_loops():
    rng = np.random.default_rng(0)
    dense = np.maximum(rng.standard_normal((12, 40)), 0) * (rng.random((12, 40)) < 0.3)
    dense[3] = 0  # an empty vector
    token_ids = [np.unique(rng.integers(0, 40, rng.integers(0, 8))) for _ in range(12)]
    token_ids[5] = np.zeros(0, np.int64)  # a text without tokens
    new_mask = rng.random(40) < 0.5
    got = self_activation(token_ids, sp.csr_matrix(dense), new_mask)
    want = _self_activation_loops(token_ids, dense, new_mask)
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12)


def test_distinctness_and_bias_stats_equal_loops():
    rng = np.random.default_rng(1)
    source = rng.standard_normal((60, 6)) + 0.5
    new = rng.standard_normal((15, 6)) + 0.3
    got = distinctness(new, source, sample=100)
    want = _distinctness_loops(new, source)
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-9)
    sub = distinctness(new, source, sample=10, seed=3)  # a seeded sample of 10 rows
    assert sub == distinctness(new, source, sample=10, seed=3) and sub != got

    bias = rng.standard_normal(20)
    copy = np.where(rng.random(20) < 0.4, 1, -1)
    stats = bias_stats(bias, copy)
    for name, mask in (("new", copy < 0), ("copied", copy >= 0)):
        v = bias[mask]
        np.testing.assert_allclose([stats[f"bias_{name}_{s}"] for s in ("mean", "std", "min", "max")],
                                   [v.mean(), v.std(), v.min(), v.max()])


def test_row_diagnostics_reads_embeddings_and_bias():
    rng = np.random.default_rng(2)
    src = {("embeddings", "word"): rng.standard_normal((30, 4)), ("mlm", "bias"): rng.standard_normal(30)}
    copy = np.array([3, 4, -1, -1, -1, 7])
    tgt = {("embeddings", "word"): rng.standard_normal((6, 4)), ("mlm", "bias"): rng.standard_normal(6)}
    got = row_diagnostics(src, tgt, copy)
    assert got["rows"] == "embeddings/word"
    np.testing.assert_allclose(got["norm_ratio"], _distinctness_loops(tgt[("embeddings", "word")][2:5],
                                                                      src[("embeddings", "word")])["norm_ratio"])
    assert got["bias_new_mean"] == pytest.approx(tgt[("mlm", "bias")][2:5].mean())


@pytest.fixture(scope="module")
def tiny_transfer(tmp_path_factory):
    """A tiny English model, a target tokenizer with 6 new tokens, and a 5-text BEIR corpus."""
    root = tmp_path_factory.mktemp("diag")
    make_hf_folder(root / "src", "bert", seed=3)
    words = ["the", "cat", "sat", "on", "mat", "zebra", "qux", "##ing", "blorp", "moo", "hello", "zed"]
    (root / "tgt").mkdir()
    (root / "tgt/vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    BertTokenizer(str(root / "tgt/vocab.txt"), do_lower_case=True).save_pretrained(root / "tgt")
    (root / "corpus").mkdir()
    texts = ["the cat sat on the mat", "zebra qux blorp", "hello moo zed zebra", "the zebra", "blorp blorp cat"]
    (root / "corpus/corpus.jsonl").write_text("".join(json.dumps({"_id": str(i), "title": "", "text": t}) + "\n"
                                                      for i, t in enumerate(texts)))
    return root, texts


def test_build_records_row_diagnostics_and_diagnose_records_self_activation(tiny_transfer, capsys):
    from sembridge_jax.api import SparseEncoder
    from sembridge_jax.bridge import Alignment
    from sembridge_jax.bridge.__main__ import main
    from sembridge_jax.models.vocab import vocab_params

    root, texts = tiny_transfer
    out = root / "out"
    assert main(["build", "--source", str(root / "src"), "--target-tokenizer", str(root / "tgt"),
                 "--method", "mvgauss_nm", "--seed", "1", "--out", str(out)]) == 0
    meta = json.loads((out / "alignment.json").read_text())
    assert meta["format_version"] == 2 and meta["bias"] == "mean"
    model = SparseEncoder.from_pretrained(out / "model")
    source = SparseEncoder.from_pretrained(root / "src")
    al = Alignment.load(out)
    rows = vocab_params(model.model)
    src_rows = vocab_params(source.model)[("embeddings", "word")][:al.source_size]  # the tokenizer's rows
    want = _distinctness_loops(rows[("embeddings", "word")][al.new_ids], src_rows)
    for k, v in want.items():
        assert meta["diagnostics"]["rows"][k] == pytest.approx(v, rel=1e-6)
    assert meta["diagnostics"]["rows"]["devnorm_ratio"] == pytest.approx(1.0, rel=1e-5)  # norm-matched rows
    assert meta["diagnostics"]["rows"]["bias_new_std"] == pytest.approx(0.0, abs=1e-6)

    capsys.readouterr()
    assert main(["diagnose", "--model", str(out / "model"), "--corpus", str(root / "corpus"), "--alignment", str(out),
                 "--sample", "50", "--max-length", "16"]) == 0
    found = json.loads((out / "alignment.json").read_text())["diagnostics"]
    dense = model.encode(texts, max_length=16).toarray()
    tok = model.tokenizer
    ids = [sorted(set(tok(t, truncation=True, max_length=16)["input_ids"]) - set(tok.all_special_ids)) for t in texts]
    want = _self_activation_loops(ids, dense, al.copy_src < 0)
    for k, v in want.items():
        assert found["self_activation"][k] == pytest.approx(v, rel=1e-9)
    assert found["self_activation"]["texts"] == 5 and "rows" in found  # the source recorded at build is reused
    assert '"selfact_share"' in capsys.readouterr().out
