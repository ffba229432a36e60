"""The adaptation stages that run before retrieval fine-tuning, each one `trainer.fit` with its own
objective, data and trained parameters, in `<run_dir>/stages/<name>/` (checkpoints, metrics.jsonl,
TensorBoard, training_curves.png):

  vocab_warmup  only the vocabulary rows train (embeddings, decoder rows, bias), the encoder is frozen;
                masked LM on raw target text (`data.text`), or the retrieval loss on `data.train`;
  mlm           language adaptation: masked LM on raw target text, the whole model or a LoRA adapter;
  align         cross-lingual alignment on parallel text (`data.parallel`): the target model's view of
                each target sentence distilled from the frozen English source model's view of its
                English side (objectives.ALIGN_LOSSES), the whole model or its own LoRA adapter;
  retrieval     today's fine-tuning (the `train` section), in `<run_dir>` itself (pipeline.py).

A stage with `steps` = 0 is off. Each stage starts from the previous stage's final parameters, with any
adapter merged into the weights (so exports stay plain models). A finished stage (its newest checkpoint
is its last step) is not trained again on a rerun: its final parameters are read back from that
checkpoint; a killed one resumes inside itself (`fit` restores its step and data position).
`run_stages(..., after_stage=f)` calls `f(name, model, seconds)` after each stage: its training wall time,
None for a stage read back finished (no time is stored with a checkpoint).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import ml_collections

from sembridge_jax.data.examples import read_parallel_tsv
from sembridge_jax.data.text import load_texts
from sembridge_jax.models.state import split_model
from sembridge_jax.storage import as_path
from sembridge_jax.training import losses, objectives, trainer
from sembridge_jax.training.batches import TrainData
from sembridge_jax.training.checkpoint import CHECKPOINT_DIR, Checkpointer
from sembridge_jax.training.stage_data import ParallelBatches, TextBatches, teacher_targets

log = logging.getLogger(__name__)

STAGES = ("vocab_warmup", "mlm", "align")  # in the order they run, before retrieval (`train`)
WARMUP_OBJECTIVES = ("mlm", "retrieval")
STAGES_DIR = "stages"
RESTORED = "restored"  # the status of a stage read back finished (run_stage), besides fit's "done" / "preempted"


def needs_text(config, name: str) -> bool:
    """Whether stage `name` trains on the raw text of `data.text`."""
    return name == "mlm" or (name == "vocab_warmup" and config.vocab_warmup.objective == "mlm")


def active_stages(config) -> list[str]:
    """The adaptation stages with steps > 0, in running order."""
    return [name for name in STAGES if config[name].steps]


@dataclasses.dataclass
class StageInputs:
    """The texts the active stages train on, read once before any work."""

    texts: list[str] | None = None
    pairs: list[tuple[str, str]] | None = None  # (english, target)


def load_stage_inputs(config) -> StageInputs:
    """Read `data.text` / `data.parallel` when an active stage needs them: a missing or empty file or a
    malformed line fails here (data.text.DataError naming file:line), before the alignment or training."""
    active = active_stages(config)
    inputs = StageInputs()
    if any(needs_text(config, name) for name in active):
        t = config.data.text
        inputs.texts = load_texts(t.path, kind=t.kind, field=t.field, name=t.name, subset=t.subset, split=t.split,
                                  max_texts=t.max_texts, skip_bad_lines=t.skip_bad_lines)
    if "align" in active:
        p = config.data.parallel
        inputs.pairs, skipped = read_parallel_tsv(p.path, max_pairs=p.max_pairs,
                                                  skip_bad_lines=config.data.train.skip_bad_lines)
        if skipped:
            log.warning("%s: skipped %d bad parallel lines", p.path, skipped)
    for name in active:
        items = inputs.texts if needs_text(config, name) else inputs.pairs if name == "align" else None
        if items is not None and len(items) < config[name].batch_size:
            raise ValueError(f"{name}: {len(items)} {'texts' if needs_text(config, name) else 'parallel pairs'} "
                             f"are fewer than one batch of {name}.batch_size={config[name].batch_size}")
    return inputs


def stage_config(config, name: str) -> ml_collections.ConfigDict:
    """`config` with its `train` section set to stage `name`'s optimiser (what `trainer.fit` reads)."""
    stage = config[name]
    c = ml_collections.ConfigDict(config.to_dict())
    c.train.update(num_steps=stage.steps, learning_rate=stage.learning_rate, warmup_steps=stage.warmup_steps,
                   batch_size=stage.batch_size, decay="linear", grad_accum_steps=1, eval_every=0, profile_steps=(),
                   average_every=0,
                   trainable="vocab" if name == "vocab_warmup" else "all")
    return c


