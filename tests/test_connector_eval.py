"""The connector runner's score fusion with a vocabulary-transfer model, against NumPy."""
import numpy as np
import scipy.sparse as sp

from sembridge_jax.connector import fusion_weight


def test_fusion_weight_equalises_typical_scores():
    rng = np.random.default_rng(0)
    qa, da, qb, db = (sp.random(n, 20, density=0.3, random_state=int(rng.integers(1 << 30)), format="csr")
                      for n in (5, 7, 5, 7))
    norm = lambda m: np.linalg.norm(m.toarray(), axis=1).mean()  # noqa: E731
    w = fusion_weight(qa, da, qb, db)
    np.testing.assert_allclose(w, norm(qa) * norm(da) / (norm(qb) * norm(db)), rtol=1e-6)
    # the fused vectors [a | w b] . [a | b] score a.a + w b.b: one index serves both models
    fq, fd = sp.hstack([qa, w * qb]), sp.hstack([da, db])
    np.testing.assert_allclose((fq @ fd.T).toarray(), qa.toarray() @ da.toarray().T + w * qb.toarray() @ db.toarray().T,
                               rtol=1e-6)


def _np_aligned_max(src, tgt, weights):
    """Character sets, written from the definition: a source token takes the max weight of every target
    token sharing a character with it (NaN: none); the specials (first / last) take the target's first / last."""
    out = []
    for i, (a0, a1) in enumerate(src):
        if i in (0, len(src) - 1):
            out.append(weights[0] if i == 0 else weights[-1])
            continue
        chars = set(range(a0, a1))
        out.append(max([w for (b0, b1), w in zip(tgt, weights, strict=True) if chars & set(range(b0, b1))], default=np.nan))
    return np.asarray(out, np.float32)


def test_aligned_max_against_character_sets():
    from sembridge_jax.training.connector_data import aligned_max

    src = np.array([(0, 0), (0, 2), (2, 6), (6, 8), (8, 14), (14, 15), (15, 22), (22, 23), (23, 26), (0, 0)])
    tgt = np.array([(0, 0), (0, 6), (7, 8), (9, 14), (14, 15), (16, 22), (22, 23), (0, 0)])
    weights = np.array([0.1, 1.5, 0.2, 2.0, 0.0, 0.7, 0.3, 0.05], np.float32)
    np.testing.assert_array_equal(aligned_max(src, tgt, weights), _np_aligned_max(src, tgt, weights))


def test_echo_targets_same_tokenizer_is_the_teacher_weight():
    """With the English tokenizer on both sides every token aligns to itself: the target is log1p(raw[id])."""
    from transformers import AutoTokenizer

    from sembridge_jax.training.connector_data import echo_targets

    tok = AutoTokenizer.from_pretrained("assets/splade-tiny-en")
    texts = ["Insert a table, please.", "Page numbers in the footer"]
    ids = tok(texts, truncation=True, max_length=16)["input_ids"]
    raw = sp.random(2, tok.vocab_size, density=0.001, random_state=0, format="lil") * 3
    for r, row in enumerate(ids):
        for i in row:
            raw[r, i] = 0.5 + (i % 7)
    raw = raw.tocsr()
    got = echo_targets(tok, tok, texts, raw, max_length=16)
    want = np.concatenate([np.log1p([raw[r, i] for i in row]) for r, row in enumerate(ids)])
    np.testing.assert_allclose(got, want, rtol=1e-6)
