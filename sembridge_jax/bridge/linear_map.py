"""Linear maps from the bridge space to a model's rows (docs/methods.md, "ridge" / "procrustes"); pure numpy.

Fitted on pairs (bridge vector x_i, model row y_i) with an intercept (both sides centred), in float64,
accumulating the [D, D] and [D, d] cross products over blocks of rows (memory O(D (D + d))):
  ridge:      W = (Xc' Xc + lambda I)^-1 Xc' Yc                    (Mikolov et al. 2013 with a ridge)
  procrustes: W = s Q, Q = U V' from the SVD U S V' of Xc' Yc     (orthogonal Procrustes, Schoenemann
              1966; Smith et al. 2017), s = trace(S) / |Xc|_F^2   (the least-squares scale)
Prediction: y = x W + b with b = mean(y) - mean(x) W.
"""
from __future__ import annotations

import numpy as np

MAPS = ("ridge", "procrustes")


def _cross_products(x: np.ndarray, y: np.ndarray, block: int):
    mx, my = x.mean(0, dtype=np.float64), y.mean(0, dtype=np.float64)
    xx = np.zeros((x.shape[1], x.shape[1]))
    xy = np.zeros((x.shape[1], y.shape[1]))
    for s in range(0, len(x), block):
        xb = np.asarray(x[s:s + block], np.float64) - mx
        xx += xb.T @ xb
        xy += xb.T @ (np.asarray(y[s:s + block], np.float64) - my)
    return mx, my, xx, xy


def fit_map(x: np.ndarray, y: np.ndarray, kind: str, *, ridge_lambda: float = 1.0, block: int = 8192
            ) -> tuple[np.ndarray, np.ndarray]:
    """(W [D, d], b [d]) of the `kind` map ("ridge" | "procrustes") fitted on x [n, D] -> y [n, d]."""
    if kind not in MAPS:
        raise ValueError(f"map must be one of {MAPS}, got {kind!r}")
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"fit_map: need at least 2 paired rows, got x {np.shape(x)} and y {np.shape(y)}")
    mx, my, xx, xy = _cross_products(x, y, block)
    if kind == "ridge":
        w = np.linalg.solve(xx + ridge_lambda * np.eye(len(xx)), xy)
    else:
        u, s, vt = np.linalg.svd(xy, full_matrices=False)
        w = (s.sum() / max(np.trace(xx), 1e-30)) * (u @ vt)
    return w, my - mx @ w


def apply_map(x: np.ndarray, w: np.ndarray, b: np.ndarray, *, block: int = 8192) -> np.ndarray:
    """x W + b, in blocks of rows (float64)."""
    out = np.empty((len(x), w.shape[1]))
    for s in range(0, len(x), block):
        out[s:s + block] = np.asarray(x[s:s + block], np.float64) @ w + b
    return out
