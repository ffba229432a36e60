"""Diagnostics that explain an initialisation (docs/methods.md, "Diagnostics"); pure numpy.

- self-activation (lexical identity): with tied rows a token can fire on itself only if its row is
  distinct. For each encoded text: the share of its own target tokens that are active in its SPLADE
  vector (`selfact_share`, also over new tokens only: `selfact_share_new`), and the share of the
  vector's mass on them (`selfact_mass`);
- distinctness of the new rows: pairwise cosines (mean and 99th percentile) of a sample, raw and after
  removing the source mean row (`cosc_*`: the mean direction is shared by every row, source rows too),
  effective rank (Roy & Vetterli 2007) of the centred sample, norm ratio new / source rows (raw and of
  the deviations from the source mean);
- output side: the MLM bias of new vs copied tokens.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def text_token_ids(tokenizer, texts: list[str], max_length: int) -> list[np.ndarray]:
    """Per text, the distinct target ids the encoder sees (truncated to max_length with the special
    tokens, which are then dropped), sorted."""
    special = set(tokenizer.all_special_ids)
    enc = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    return [np.array(sorted(set(ids) - special), np.int64) for ids in enc]


def self_activation(token_ids: list[np.ndarray], matrix, new_mask: np.ndarray | None = None) -> dict:
    """Means over texts (row i of `matrix` [N, V] encodes the text whose distinct token ids are
    token_ids[i]) of selfact_share = |own & active| / |own| and selfact_mass = the vector's weight on its
    own tokens / its total weight; with new_mask [V] also selfact_share_new over the new tokens of each
    text. Texts without tokens (or without new tokens) are left out of that share's mean."""
    x = sp.csr_matrix(matrix)
    x.eliminate_zeros()
    share, mass, share_new = [], [], []
    for i, own in enumerate(token_ids):
        lo, hi = x.indptr[i], x.indptr[i + 1]
        active, values = x.indices[lo:hi], x.data[lo:hi]
        keep = values > 0
        active, values = active[keep], values[keep]
        if len(own):
            hit = np.isin(own, active)
            share.append(hit.mean())
            if new_mask is not None and new_mask[own].any():
                share_new.append(hit[new_mask[own]].mean())
        total = values.sum()
        mass.append(values[np.isin(active, own)].sum() / total if total > 0 else 0.0)
    out = {"selfact_share": _mean(share), "selfact_mass": _mean(mass)}
    if new_mask is not None:
        out["selfact_share_new"] = _mean(share_new)
    return out


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def _cosine_stats(x: np.ndarray) -> tuple[float, float]:
    u = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    c = (u @ u.T)[np.triu_indices(len(u), 1)]
    return float(c.mean()), float(np.percentile(c, 99))


def effective_rank(x: np.ndarray) -> float:
    """exp(entropy of the singular values normalised to sum 1) (Roy & Vetterli 2007)."""
    s = np.linalg.svd(np.asarray(x, np.float64), compute_uv=False)
    p = s[s > 0] / s.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def distinctness(new_rows: np.ndarray, source_rows: np.ndarray, *, sample: int = 2000, seed: int = 0) -> dict:
    """Distinctness of the new rows [n, d] against the source rows [V_s, d], on a seeded sample of at most
    `sample` new rows: cos_mean / cos_p99 (pairwise, i < j), the same after subtracting the source mean
    row (cosc_*), eff_rank of the centred sample, norm_ratio = mean |new| / mean |source| and
    devnorm_ratio = the same for the deviations from the source mean row."""
    x = np.asarray(new_rows, np.float64)
    if len(x) < 2:
        raise ValueError(f"distinctness needs at least 2 new rows, got {len(x)}")
    if len(x) > sample:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), sample, replace=False))]
    s = np.asarray(source_rows, np.float64)
    m = s.mean(0)
    cos_mean, cos_p99 = _cosine_stats(x)
    cosc_mean, cosc_p99 = _cosine_stats(x - m)
    return {"cos_mean": cos_mean, "cos_p99": cos_p99, "cosc_mean": cosc_mean, "cosc_p99": cosc_p99,
            "eff_rank": effective_rank(x - m),
            "norm_ratio": float(np.linalg.norm(x, axis=1).mean() / np.linalg.norm(s, axis=1).mean()),
            "devnorm_ratio": float(np.linalg.norm(x - m, axis=1).mean() / np.linalg.norm(s - m, axis=1).mean())}


def bias_stats(bias: np.ndarray, copy_src: np.ndarray) -> dict:
    """Mean, std, min and max of the target bias [V_t] over new and over copied tokens."""
    out = {}
    b = np.asarray(bias, np.float64)
    for name, mask in (("new", copy_src < 0), ("copied", copy_src >= 0)):
        v = b[mask]
        if len(v):
            out.update({f"bias_{name}_mean": float(v.mean()), f"bias_{name}_std": float(v.std()),
                        f"bias_{name}_min": float(v.min()), f"bias_{name}_max": float(v.max())})
    return out


def row_diagnostics(source_rows: dict, target_rows: dict, copy_src: np.ndarray, source_size: int | None = None, *,
                    sample: int = 2000, seed: int = 0) -> dict:
    """Distinctness and bias statistics from the vocabulary tensors of the source and the initialised
    model (models.vocab.vocab_params: path -> [V, ...]): the input embedding rows (the first tensor that
    is not a bias) and the MLM output bias when the model has one. source_size: the source rows the
    alignment uses (its tokenizer's; a model may have more rows than its tokenizer has tokens)."""
    emb = next(p for p, v in target_rows.items() if p[-1] != "bias" and np.ndim(v) == 2)
    new = np.flatnonzero(copy_src < 0)
    out = {"rows": "/".join(map(str, emb))}
    if len(new) >= 2:
        out.update(distinctness(target_rows[emb][new], source_rows[emb][:source_size], sample=sample, seed=seed))
    bias = next((p for p in target_rows if p[-1] == "bias"), None)
    if bias is not None:
        out.update(bias_stats(target_rows[bias], copy_src))
    return out
