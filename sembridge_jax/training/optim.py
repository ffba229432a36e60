"""The optimiser: AdamW with warmup + decay, global-norm clipping, frozen-parameter masks and weight
decay by parameter role (`decays`).

Parameters are a flat ``{path: array}`` dict (paths joined with "."), so masks are plain dicts.
Gradient accumulation is not an optax wrapper here: the train step scans over micro-batches
(see ``trainer.make_train_step``) so one call = one optimiser step.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import optax

DECAYS = ("linear", "cosine", "constant")
TRAINABLE = ("all", "vocab")


def learning_rate_schedule(
    learning_rate: float, num_steps: int, warmup_steps: int = 0, decay: str = "linear"
) -> optax.Schedule:
    """Linear warmup from 0 over ``warmup_steps``, then ``decay`` to 0 at ``num_steps`` (or constant)."""
    if decay not in DECAYS:
        raise ValueError(f"train.decay must be one of {DECAYS}, got {decay!r}")
    if not 0 <= warmup_steps <= num_steps:
        raise ValueError(f"train.warmup_steps={warmup_steps} must lie in [0, train.num_steps={num_steps}]")
    rest = max(num_steps - warmup_steps, 1)
    if decay == "linear":
        after = optax.linear_schedule(learning_rate, 0.0, rest)
    elif decay == "cosine":
        after = optax.cosine_decay_schedule(learning_rate, rest)
    else:
        after = optax.constant_schedule(learning_rate)
    if warmup_steps == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, learning_rate, warmup_steps), after], [warmup_steps])


def trainable_mask(
    logical_axes: Mapping[str, Sequence[str | None] | None], trainable: str = "all"
) -> dict[str, bool]:
    """Which parameters train. ``"all"``; ``"vocab"``: only vocabulary-row tensors (first logical
    axis "vocab": word embeddings, untied decoder, MLM bias), e.g. to warm up the new rows first."""
    if trainable == "all":
        return {k: True for k in logical_axes}
    if trainable == "vocab":
        mask = {k: bool(names) and names[0] == "vocab" for k, names in logical_axes.items()}
        if not any(mask.values()):
            raise ValueError("train.trainable='vocab': the model has no parameter with logical axis 'vocab' first")
        return mask
    raise ValueError(f"train.trainable must be 'all' or 'vocab', got {trainable!r}")


def decays(path: str) -> bool:
    """Whether the parameter at ``path`` ("layers.0.attention.query_bias") takes weight decay, by its
    role: the recipe of the Hugging Face / sentence-transformers Trainer (``get_decay_parameter_names``:
    every parameter except biases and normalisation layers), whatever the tensor's rank.

    No decay: biases of any rank (``bias``, ``*_bias``: the [heads, head_dim] q/k/v biases, the MLM
    output bias over the vocabulary) and the LayerNorm scales and offsets (modules named ``norm`` or
    ``*_norm``). Decay: every other weight, embeddings (word, position, token type) and the untied
    MLM decoder included, as that recipe does."""
    *module, name = path.split(".")
    is_bias = name == "bias" or name.endswith("_bias")
    in_norm = bool(module) and (module[-1] == "norm" or module[-1].endswith("_norm"))
    return not (is_bias or in_norm)


def weight_decay_mask(paths: Iterable[str]) -> dict[str, bool]:
    """``{path: decays(path)}`` for the flat parameter paths (the AdamW ``mask``)."""
    return {k: decays(k) for k in paths}


def make_optimizer(
    train_cfg,
    shapes: Mapping[str, Sequence[int]],
    logical_axes: Mapping[str, Sequence[str | None] | None],
    trainable: str | None = None,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """AdamW (+ clipping) on the trainable parameters, zero updates (and no Adam state) on frozen ones.

    Reads ``train.{learning_rate,num_steps,warmup_steps,decay,weight_decay,clip_norm,trainable,lr_scales}``;
    ``trainable`` overrides ``train.trainable`` (``trainer.fit`` passes only the trained parameters, "all").
    Returns the transformation and its learning-rate schedule (for logging).
    """
    schedule = learning_rate_schedule(
        train_cfg.learning_rate, train_cfg.num_steps, train_cfg.warmup_steps, train_cfg.decay
    )
    parts = []
    if train_cfg.clip_norm and train_cfg.clip_norm > 0:
        parts.append(optax.clip_by_global_norm(train_cfg.clip_norm))
    decay = weight_decay_mask(shapes)
    mask = trainable_mask(logical_axes, trainable or train_cfg.get("trainable", "all"))
    scales = {k: lr_scale(k, train_cfg.get("lr_scales", ())) for k in shapes}
    if set(scales.values()) != {1.0}:
        labels = {k: f"x{scales[k]}" if mask[k] else "frozen" for k in shapes}
        groups = {f"x{f}": optax.adamw(lambda step, f=f: f * schedule(step), weight_decay=train_cfg.weight_decay,
                                       mask={k: decay[k] and labels[k] == f"x{f}" for k in shapes})
                  for f in set(scales.values())}
        # frozen gradients zeroed, one global-norm clip over the rest, then each group's AdamW at its own rate
        keep = optax.multi_transform({**{g: optax.identity() for g in groups}, "frozen": optax.set_to_zero()}, labels)
        return optax.chain(keep, *parts, optax.multi_transform({**groups, "frozen": optax.set_to_zero()}, labels)), \
            schedule
    parts.append(optax.adamw(schedule, weight_decay=train_cfg.weight_decay, mask=decay))
    adamw = optax.chain(*parts)
    if all(mask.values()):
        return adamw, schedule
    labels = {k: "train" if m else "frozen" for k, m in mask.items()}
    return optax.multi_transform({"train": adamw, "frozen": optax.set_to_zero()}, labels), schedule


def lr_scale(path: str, scales) -> float:
    """The learning-rate factor of the parameter at ``path``: the first ``(prefix, factor)`` of ``scales``
    whose prefix is the path or a leading part of it ("layers" matches "layers.0.ffn_up.kernel"), else 1."""
    return next((float(f) for prefix, f in scales if path == prefix or path.startswith(prefix + ".")), 1.0)
