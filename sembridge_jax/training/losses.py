"""Training losses for sparse retrieval (docs/methods.md, "The fine-tuning objective"): pure JAX functions.

Shapes: B queries, H hard negatives per query, V vocabulary. Query vectors `q` are [B, V];
document vectors `d` are [B, 1 + H, V] with the positive of query i at d[i, 0] and its hard
negatives at d[i, 1:]. Every loss is a batch MEAN (over queries, or over all documents for
the FLOPS term), so it does not grow with the batch. Called on global (sharded) arrays inside
`jit`, the score matrix spans the global batch: in-batch negatives come from all devices.
Everything is computed in float32 whatever the input dtype.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from sembridge_jax.models.heads import dense_pool

# (lambda_q, lambda_d, FLOPS warmup steps); None = one third of training (sentence-transformers'
# SpladeRegularizerWeightSchedulerCallback default warmup_ratio).
PRESETS = {
    "sentence_transformers": (5e-5, 3e-5, None),
    "splade_pp": (3e-4, 1e-4, 50_000),
}


DISTILL = ("none", "margin_mse", "kl")


def _f32(x):
    return jnp.asarray(x, jnp.float32)


def score_matrix(q: jax.Array, d: jax.Array) -> jax.Array:
    """Dot products of every query with every document of the batch: [B, B * (1 + H)].

    Column j * (1 + H) + k is document k of example j, so query i's positive is column i * (1 + H).
    """
    docs = _f32(d).reshape(-1, d.shape[-1])
    return _f32(q) @ docs.T


def own_scores(q: jax.Array, d: jax.Array) -> jax.Array:
    """Scores of each query with its own documents: [B, 1 + H] (column 0 = the positive)."""
    return jnp.einsum("bv,bkv->bk", _f32(q), _f32(d))


def info_nce(q: jax.Array, d: jax.Array, scale: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """InfoNCE over in-batch (+ hard) negatives: mean_i -log softmax(scale * S)[i, pos(i)].

    Equals sentence-transformers' SparseMultipleNegativesRankingLoss (dot similarity, `scale`).
    Returns (loss, top-1 accuracy of the positive among all batch documents).
    """
    logits = scale * score_matrix(q, d)
    group = d.shape[1]
    labels = jnp.arange(q.shape[0]) * group
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    loss = -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=-1))
    accuracy = jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))
    return loss, accuracy


def flops(w: jax.Array) -> jax.Array:
    """FLOPS regulariser (Paria et al. 2020): sum_v (mean_n |w_nv|)^2 over rows n of [..., V]."""
    w = _f32(w).reshape(-1, w.shape[-1])
    return jnp.sum(jnp.mean(jnp.abs(w), axis=0) ** 2)


def l1(w: jax.Array) -> jax.Array:
    """L1 regulariser: mean_n sum_v |w_nv| (Efficient-SPLADE's query penalty)."""
    w = _f32(w).reshape(-1, w.shape[-1])
    return jnp.mean(jnp.sum(jnp.abs(w), axis=-1))


def quadratic_warmup(weight: float, step, warmup_steps: int) -> jax.Array:
    """lambda_t = weight * min(1, step / T)^2; T = 0 means no warmup."""
    if warmup_steps <= 0:
        return _f32(weight)
    ratio = jnp.minimum(1.0, _f32(step) / warmup_steps)
    return weight * ratio**2


def margin_mse(student: jax.Array, teacher: jax.Array) -> jax.Array:
    """MarginMSE: mean over (b, j >= 1) of ((s_b0 - s_bj) - (t_b0 - t_bj))^2. Inputs [B, 1 + H]."""
    s, t = _f32(student), jax.lax.stop_gradient(_f32(teacher))
    return jnp.mean(((s[:, :1] - s[:, 1:]) - (t[:, :1] - t[:, 1:])) ** 2)


def kl_distill(student: jax.Array, teacher: jax.Array, temperature: float = 1.0) -> jax.Array:
    """mean_b KL(softmax(t_b / T) || softmax(s_b / T)) * T^2 over [B, 1 + H] scores."""
    s = _f32(student) / temperature
    t = jax.lax.stop_gradient(_f32(teacher)) / temperature
    log_p_t = jax.nn.log_softmax(t, axis=-1)
    log_p_s = jax.nn.log_softmax(s, axis=-1)
    kl = jnp.sum(jnp.exp(log_p_t) * (log_p_t - log_p_s), axis=-1)
    return jnp.mean(kl) * temperature**2


def js_divergence(logits_a: jax.Array, logits_b: jax.Array) -> jax.Array:
    """Jensen-Shannon divergence (natural log) between softmax rows: [..., N] -> [...]."""
    log_a = jax.nn.log_softmax(_f32(logits_a), axis=-1)
    log_b = jax.nn.log_softmax(_f32(logits_b), axis=-1)
    log_m = jnp.logaddexp(log_a, log_b) - jnp.log(2.0)
    kl_am = jnp.sum(jnp.exp(log_a) * (log_a - log_m), axis=-1)
    kl_bm = jnp.sum(jnp.exp(log_b) * (log_b - log_m), axis=-1)
    return 0.5 * (kl_am + kl_bm)


def xling_js(q_src: jax.Array, q_tgt: jax.Array, d: jax.Array, scale: float = 1.0) -> jax.Array:
    """Cross-lingual alignment (docs/methods.md, "The fine-tuning objective"): mean_p JS(P(. | src_p) || P(. | tgt_p)).

    P(. | q) = softmax over the documents `d` ([..., V], e.g. the batch documents) of
    scale * <q, d>. q_src / q_tgt are [P, V]: an English query and its target-language parallel.
    """
    docs = _f32(d).reshape(-1, d.shape[-1])
    return jnp.mean(js_divergence(scale * _f32(q_src) @ docs.T, scale * _f32(q_tgt) @ docs.T))


# Alignment stage (`align`): the target model's view of a target sentence against the frozen English
# source model's (the teacher's) view of its English parallel. The teacher side never gets a gradient.


def hidden_mse(student_hidden: jax.Array, student_mask: jax.Array, teacher_hidden: jax.Array,
               teacher_mask: jax.Array) -> jax.Array:
    """mean_{b, j} (pool(student)_bj - pool(teacher)_bj)^2 with pool the masked mean over tokens.

    student_hidden [B, Ls, d] / teacher_hidden [B, Lt, d] with their [B, L] masks: the two sides
    are different tokenisations of parallel sentences, so only sentence-level (pooled) vectors
    can be compared.
    """
    (b_s, *_, d_s), (b_t, *_, d_t) = student_hidden.shape, teacher_hidden.shape
    if (b_s, d_s) != (b_t, d_t):
        raise ValueError(f"hidden_mse: student {student_hidden.shape} and teacher {teacher_hidden.shape} "
                         "need the same batch size and hidden size")
    s = dense_pool(student_hidden, student_mask, pooling="mean", normalize=False)
    t = jax.lax.stop_gradient(dense_pool(teacher_hidden, teacher_mask, pooling="mean", normalize=False))
    return jnp.mean((s - t) ** 2)


def sparse_mse(student_vec: jax.Array, teacher_vec: jax.Array) -> jax.Array:
    """MILCO's sparsity-aware MSE: the mean of (s - t)^2 over the entries where s > 0 or t > 0.

    loss = sum_{b,v} m_bv (s_bv - t_bv)^2 / max(1, sum_{b,v} m_bv),  m = (s > 0) | (t > 0), over
    the whole batch [B, V] (0 when no entry is active). This is `compute_alignment_loss` of
    thongnt99/milco, milco/model/milco.py (commit cfa602d): F.mse_loss(s[m], t[m]). The entries
    where both vectors are zero (almost all of the vocabulary) would otherwise swamp the mean.
    """
    s, t = _f32(student_vec), jax.lax.stop_gradient(_f32(teacher_vec))
    if s.shape != t.shape:
        raise ValueError(f"sparse_mse: student {s.shape} and teacher {t.shape} differ")
    m = ((s > 0) | (t > 0)).astype(jnp.float32)
    return jnp.sum(m * (s - t) ** 2) / jnp.maximum(jnp.sum(m), 1.0)


def map_to_target_vocab(teacher_vec: jax.Array, copy_src, rows, cols, weights, target_size: int) -> jax.Array:
    """Teacher vectors [B, V_s] (source vocabulary) -> [B, V_t] (target vocabulary) through an alignment.

    out[:, t] = teacher[:, copy_src[t]] for a copied token (copy_src[t] >= 0), else
    sum_i w_ti teacher[:, i] over the alignment's (rows, cols, weights) entries of t (bridge/alignment.py),
    0 for a token without entries. A weighted sum rather than a max: a new token's vocabulary row and
    bias were initialised as the same convex combination of source rows, so at init its logit is
    exactly this combination of the source logits; the map is linear (a fixed sparse [V_s, V_t]
    matrix, here a gather + segment sum over its nnz entries, never dense) and keeps the scale. A max
    would give a token the full weight of any one constituent, however small its share.
    """
    t = jax.lax.stop_gradient(_f32(teacher_vec))
    copy_src = jnp.asarray(copy_src, jnp.int32)
    if copy_src.shape != (target_size,):
        raise ValueError(f"map_to_target_vocab: copy_src has shape {copy_src.shape}, "
                         f"expected ({target_size},)")
    copied = jnp.where(copy_src >= 0, jnp.take(t, jnp.maximum(copy_src, 0), axis=-1), 0.0)
    contrib = jnp.take(t, jnp.asarray(cols, jnp.int32), axis=-1) * _f32(weights)  # [B, nnz]
    new = jax.ops.segment_sum(contrib.T, jnp.asarray(rows, jnp.int32), num_segments=target_size,
                              indices_are_sorted=True).T
    return copied + new


def active_terms(w: jax.Array) -> jax.Array:
    """Mean number of non-zero entries per row of [..., V] (reported, not differentiated)."""
    w = w.reshape(-1, w.shape[-1])
    return jnp.mean(jnp.sum(w != 0, axis=-1).astype(jnp.float32))


@dataclasses.dataclass(frozen=True)
class LossSettings:
    """Resolved loss hyper-parameters (presets applied); hashable, so jit can close over it."""

    scale: float = 1.0
    lambda_q: float = 5e-5
    lambda_d: float = 3e-5
    flops_warmup_steps: int = 0
    l1_q: float = 0.0
    distill: str = "none"  # "none" | "margin_mse" | "kl"
    distill_weight: float = 1.0
    distill_temperature: float = 1.0
    xling_weight: float = 0.0


def loss_settings(config) -> LossSettings:
    """Build LossSettings from a validated run config (`config.loss`, `config.train.num_steps`).

    A preset fills lambda_q / lambda_d / flops_warmup_steps that are left None; values set
    explicitly win. sentence_transformers: q 5e-5, d 3e-5, warmup = num_steps // 3 (>= 1);
    splade_pp: q 3e-4, d 1e-4, T = 50k.
    """
    loss = config.loss
    lam_q, lam_d, warmup = PRESETS.get(loss.preset, (None, None, None))
    if loss.preset == "sentence_transformers":
        warmup = max(1, int(config.train.num_steps / 3))
    pick = lambda value, preset: preset if value is None else value  # noqa: E731
    return LossSettings(
        scale=float(loss.scale),
        lambda_q=float(pick(loss.lambda_q, lam_q)),
        lambda_d=float(pick(loss.lambda_d, lam_d)),
        flops_warmup_steps=int(pick(loss.flops_warmup_steps, warmup)),
        l1_q=float(loss.l1_q),
        distill=loss.distill,
        distill_weight=float(loss.distill_weight),
        distill_temperature=float(loss.distill_temperature),
        xling_weight=float(loss.xling_weight),
    )


def total_loss(settings: LossSettings, q: jax.Array, d: jax.Array, step, *,
               teacher_scores: jax.Array | None = None,
               xling: tuple[jax.Array, jax.Array] | None = None,
               ) -> tuple[jax.Array, dict[str, Any]]:
    """The training objective and its parts.

    loss = InfoNCE + lambda_q(t) FLOPS(q) + lambda_d(t) FLOPS(all docs, hard negatives included)
           + l1_q(t) L1(q) + distill_weight * distill(own scores, teacher_scores)
           + xling_weight * JS(xling[0] vs xling[1] over the batch documents)
    with lambda(t) = lambda * min(1, t / flops_warmup_steps)^2 (l1_q shares the warmup).
    q [B, V], d [B, 1 + H, V], step: scalar (traced is fine), teacher_scores [B, 1 + H],
    xling = (english query vectors [P, V], target-language query vectors [P, V]).
    Returns (scalar loss, metrics: scalar float32 arrays).
    """
    if d.ndim != 3 or d.shape[0] != q.shape[0] or d.shape[-1] != q.shape[-1]:
        raise ValueError(f"total_loss: expected q [B, V] and d [B, 1+H, V], got {q.shape} and {d.shape}")
    ranking, accuracy = info_nce(q, d, settings.scale)
    lam_q = quadratic_warmup(settings.lambda_q, step, settings.flops_warmup_steps)
    lam_d = quadratic_warmup(settings.lambda_d, step, settings.flops_warmup_steps)
    flops_q, flops_d = flops(q), flops(d)
    loss = ranking + lam_q * flops_q + lam_d * flops_d
    metrics = {"ranking": ranking, "accuracy": accuracy, "flops_q": flops_q, "flops_d": flops_d,
               "lambda_q": lam_q, "lambda_d": lam_d,
               "active_q": active_terms(q), "active_d": active_terms(d[:, 0])}
    if settings.l1_q:
        l1_q = l1(q)
        loss = loss + quadratic_warmup(settings.l1_q, step, settings.flops_warmup_steps) * l1_q
        metrics["l1_q"] = l1_q
    if settings.distill != "none":
        if teacher_scores is None:
            raise ValueError(f"total_loss: distill={settings.distill!r} needs teacher_scores")
        if teacher_scores.shape != d.shape[:2]:
            raise ValueError(f"total_loss: teacher_scores shape {teacher_scores.shape}, expected {d.shape[:2]}")
        student = own_scores(q, d)
        if settings.distill == "margin_mse":
            distill = margin_mse(student, teacher_scores)
        else:
            distill = kl_distill(student, teacher_scores, settings.distill_temperature)
        loss = loss + settings.distill_weight * distill
        metrics["distill"] = distill
    if settings.xling_weight:
        if xling is None:
            raise ValueError("total_loss: xling_weight > 0 needs xling=(q_src, q_tgt)")
        js = xling_js(xling[0], xling[1], d, settings.scale)
        loss = loss + settings.xling_weight * js
        metrics["xling_js"] = js
    metrics["loss"] = loss
    return loss, metrics
