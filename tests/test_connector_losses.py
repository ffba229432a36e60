"""Connector alignment losses against NumPy implementations written from their definitions."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sembridge_jax.training import connector_losses as cl


def _np_sparse_mse(s, t, margin):
    s, t = np.asarray(s, np.float64), np.maximum(np.asarray(t, np.float64), 0)
    m = (s > 0) | (t > 0)
    target = np.where(t > 0, t, -margin)
    return ((s - target) ** 2)[m].sum() / max(m.sum(), 1)


def _np_vector_nce(s, t, scale):
    ws, wt = np.log1p(np.maximum(s, 0)).astype(np.float64), np.log1p(np.maximum(t, 0)).astype(np.float64)
    z = scale * ws @ wt.T
    z = z - z.max(1, keepdims=True)
    lp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return -np.mean(np.diag(lp))


def _raw(seed, shape=(4, 50)):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * 2).astype(np.float32)


@pytest.mark.parametrize("margin", [0.0, 1.0, 0.3])
def test_sparse_mse_margin(margin):
    s, t = _raw(0), _raw(1)
    got = float(cl.sparse_mse_margin(jnp.asarray(s), jnp.asarray(t), margin))
    np.testing.assert_allclose(got, _np_sparse_mse(s, t, margin), rtol=1e-6)
    assert float(cl.sparse_mse_margin(jnp.full((2, 5), -1.0), jnp.zeros((2, 5)), margin)) == 0.0


def test_sparse_mse_gradient_only_reaches_the_student():
    s, t = jnp.asarray(_raw(2)), jnp.asarray(_raw(3))
    gs, gt = jax.grad(lambda a, b: cl.sparse_mse_margin(a, b, 1.0), argnums=(0, 1))(s, t)
    assert np.abs(np.asarray(gs)).sum() > 0 and np.abs(np.asarray(gt)).sum() == 0


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_vector_nce(scale):
    s, t = _raw(4), _raw(5)
    np.testing.assert_allclose(float(cl.vector_nce(jnp.asarray(s), jnp.asarray(t), scale)),
                               _np_vector_nce(s, t, scale), rtol=1e-5)


class _VectorsAsStates:
    """A stand-in model whose 'states' are already the SPLADE vectors (the objective's arithmetic only)."""

    def english_from_states(self, states, mask):
        return jnp.asarray(states)


@pytest.mark.parametrize("step", [0, 3, 20])
def test_query_xling_objective(step):
    from sembridge_jax.training.connector_objectives import query_xling_objective
    from sembridge_jax.training.losses import LossSettings

    q, e = np.abs(_raw(6)), np.abs(_raw(7))
    settings = LossSettings(lambda_q=1e-2, flops_warmup_steps=10)
    loss, metrics = query_xling_objective(settings, xling=0.7)(
        _VectorsAsStates(), {"query_states": q, "query_mask": None, "english_doc": e}, step)
    z = q.astype(np.float64) @ e.T.astype(np.float64)
    z = z - z.max(1, keepdims=True)
    nce = -np.mean(np.diag(z - np.log(np.exp(z).sum(1, keepdims=True))))
    flops_q = (np.abs(q).mean(0) ** 2).sum()
    lam = 1e-2 * min(1.0, step / 10) ** 2
    np.testing.assert_allclose(float(metrics["xling_nce"]), nce, rtol=1e-5)
    np.testing.assert_allclose(float(loss), 0.7 * nce + lam * flops_q, rtol=1e-5)


def test_echo_regression():
    rng = np.random.default_rng(8)
    w, t = np.abs(rng.standard_normal((3, 6))), np.abs(rng.standard_normal((3, 6)))
    m = (rng.random((3, 6)) > 0.4).astype(np.float32)
    np.testing.assert_allclose(float(cl.echo_regression(jnp.asarray(w), jnp.asarray(t), jnp.asarray(m))),
                               ((w - t) ** 2)[m > 0].mean(), rtol=1e-6)
