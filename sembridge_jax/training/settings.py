"""Config sections of the training loop: `loss`, `train` (the retrieval stage), `mesh`, `checkpoint`, and
the adaptation stages run before it, in this order: `vocab_warmup`, `mlm`, `align` (training/stages.py)."""
from __future__ import annotations

from sembridge_jax.models.lora import TARGET_AXES
from sembridge_jax.schema import Field, Section, closest
from sembridge_jax.training.losses import DISTILL, PRESETS
from sembridge_jax.training.monitor import check_profile_steps
from sembridge_jax.training.objectives import ALIGN_LOSSES
from sembridge_jax.training.optim import DECAYS, TRAINABLE
from sembridge_jax.training.stages import STAGES, WARMUP_OBJECTIVES, needs_text


def _loss_rules(c):
    loss = c.loss
    for key in ("lambda_q", "lambda_d", "flops_warmup_steps"):
        if loss[key] is None and loss.preset == "none":
            yield f"loss.{key}", "must be set when loss.preset='none'"
    if loss.distill != "none" and not c.data.train.scores_field:
        yield "data.train.scores_field", f"must be set when loss.distill={loss.distill!r}"
    if loss.distill == "margin_mse" and c.data.train.num_hard_negatives < 1:
        yield "data.train.num_hard_negatives", "must be >= 1 for loss.distill='margin_mse'"
    if loss.xling_weight > 0 and not c.data.parallel.path:
        yield "data.parallel.path", "must be set when loss.xling_weight > 0"


LOSS = Section({
    "scale": Field(1.0, "InfoNCE logits = scale * <q, d> (SPLADE practice: 1)", gt=0.0),
    "preset": Field("sentence_transformers", "fills lambda_q / lambda_d / flops_warmup_steps left None",
                    choices=("none", *PRESETS)),
    "lambda_q": Field(None, "FLOPS weight on queries (None = the preset's)", type=float, optional=True, ge=0.0),
    "lambda_d": Field(None, "FLOPS weight on documents (None = the preset's)", type=float, optional=True, ge=0.0),
    "flops_warmup_steps": Field(None, "quadratic FLOPS warmup T (None = the preset's)", type=int, optional=True,
                                ge=0),
    "l1_q": Field(0.0, "Efficient-SPLADE L1 weight on queries (same warmup as lambda_q)", ge=0.0),
    "distill": Field("none", "distillation over teacher scores", choices=DISTILL),
    "distill_weight": Field(1.0, "weight of the distillation term", ge=0.0),
    "distill_temperature": Field(1.0, "kl: softmax temperature (loss scaled by T^2)", gt=0.0),
    "xling_weight": Field(0.0, "cross-lingual JS term weight (needs data.parallel.path)", ge=0.0),
}, rules=(_loss_rules,))


def _train_rules(c):
    t = c.train
    if t.batch_size % t.grad_accum_steps:
        yield "train.grad_accum_steps", f"must divide train.batch_size={t.batch_size}, got {t.grad_accum_steps}"
    if t.warmup_steps > t.num_steps:
        yield "train.warmup_steps", f"exceeds train.num_steps={t.num_steps}"
    if tuple(t.profile_steps) and t.profile_steps[-1] > t.num_steps:
        yield "train.profile_steps", f"stops after train.num_steps={t.num_steps}"


TRAIN = Section({
    "num_steps": Field(1000, "optimiser steps", ge=1),
    "batch_size": Field(32, "global batch (queries); split across processes and devices", ge=1),
    "learning_rate": Field(2e-5, "peak learning rate", gt=0.0),
    "warmup_steps": Field(100, "linear learning-rate warmup", ge=0),
    "decay": Field("linear", "learning rate after warmup", choices=DECAYS),
    "weight_decay": Field(0.01, "AdamW weight decay", ge=0.0),
    "clip_norm": Field(1.0, "global gradient-norm clip; 0 = off", ge=0.0),
    "grad_accum_steps": Field(1, "micro-batches per step (must divide batch_size)", ge=1),
    "trainable": Field("all", "'all' | 'vocab' (only vocabulary-row tensors)", choices=TRAINABLE),
    "lr_scales": Field((), "((path prefix, factor), ...): learning-rate factors by parameter path (first match)",
                       type=tuple),
    "average_every": Field(0, "the result is the mean of the trained parameters at steps N, 2N, ... and the last "
                           "(weight averaging along the run: lower variance between seeds); 0 = the last step's",
                           ge=0),
    "dropout": Field(False, "the retrieval loss sees the model with its config.json dropout rates, as Hugging Face's "
                     "train mode does (a fresh mask per step, from the seed and the step)", type=bool),
    "log_every": Field(10, "write metrics (means since the last write) every N steps", ge=1),
    "eval_every": Field(0, "evaluate on data.dev every N steps; 0 = only at the end", ge=0),
    "prefetch": Field(2, "batches tokenised and placed on the devices ahead by a background thread; 0 = inline",
                      ge=0),
    "profile_steps": Field((), "(start, stop): JAX profiler trace of steps start+1..stop into <workdir>/profile; "
                           "() = off", type=tuple, check=check_profile_steps),
}, rules=(_train_rules,))


