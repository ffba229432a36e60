"""English-inclination metrics for a mixed pool of English and target-language documents
(Hong et al., arXiv 2604.05684).

Every query has parallel relevant documents (the same page in both languages). From the 1-based rank of
each of them in the full ranking of the pool:
  Max@R      = the worst of those ranks, i.e. the depth at which ALL parallel relevant documents have been
               retrieved (lower is better); reported as the mean over queries;
  Complete@K = the share of queries whose parallel relevant documents are ALL in the top K.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def max_rank(ranks: Mapping[str, Sequence[int]]) -> dict[str, int]:
    """Query id -> worst rank among its relevant documents."""
    out = {}
    for q, r in ranks.items():
        if len(r) == 0:
            raise ValueError(f"query {q!r} has no relevant documents to rank")
        out[q] = int(np.max(r))
    return out


def inclination_metrics(ranks: Mapping[str, Sequence[int]], complete_at: Sequence[int] = (10, 100)) -> dict[str, float]:
    """{"Max@R": mean worst rank, "Complete@K": share of queries with all relevant docs in the top K, ...}."""
    worst = np.array(list(max_rank(ranks).values()), dtype=np.float64)
    out = {"Max@R": float(worst.mean())}
    out.update({f"Complete@{k}": float((worst <= k).mean()) for k in complete_at})
    return out
