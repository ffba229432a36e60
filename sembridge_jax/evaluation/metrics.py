"""Ranking metrics (nDCG@k, R@k, RR@k, P@k with trec_eval conventions), sparsity statistics and FLOPS.

Measure names follow ir-measures ("nDCG@10", "R@100", "RR@10" = MRR@10, "P@10"). These four are computed
here directly from the ranked lists, so our tie order is the one scored; any other ir-measures name is
passed to ir-measures with rank-derived scores (its own tie-breaking would otherwise reorder ties).
"""
from __future__ import annotations

import re

import ir_measures
import numpy as np
import scipy.sparse as sp

from sembridge_jax.schema import closest

Run = dict[str, list[str]]  # query id -> doc ids, best first
Qrels = dict[str, dict[str, int]]

DEFAULT_MEASURES = ("nDCG@10", "R@100", "RR@10")
_OWN = re.compile(r"^(nDCG|R|RR|P)@(\d+)$")


def measure_problem(name: str) -> str | None:
    """Why `name` is not a measure the evaluator computes (ours, else any ir-measures name), or None."""
    if _OWN.match(name):
        return None
    try:
        ir_measures.parse_measure(name)
    except Exception as e:  # ir-measures raises NameError / ValueError / SyntaxError for bad names
        return f"unknown measure {name!r} ({e}){closest(re.split(r'[@(]', name)[0], ir_measures.measures.registry)}"
    return None


def _per_query(kind: str, k: int, ranked: list[str], rels: dict[str, int]) -> float:
    top = ranked[:k]
    gains = np.array([max(rels.get(d, 0), 0) for d in top], dtype=np.float64)
    n_rel = sum(1 for g in rels.values() if g > 0)
    if kind == "nDCG":
        disc = 1.0 / np.log2(np.arange(2, k + 2))
        ideal = np.sort([g for g in rels.values() if g > 0])[::-1][:k]
        return float(gains @ disc[: len(gains)] / (ideal @ disc[: len(ideal)]))
    if kind == "R":
        return float((gains > 0).sum() / n_rel)
    if kind == "P":
        return float((gains > 0).sum() / k)
    hit = np.flatnonzero(gains > 0)
    return float(1.0 / (hit[0] + 1)) if hit.size else 0.0


def per_query_metrics(qrels: Qrels, run: Run, measures=DEFAULT_MEASURES) -> dict[str, dict[str, float]]:
    """measure -> query id -> value, over the queries of `qrels` with at least one relevant doc
    (a query missing from `run` scores 0)."""
    judged = {q: r for q, r in qrels.items() if any(g > 0 for g in r.values())}
    out: dict[str, dict[str, float]] = {}
    others = []
    for m in measures:
        match = _OWN.match(m)
        if match is None:
            others.append(m)
            continue
        kind, k = match.group(1), int(match.group(2))
        out[m] = {q: _per_query(kind, k, run.get(q, []), rels) for q, rels in judged.items()}
    if others:
        out.update(_ir_measures_per_query(judged, run, others))
    return out


def _ir_measures_per_query(qrels: Qrels, run: Run, names: list[str]) -> dict[str, dict[str, float]]:
    try:
        parsed = [ir_measures.parse_measure(n) for n in names]
    except Exception as e:  # ir-measures raises several types for bad names
        raise ValueError(f"unknown measure in {names}: {e}") from None
    scored = {q: {d: float(len(docs) - i) for i, d in enumerate(docs)} for q, docs in run.items()}
    name_of = dict(zip(parsed, names, strict=True))
    out = {n: {q: 0.0 for q in qrels} for n in names}
    for m in ir_measures.iter_calc(parsed, qrels, scored):
        out[name_of[m.measure]][m.query_id] = float(m.value)
    return out


def mean_metrics(qrels: Qrels, run: Run, measures=DEFAULT_MEASURES) -> dict[str, float]:
    """measure -> mean over judged queries."""
    return {m: float(np.mean(list(v.values()))) for m, v in per_query_metrics(qrels, run, measures).items()}


def active_dims(x: sp.csr_matrix) -> float:
    """Average number of non-zero dimensions per row."""
    return float(x.getnnz(axis=1).mean()) if x.shape[0] else 0.0


def activation_rate(x: sp.csr_matrix) -> np.ndarray:
    """p(v): fraction of rows where dimension v is non-zero, [V] float64."""
    x = x.tocsr()
    x.eliminate_zeros()
    return np.bincount(x.indices, minlength=x.shape[1]) / max(x.shape[0], 1)


def flops(queries: sp.csr_matrix, docs: sp.csr_matrix) -> float:
    """Expected multiplications per query-document pair, sum_v p_q(v) p_d(v) (Paria et al. 2020; SPLADE)."""
    if queries.shape[1] != docs.shape[1]:
        raise ValueError(f"query vocab {queries.shape[1]} != document vocab {docs.shape[1]}")
    return float(activation_rate(queries) @ activation_rate(docs))