def adapter_of(config, name: str) -> trainer.Adapter | None:
    """The stage's LoRA adapter, or None when it trains its parameters themselves."""
    stage = config[name]
    rank = stage.get("lora_rank", 0)
    if not rank:
        return None
    return trainer.Adapter(int(rank), float(stage.lora_alpha), tuple(stage.lora_targets))


@dataclasses.dataclass
class Teacher:
    """The frozen English source model of the `align` stage and how its vocabulary maps onto the target's."""

    model: Any
    tokenizer: Any
    alignment: Any  # bridge.alignment.Alignment (copy_src, rows, cols, weights, target_size)


def stage_stream(config, name: str, inputs: StageInputs, tokenizer, teacher: Teacher | None = None):
    """(data, objective) of stage `name` under its stage config (`stage_config`)."""
    stage = config[name]
    if name == "vocab_warmup" and stage.objective == "retrieval":
        return (TrainData(config, tokenizer), trainer.splade_objective(losses.loss_settings(config)))
    if needs_text(config, name):
        data = TextBatches(inputs.texts, tokenizer, batch_size=stage.batch_size, max_length=stage.max_length,
                           mask_prob=stage.mask_prob, seed=config.seed)
        return data, objectives.mlm_objective(data.max_predictions)
    if teacher is None:
        raise ValueError("the align stage needs the source model as its teacher")
    english, target = zip(*inputs.pairs, strict=True)
    targets = teacher_targets(teacher.model, teacher.tokenizer, english, teacher.alignment,
                              max_length=stage.max_length)
    data = ParallelBatches(target, targets, tokenizer, batch_size=stage.batch_size, max_length=stage.max_length,
                           seed=config.seed)
    return data, objectives.align_objective(stage.loss)


def is_finished(run_dir, steps: int) -> bool:
    """Whether the newest checkpoint of the training run in `run_dir` (a stage or retrieval) is step `steps`."""
    if not (as_path(run_dir) / CHECKPOINT_DIR).exists():
        return False
    ckpt = Checkpointer(run_dir, read_only=True)
    try:
        return ckpt.latest_step() == steps
    finally:
        ckpt.close()


def finished_params(stage_dir, steps: int) -> dict | None:
    """The final parameters of a stage whose newest checkpoint is its last step, else None."""
    if not is_finished(stage_dir, steps):
        return None
    ckpt = Checkpointer(stage_dir, read_only=True)
    try:
        return ckpt.restore_params(steps)
    finally:
        ckpt.close()


def run_stage(config, name: str, model, stage_dir, inputs: StageInputs, tokenizer,
              teacher: Teacher | None = None, mesh=None) -> trainer.FitResult:
    """Train stage `name` from `model` in `stage_dir` (or read back its final parameters when it has finished)."""
    c = stage_config(config, name)
    adapter = adapter_of(config, name)
    done = finished_params(stage_dir, c.train.num_steps)
    if done is not None:
        log.info("stage %s: finished in %s, skipped", name, stage_dir)
        layout, _ = split_model(model)
        return trainer.FitResult(trainer.plain_model(layout, done, adapter), c.train.num_steps, RESTORED, {})
    data, objective = stage_stream(c, name, inputs, tokenizer, teacher)
    return trainer.fit(c, model, stage_dir, data, objective=objective, desc=name, stage=name, adapter=adapter,
                       mesh=mesh)


def run_stages(config, model, run_dir, inputs: StageInputs, tokenizer, teacher: Teacher | None = None,
               mesh=None, after_stage: Callable[[str, Any, float | None], None] | None = None,
               ) -> tuple[Any, trainer.FitResult | None]:
    """Every active stage in order from `model`: (the model after the last, None), or (None, the result of
    the stage a SIGTERM stopped). `after_stage(name, model, seconds)`: see the module docstring."""
    for name in active_stages(config):
        t0 = time.perf_counter()
        result = run_stage(config, name, model, as_path(run_dir) / STAGES_DIR / name, inputs, tokenizer,
                           teacher, mesh)
        if result.status == "preempted":
            return None, result
        model = result.model
        if after_stage is not None:
            after_stage(name, model, None if result.status == RESTORED else time.perf_counter() - t0)
    return model, None