def _check_axes(axes) -> str | None:
    names = []
    for axis in axes:
        if (not isinstance(axis, (tuple, list)) or len(axis) != 2 or not isinstance(axis[0], str)
                or isinstance(axis[1], bool) or not isinstance(axis[1], int) or not (axis[1] >= 1 or axis[1] == -1)):
            return f"entries must be (name, size >= 1 or -1), got {axis!r}"
        names.append(axis[0])
    if not names or len(set(names)) != len(names):
        return f"must name distinct axes, got {names}"
    if sum(1 for _, size in axes if size == -1) > 1:
        return "may hold at most one size -1"
    return None


def _mesh_rules(c):
    names = [a[0] for a in c.mesh.axes]
    for rule in c.mesh.rules:
        if not isinstance(rule, (tuple, list)) or len(rule) != 2 or not isinstance(rule[0], str):
            yield "mesh.rules", f"entries must be (logical_axis, mesh_axis | None), got {rule!r}"
            return
        for target in rule[1] if isinstance(rule[1], (tuple, list)) else (rule[1],):
            if target is not None and target not in names:
                yield "mesh.rules", (f"rule {rule!r} names mesh axis {target!r} not in mesh.axes "
                                     f"{names}{closest(str(target), names)}")


MESH = Section({
    # (name, size); one size may be -1 = the remaining devices. "data"/"fsdp" split the batch
    # (training/sharding.py BATCH_AXES); other axes split parameters only.
    "axes": Field((("data", -1), ("fsdp", 1), ("model", 1)), "mesh axes (name, size); one size may be -1",
                  check=_check_axes),
    # logical parameter axis (models/: vocab, embed, mlp, heads, kv, position, type) -> mesh axis,
    # a tuple of mesh axes, or None (replicated)
    "rules": Field((("vocab", "fsdp"), ("mlp", "model"), ("heads", "model")),
                   "logical parameter axis -> mesh axis (or tuple, or None)"),
}, rules=(_mesh_rules,))

CHECKPOINT = Section({
    "every_steps": Field(500, "save every N steps (and at the end)", ge=1),
    "keep": Field(2, "most recent checkpoints kept", ge=1),
    "async_save": Field(True, "write checkpoints in the background"),
    "restart_from": Field(None, "when the settings changed since the newest checkpoint: continue from this step "
                          "with the new ones (later steps set aside; e.g. a lower learning rate after a NaN stop)",
                          type=int, optional=True, ge=0),
})


# ----------------------------------------------------------------------------- adaptation stages


def _stage(learning_rate: float, batch_size: int, max_length: int, own: dict) -> dict:
    """The fields every adaptation stage has (its optimiser and input size), then its own."""
    return {
        "steps": Field(0, "optimiser steps of the stage; 0 = off", ge=0),
        "learning_rate": Field(learning_rate, "peak learning rate", gt=0.0),
        "warmup_steps": Field(0, "linear learning-rate warmup (then linear decay to 0)", ge=0),
        "batch_size": Field(batch_size, "global batch (texts or parallel pairs)", ge=1),
        "max_length": Field(max_length, "static text length in tokens, specials included", ge=3),
        **own,
    }


def _adapter() -> dict:
    return {
        "lora_rank": Field(0, "0 = train the whole model; > 0 = a LoRA adapter of that rank, merged into the "
                           "weights when the stage ends", ge=0),
        "lora_alpha": Field(16.0, "LoRA scale: the update is (A @ B) * alpha / rank", gt=0.0),
        "lora_targets": Field(("attention", "ffn"), "kernels the adapter adapts", type=tuple,
                              choices=tuple(TARGET_AXES)),
    }


def _stage_rules(c):
    for name in STAGES:
        stage = c[name]
        if stage.steps and stage.warmup_steps > stage.steps:
            yield f"{name}.warmup_steps", f"exceeds {name}.steps={stage.steps}"
        if stage.steps and "lora_targets" in stage and not tuple(stage.lora_targets):
            yield f"{name}.lora_targets", "must name at least one kind of kernel"
    for name in STAGES:
        if c[name].steps and needs_text(c, name) and not (c.data.text.path or c.data.text.name):
            yield "data.text.path", (f"must be set when {name}.steps > 0: the stage trains on raw "
                                     "target-language text (or set data.text.kind='hf' and data.text.name)")
    if c.align.steps and not c.data.parallel.path:
        yield "data.parallel.path", "must be set when align.steps > 0: the stage trains on parallel text"


MASK_PROB = Field(0.15, "masked-LM: share of each text's tokens predicted (BERT's 80/10/10 rule)", gt=0.0, le=0.5)

VOCAB_WARMUP = Section(_stage(1e-4, 32, 128, {
    "objective": Field("mlm", "mlm: masked LM on data.text; retrieval: the `train` loss on data.train",
                       choices=WARMUP_OBJECTIVES),
    "mask_prob": MASK_PROB,
}))
MLM = Section(_stage(5e-5, 32, 128, {"mask_prob": MASK_PROB, **_adapter()}))
ALIGN = Section(_stage(5e-5, 32, 64, {
    "loss": Field("sparse_mse", "distillation loss against the frozen source model on data.parallel",
                  choices=ALIGN_LOSSES),
    **_adapter(),
}), rules=(_stage_rules,))
