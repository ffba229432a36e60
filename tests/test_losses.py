"""Losses vs independent implementations: sentence-transformers (torch), torch KL / MSE, scipy JS."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from sentence_transformers.sentence_transformer.losses import (
    DistillKLDivLoss,
    MarginMSELoss,
    MultipleNegativesRankingLoss,
)
from sentence_transformers.sparse_encoder.losses import FlopsLoss

from sembridge_jax.config import default_config
from sembridge_jax.training import losses

B, H, V = 6, 2, 40


@pytest.fixture(scope="module")
def vecs():
    """Sparse non-negative vectors like SPLADE's: queries [B, V], docs [B, 1 + H, V]."""
    rng = np.random.default_rng(0)
    q = np.maximum(rng.normal(size=(B, V)), 0).astype(np.float32)
    d = np.maximum(rng.normal(size=(B, 1 + H, V)), 0).astype(np.float32)
    teacher = rng.normal(size=(B, 1 + H)).astype(np.float32) * 3
    return q, d, teacher


def _st_columns(d):
    """sentence-transformers' layout: a list of columns (positives, negatives_1, ...)."""
    return [torch.from_numpy(d[:, k]) for k in range(d.shape[1])]


def _dot(a, b):
    return a @ b.T


def _pairwise_dot(a, b):
    return (a * b).sum(-1)


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_info_nce_matches_sentence_transformers(vecs, scale):
    q, d, _ = vecs
    st = MultipleNegativesRankingLoss.__new__(MultipleNegativesRankingLoss)
    torch.nn.Module.__init__(st)
    st.scale, st.similarity_fct, st.gather_across_devices = scale, _dot, False
    st.directions, st.partition_mode, st.hardness_mode, st.hardness_strength = ("query_to_doc",), "joint", None, 0.0
    expected = st.compute_loss_from_embeddings([torch.from_numpy(q), *_st_columns(d)], None).item()
    loss, acc = losses.info_nce(jnp.asarray(q), jnp.asarray(d), scale)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    logits = scale * q @ d.reshape(-1, V).T
    assert float(acc) == pytest.approx(np.mean(logits.argmax(1) == np.arange(B) * (1 + H)))


def test_flops_matches_sentence_transformers(vecs):
    q, d, _ = vecs
    st = FlopsLoss.__new__(FlopsLoss)
    torch.nn.Module.__init__(st)
    st.threshold = None
    np.testing.assert_allclose(float(losses.flops(jnp.asarray(q))),
                               st.compute_loss_from_embeddings(torch.from_numpy(q)).item(), rtol=1e-5)
    # documents: sentence-transformers' SpladeLoss regularises torch.cat(all document columns)
    all_docs = torch.cat(_st_columns(d))
    np.testing.assert_allclose(float(losses.flops(jnp.asarray(d))),
                               st.compute_loss_from_embeddings(all_docs).item(), rtol=1e-5)


def test_l1():
    w = np.array([[1.0, -2.0, 0.0], [0.0, 0.5, 0.0]], np.float32)
    assert float(losses.l1(jnp.asarray(w))) == pytest.approx((3.0 + 0.5) / 2)


def test_quadratic_warmup_and_sentence_transformers_schedule():
    lam, T = 5e-5, 30
    for step in (0, 1, 7, 15, 29, 30, 31, 1000):
        expected = lam * min(1.0, step / T) ** 2
        assert float(losses.quadratic_warmup(lam, step, T)) == pytest.approx(expected, rel=1e-6)
    assert float(losses.quadratic_warmup(lam, 3, 0)) == pytest.approx(lam)
    # traced step (inside jit) gives the same value
    assert float(jax.jit(lambda s: losses.quadratic_warmup(lam, s, T))(15)) == pytest.approx(lam / 4)


