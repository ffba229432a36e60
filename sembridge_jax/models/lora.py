"""LoRA adapters (Hu et al. 2021) as a pure transform of the flat parameter dict (models/state.py).

An adapted kernel W, seen as a [fan_in, fan_out] matrix, becomes W + (A @ B) * alpha / rank with
A [fan_in, rank] and B [rank, fan_out]; B starts at zero, so a fresh adapter is exactly the base
model. Attention kernels are 3-D (query/key/value [d, heads, head_dim], out [heads, head_dim, d]):
their fan-in is the leading axes up to (query/key/value) or including (out) the split into heads,
so the row-major reshape of A @ B [fan_in, fan_out] is the kernel's own layout.

The trainer keeps the base parameters frozen and trains only the {path + ".lora_a" / ".lora_b"}
dict, calling `apply_lora` inside the jitted step; `merge_lora` (numpy) folds an adapter into the
weights for export, so the exported model is a plain model.
"""
from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sembridge_jax.models.state import ParamLayout

# Which kernels an adapter may target, by their logical axes (models/layers.py).
TARGET_AXES = {
    "attention": (("embed", "heads", "kv"), ("heads", "kv", "embed")),  # query/key/value, out
    "ffn": (("embed", "mlp"), ("mlp", "embed")),  # ffn_up, ffn_down
}
SUFFIX_A, SUFFIX_B = ".lora_a", ".lora_b"


def lora_targets(layout: ParamLayout, which: Sequence[str] = ("attention", "ffn")) -> dict[str, int]:
    """The adapted kernels: {path: number of leading axes that form the fan-in}, in path order.

    `which` picks groups of TARGET_AXES: "attention" (query, key, value, out of every layer) and
    "ffn" (ffn_up, ffn_down). Embeddings, the MLM head and vocabulary rows are never adapted.
    """
    unknown = sorted(set(which) - set(TARGET_AXES))
    if unknown or not which:
        raise ValueError(f"lora targets must be a non-empty subset of {tuple(TARGET_AXES)}, "
                         f"got {tuple(which)}")
    wanted = {axes for group in which for axes in TARGET_AXES[group]}
    targets = {}
    for path in sorted(layout.logical_axes):
        axes = layout.logical_axes[path]
        if axes in wanted:
            # The "embed" axis is the input when it comes first, else everything before it is.
            targets[path] = 1 if axes[0] == "embed" else len(axes) - 1
    if not targets:
        raise ValueError(f"lora: the model has no kernel of the kinds {tuple(which)}")
    return targets


def _check_rank(rank: int) -> None:
    if not isinstance(rank, (int, np.integer)) or rank <= 0:
        raise ValueError(f"LoRA rank must be a positive integer, got {rank!r}")


def _fans(shape: Sequence[int], n_in: int) -> tuple[int, int]:
    return int(np.prod(shape[:n_in])), int(np.prod(shape[n_in:]))


def init_lora(shapes: Mapping[str, Sequence[int]], targets: Mapping[str, int], rank: int, rng,
              dtype=jnp.float32) -> dict[str, jax.Array]:
    """A fresh adapter: {path.lora_a: [fan_in, rank], path.lora_b: [rank, fan_out] zeros}.

    A ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), the default of PEFT and of Microsoft's loralib
    (kaiming_uniform with a = sqrt(5)). `rng` is a jax PRNG key or an int seed; each path draws
    from its own key (folded in from the path), so adding a target leaves the others unchanged.
    """
    _check_rank(rank)
    key = jax.random.key(rng) if isinstance(rng, (int, np.integer)) else rng
    out = {}
    for path, n_in in targets.items():
        fan_in, fan_out = _fans(shapes[path], n_in)
        bound = 1.0 / np.sqrt(fan_in)
        sub = jax.random.fold_in(key, zlib.crc32(path.encode()))
        out[path + SUFFIX_A] = jax.random.uniform(sub, (fan_in, rank), dtype, -bound, bound)
        out[path + SUFFIX_B] = jnp.zeros((rank, fan_out), dtype)
    return out


def _adapted(base_params, lora_params, alpha: float, rank: int, xp):
    """base with every adapted kernel replaced by W + (A @ B) * alpha / rank, computed with `xp`."""
    _check_rank(rank)
    paths = sorted(k[: -len(SUFFIX_A)] for k in lora_params if k.endswith(SUFFIX_A))
    if len(lora_params) != 2 * len(paths) or any(p + SUFFIX_B not in lora_params for p in paths):
        raise ValueError(f"lora: expected matching {SUFFIX_A} / {SUFFIX_B} pairs, "
                         f"got {sorted(lora_params)[:6]}")
    out = dict(base_params)
    for path in paths:
        if path not in base_params:
            raise ValueError(f"lora: adapter for {path!r}, which is not a model parameter")
        w = base_params[path]
        a, b = lora_params[path + SUFFIX_A], lora_params[path + SUFFIX_B]
        if a.shape[1] != rank or b.shape[0] != rank or a.shape[0] * b.shape[1] != int(np.prod(w.shape)):
            raise ValueError(f"lora: {path} {tuple(w.shape)} cannot take A {tuple(a.shape)} "
                             f"@ B {tuple(b.shape)} at rank {rank}")
        delta = xp.matmul(a, b) * (alpha / rank)
        out[path] = (w + delta.reshape(w.shape)).astype(w.dtype)
    return out


def apply_lora(base_params: Mapping[str, jax.Array], lora_params: Mapping[str, jax.Array], alpha: float,
               rank: int) -> dict[str, jax.Array]:
    """The effective parameters {path: W + (A @ B) * alpha / rank}, other paths unchanged (jit-friendly)."""
    return _adapted(base_params, lora_params, alpha, rank, jnp)


def merge_lora(base_params: Mapping[str, np.ndarray], lora_params: Mapping[str, np.ndarray], alpha: float,
               rank: int) -> dict[str, np.ndarray]:
    """`apply_lora` on the host in numpy (float64 products), for export: a plain model's parameters."""
    base = {k: np.asarray(v) for k, v in base_params.items()}
    lora = {k: np.asarray(v, np.float64) for k, v in lora_params.items()}
    return _adapted(base, lora, alpha, rank, np)
