"""The token-unique part of a row and norm matching (docs/methods.md, "identity_semantic"); pure numpy.

Coordinates are centred at the source mean row m: every source row shares m, so what tells tokens apart
is a row's deviation from it, and rho = the mean source deviation norm |E_s - m| is the size a row's
deviation needs to fire like a source token's (tied rows: input row = output row).
"""
from __future__ import annotations

import numpy as np


def unit_rows(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def mean_deviation_norm(rows: np.ndarray) -> tuple[np.ndarray, float]:
    """(m, rho): the mean row and the mean norm of the rows' deviations from it."""
    rows = np.asarray(rows, np.float64)
    m = rows.mean(0)
    return m, float(np.linalg.norm(rows - m, axis=1).mean())


def norm_match(rows: np.ndarray, source_rows: np.ndarray) -> np.ndarray:
    """Each row's deviation from the source mean row rescaled to rho (directions kept): undoes the
    shrinkage of averaging or of a ridge prediction, and stops longer rows from firing everywhere."""
    m, rho = mean_deviation_norm(source_rows)
    return m + rho * unit_rows(np.asarray(rows, np.float64) - m)


def orthogonal_residual(semantic: np.ndarray, noise: np.ndarray, weight: np.ndarray | float) -> np.ndarray:
    """Unit deviations sqrt(1 - w) c_hat + sqrt(w) r_hat: c_hat = the semantic deviation's direction,
    r_hat = the noise deviation with its component along c_hat removed, renormalised. The two parts are
    orthogonal, so w is exactly the share of the deviation's energy that is token-unique; w = 1 (or a
    zero semantic deviation) leaves the noise direction alone. semantic, noise: [n, d] deviations from
    the source mean; weight: scalar or [n]."""
    c = np.asarray(semantic, np.float64)
    w = np.broadcast_to(np.asarray(weight, np.float64), (len(c),)).copy()
    norm = np.linalg.norm(c, axis=1)
    w[norm <= 1e-12] = 1.0
    c_hat = unit_rows(c)
    r = np.asarray(noise, np.float64)
    r_hat = unit_rows(r - (r * c_hat).sum(1, keepdims=True) * c_hat)
    return np.sqrt(1.0 - w)[:, None] * c_hat + np.sqrt(w)[:, None] * r_hat