def test_margin_mse_matches_sentence_transformers(vecs):
    q, d, teacher = vecs
    st = MarginMSELoss.__new__(MarginMSELoss)
    torch.nn.Module.__init__(st)
    st.similarity_fct, st.loss_fct = _pairwise_dot, torch.nn.MSELoss()
    expected = st.compute_loss_from_embeddings([torch.from_numpy(q), *_st_columns(d)],
                                               torch.from_numpy(teacher)).item()
    student = losses.own_scores(jnp.asarray(q), jnp.asarray(d))
    np.testing.assert_allclose(float(losses.margin_mse(student, jnp.asarray(teacher))), expected, rtol=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_kl_matches_sentence_transformers_and_torch(vecs, temperature):
    q, d, teacher = vecs
    student = np.einsum("bv,bkv->bk", q, d)
    st = DistillKLDivLoss.__new__(DistillKLDivLoss)
    torch.nn.Module.__init__(st)
    st.similarity_fct, st.loss_fct = _pairwise_dot, torch.nn.KLDivLoss(reduction="batchmean")
    st.student_temperature = st.teacher_temperature = temperature
    st._checked_teacher_scale = True
    expected = st.compute_loss_from_embeddings([torch.from_numpy(q), *_st_columns(d)],
                                               torch.from_numpy(teacher)).item()
    torch_kl = torch.nn.functional.kl_div(torch.log_softmax(torch.from_numpy(student) / temperature, 1),
                                          torch.softmax(torch.from_numpy(teacher) / temperature, 1),
                                          reduction="batchmean").item() * temperature**2
    ours = float(losses.kl_distill(jnp.asarray(student), jnp.asarray(teacher), temperature))
    np.testing.assert_allclose(ours, expected, rtol=1e-4)
    np.testing.assert_allclose(ours, torch_kl, rtol=1e-4)


def test_xling_js_matches_scipy(vecs):
    q, d, _ = vecs
    rng = np.random.default_rng(1)
    q_tgt = np.maximum(q + 0.3 * rng.normal(size=q.shape), 0).astype(np.float32)
    scale = 0.7
    docs = d.reshape(-1, V)

    def softmax(x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)
    p_src, p_tgt = softmax(scale * q @ docs.T), softmax(scale * q_tgt @ docs.T)
    expected = np.mean([jensenshannon(a, b) ** 2 for a, b in zip(p_src, p_tgt, strict=True)])  # scipy: sqrt(JS), base e
    ours = float(losses.xling_js(jnp.asarray(q), jnp.asarray(q_tgt), jnp.asarray(d), scale))
    np.testing.assert_allclose(ours, expected, rtol=1e-4)
    assert float(losses.xling_js(jnp.asarray(q), jnp.asarray(q), jnp.asarray(d))) == pytest.approx(0, abs=1e-6)


def test_presets_and_settings():
    c = default_config()
    c.train.num_steps = 300
    s = losses.loss_settings(c)
    assert (s.lambda_q, s.lambda_d, s.flops_warmup_steps) == (5e-5, 3e-5, 100)
    c.loss.preset = "splade_pp"
    s = losses.loss_settings(c)
    assert (s.lambda_q, s.lambda_d, s.flops_warmup_steps) == (3e-4, 1e-4, 50_000)
    c.loss.lambda_q = 1e-3  # an explicit value wins over the preset
    assert losses.loss_settings(c).lambda_q == 1e-3
    hash(losses.loss_settings(c))  # jit can close over it


def test_total_loss_sums_its_parts(vecs):
    q, d, teacher = vecs
    settings = losses.LossSettings(scale=1.0, lambda_q=0.1, lambda_d=0.2, flops_warmup_steps=10, l1_q=0.01,
                                   distill="margin_mse", distill_weight=0.5, xling_weight=0.3)
    q_tgt = np.roll(q, 1, axis=0)
    fn = jax.jit(lambda q, d, t, step, x: losses.total_loss(settings, q, d, step, teacher_scores=t, xling=x))
    loss, m = fn(q, d, teacher, 5, (q, q_tgt))
    warm = (5 / 10) ** 2
    expected = (m["ranking"] + warm * (0.1 * m["flops_q"] + 0.2 * m["flops_d"] + 0.01 * m["l1_q"])
                + 0.5 * m["distill"] + 0.3 * m["xling_js"])
    np.testing.assert_allclose(float(loss), float(expected), rtol=1e-6)
    assert float(m["lambda_q"]) == pytest.approx(0.1 * warm)
    grads = jax.grad(lambda q: losses.total_loss(settings, q, d, 5, teacher_scores=teacher, xling=(q, q_tgt))[0])(
        jnp.asarray(q))
    assert np.isfinite(np.asarray(grads)).all()


def test_total_loss_shape_errors(vecs):
    q, d, _ = vecs
    with pytest.raises(ValueError, match="d \\[B, 1\\+H, V\\]"):
        losses.total_loss(losses.LossSettings(), q, d[:, 0], 0)
    with pytest.raises(ValueError, match="teacher_scores"):
        losses.total_loss(losses.LossSettings(distill="kl"), q, d, 0)
