"""The whole job of `train.py`: for the init method `config.init.method` and each of `config.compare.methods`,

1. build (or load the cached) vocabulary alignment of the target tokenizer onto the source model
   (process 0 builds, every process loads; `<workdir>/alignments/<method>/`);
2. apply it to the source model (embeddings, MLM decoder rows and bias);
3. evaluate zero-shot on the held-out set (`config.eval`);
4. run the adaptation stages that are on (`vocab_warmup`, `mlm`, `align`; training/stages.py) in
   `<run_dir>/stages/<name>/`, then fine-tune for retrieval (`training.trainer.fit`) in `<run_dir>`:
   `<workdir>` for the main method and `<workdir>/compare/<method>/` for the others;
5. evaluate again; export the main model to `<workdir>/export/` (Hugging Face + SparseEncoder).
With `model.query_encoder = "idf"` every evaluation encodes the queries with the IDF weights of
`model.idf_corpus` (`data.idf.query_weights_for`) and the export holds them (idf.json); training is the same.
`run` returns the table of zero-shot and fine-tuned metrics per method (None when preempted). With
`eval.after_stages` each active stage is evaluated too ('<stage> <metric>' columns) and each stage's training
wall time is recorded ('<stage>_s', 'retrieval_s'; None for a stage that had already finished: a rerun reads
it back from its checkpoint, which stores no time).

With several processes every process runs every step (SPMD): the evaluations and the export gather the
sharded parameters (`host_model`, a collective all processes join); only process 0 writes files.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from sembridge_jax.api import SparseEncoder
from sembridge_jax.bridge.alignment import Alignment
from sembridge_jax.bridge.apply import apply_alignment
from sembridge_jax.bridge.build import alignment_kwargs, alignment_settings, build_alignment
from sembridge_jax.config import check_lengths
from sembridge_jax.data.idf import query_weights_for
from sembridge_jax.data.retrieval import load_eval_dataset
from sembridge_jax.evaluation.encode import CorpusEncoder
from sembridge_jax.evaluation.evaluator import EvalSettings, evaluate_encoder
from sembridge_jax.evaluation.mining import miner_from_config
from sembridge_jax.export.writer import export_to_hf
from sembridge_jax.hf.load import load_pretrained
from sembridge_jax.hf.tokenizer import load_tokenizer
from sembridge_jax.models.state import merge_model, split_model
from sembridge_jax.schema import settings_digest
from sembridge_jax.storage import as_path
from sembridge_jax.training import stages, trainer
from sembridge_jax.training.batches import TrainData
from sembridge_jax.training.checkpoint import save_model_spec
from sembridge_jax.training.distributed import barrier, is_main_process, run_on_main_process
from sembridge_jax.training.run_settings import artifact_is_current, run_settings

log = logging.getLogger(__name__)
EXPORT_SETTINGS = "sembridge_settings.json"  # in the export folder: what the exported model was trained with


def alignment_for(config, method: str, workdir):
    """The cached alignment of `method` (built once, on process 0). Its metadata records the settings that
    determine it (`alignment_settings`) and their hash: a cached one built with other settings is rebuilt,
    or refused under resume_policy "refuse"."""
    settings = alignment_settings(config, method)
    path = workdir / "alignments" / method
    recorded = json.loads((path / "alignment.json").read_text()).get("settings") if path.exists() else None
    reuse = not path.exists() or artifact_is_current(f"alignment {path}", recorded, settings, config.resume_policy)

    def build(out):
        alignment = build_alignment(config.source, config.target_tokenizer, **alignment_kwargs(config, method))
        alignment.metadata.update(settings=settings, settings_hash=settings_digest(settings))
        alignment.save(out)

    return run_on_main_process(build, path, load_fn=Alignment.load, reuse=reuse)


def host_model(model):
    """The model with every parameter fully on this host. With several processes this is a collective that
    every process must call: parameters sharded over the global mesh (the trainer's state) are gathered;
    host-local ones (a model before training: each process holds the same full copy) are kept as they are,
    since gathering those would concatenate the processes' copies."""
    if jax.process_count() == 1:
        return model
    layout, params = split_model(model)
    sharded = {k: v for k, v in params.items() if isinstance(v, jax.Array) and not v.is_fully_addressable}
    return merge_model(layout, {**params, **multihost_utils.process_allgather(sharded, tiled=True)})


def make_evaluator(config, tokenizer, dataset, cache_dir, query_weights=None):
    """`evaluate(model, name) -> metrics row` on `dataset` (encode, retrieve, score); queries through
    `query_weights` when given."""
    settings = EvalSettings(
        measures=tuple(config.eval.metrics), depth=config.eval.k, batch_size=config.eval.batch_size,
        query_max_length=config.model.max_query_length, doc_max_length=config.model.max_doc_length,
        query_top_k=config.eval.query_top_k, doc_top_k=config.eval.doc_top_k,
        cache_dir=str(cache_dir) if cache_dir else None,
    )

    def evaluate(model, name: str) -> dict:
        encoder = SparseEncoder(host_model(model), tokenizer, query_weights=query_weights)
        return evaluate_encoder(CorpusEncoder(encoder), dataset, settings, name)

    return evaluate


def load_dataset(spec):
    """The benchmark of a config section with beir / split / subset / corpus / max_queries / max_docs."""
    return load_eval_dataset(spec.beir, split=spec.split, subset=spec.subset, corpus=spec.corpus,
                             max_queries=spec.max_queries, max_docs=spec.max_docs)


@dataclasses.dataclass
class Job:
    """What every method of the run shares: the config, source model, target tokenizer and evaluators."""

    config: object
    source_model: object
    source_tokenizer: object
    target_tokenizer: object
    stage_inputs: stages.StageInputs  # raw text / parallel pairs of the adaptation stages
    query_weights: np.ndarray | None  # inference-free queries (model.query_encoder = "idf")
    evaluate: object  # (model, name) -> row, or None without config.eval.beir
    dev_evaluate: object  # (model, name) -> row, or None without a dev set / eval_every


def prepare(config) -> Job:
    """Load the stages' texts (first: bad data fails before any work), the source model, the target
    tokenizer and the evaluation sets of a validated config."""
    workdir = as_path(config.workdir)
    stage_inputs = stages.load_stage_inputs(config)
    source_model, source_tokenizer, _ = load_pretrained(
        config.source, dtype=config.model.dtype, splade_pooling=config.model.splade_pooling,
        splade_chunk_size=config.model.splade_chunk_size, remat_policy=config.model.remat_policy,
    )
    check_lengths(config, source_model.config.max_tokens)  # a hub source is only known once loaded
    target_tokenizer = load_tokenizer(config.target_tokenizer)
    weights = query_weights_for(config, target_tokenizer, len(target_tokenizer))  # the transferred vocabulary
    evaluate = dev_evaluate = None
    if config.eval.beir:
        evaluate = make_evaluator(config, target_tokenizer, load_dataset(config.eval), workdir / "eval_cache", weights)
    if config.data.dev.beir and config.train.eval_every:
        dev_evaluate = make_evaluator(config, target_tokenizer, load_dataset(config.data.dev), None, weights)
    return Job(config, source_model, source_tokenizer, target_tokenizer, stage_inputs, weights, evaluate,
               dev_evaluate)


def run_method(job: Job, method: str, run_dir):
    """Align, evaluate zero-shot, adapt (stages), fine-tune, evaluate: one row of the final table (or None if
    preempted)."""
    config = job.config
    alignment = alignment_for(config, method, as_path(config.workdir))
    model = apply_alignment(job.source_model, alignment, bias_init=config.init.bias_init,
                            target_tokenizer=job.target_tokenizer)
    if is_main_process():
        save_model_spec(run_dir, model.config, job.target_tokenizer)
    metrics = tuple(config.eval.metrics)
    # Evaluations are not stored: a rerun recomputes them from the encoding cache (<workdir>/eval_cache).
    zero = job.evaluate(model, f"{method} zero-shot") if job.evaluate else {}
    after, seconds = {}, {}  # eval.after_stages: {stage: metrics row}, {stage: training wall time or None}

    def after_stage(name, stage_model, stage_s):
        after[name] = job.evaluate(stage_model, f"{method} after {name}") if job.evaluate else {}
        seconds[name] = stage_s

    hook = after_stage if config.eval.after_stages else None
    teacher = stages.Teacher(job.source_model, job.source_tokenizer, alignment)
    model, stopped = stages.run_stages(config, model, run_dir, job.stage_inputs, job.target_tokenizer, teacher,
                                       after_stage=hook)
    if stopped is not None:
        return None, stopped
    data = TrainData(config, job.target_tokenizer, miner=miner_from_config(config))
    if data.skipped:
        log.warning("%s: skipped %d bad training records", data.source, data.skipped)
    dev = None
    if job.dev_evaluate:
        dev = lambda m: {k: v for k, v in job.dev_evaluate(m, "dev").items() if k in metrics}  # noqa: E731
    restored = hook is not None and stages.is_finished(run_dir, config.train.num_steps)
    t0 = time.perf_counter()
    result = trainer.fit(config, model, run_dir, data, evaluate=dev, desc=method, method=method)
    if result.status == "preempted":
        return None, result
    if hook is not None:
        seconds["retrieval"] = None if restored else time.perf_counter() - t0
    tuned = job.evaluate(result.model, f"{method} fine-tuned") if job.evaluate else {}
    row = {"method": method, "steps": result.step, "final_loss": result.last_metrics.get("loss")}
    for m in metrics:
        row[f"zero-shot {m}"] = zero.get(m)
        row.update({f"{name} {m}": scores.get(m) for name, scores in after.items()})
        row[f"fine-tuned {m}"] = tuned.get(m)
    row["query_active_dims"] = tuned.get("query_active_dims")
    row["doc_active_dims"] = tuned.get("doc_active_dims")
    row.update({f"{name}_s": s for name, s in seconds.items()})
    return row, result


def run_dirs(config) -> dict:
    """{method: its training folder}: the workdir for the main method, compare/<method> for the others."""
    workdir = as_path(config.workdir)
    return {m: workdir if m == config.init.method else workdir / "compare" / m
            for m in dict.fromkeys([config.init.method, *config.compare.methods])}


def check_settings(config) -> None:
    """Refuse at once, naming the changed keys, when a run of the workdir was trained with other settings
    (`trainer.check_resume`; train.py calls it before writing config.json, so that the two always agree)."""
    for method, run_dir in run_dirs(config).items():
        trainer.check_resume(config, run_dir, method)


def run(config) -> list[dict] | None:
    """Every method of the config in turn; the main one is exported. None when a SIGTERM stopped the run."""
    job = prepare(config)
    rows = []
    for method, run_dir in run_dirs(config).items():
        row, result = run_method(job, method, run_dir)
        if row is None:
            print(f"preempted during {method!r} at step {result.step}: checkpoint saved; "
                  "rerun the same command to resume", flush=True)
            return None
        rows.append(row)
        if method == config.init.method and config.export.enabled:
            export(config, host_model(result.model), job.target_tokenizer, result.step,  # every process gathers
                   job.query_weights)
    return rows


def export(config, model, tokenizer, step: int, query_weights=None) -> None:
    """Process 0 writes the export, with the settings and step it was trained with (EXPORT_SETTINGS, the
    same record as the checkpoints'); every process leaves once it is written (the job may end next)."""
    if is_main_process():
        out = export_to_hf(model, tokenizer, config.export.dir or as_path(config.workdir) / "export",
                           pooling=config.model.splade_pooling, query_weights=query_weights)
        settings = run_settings(config)
        (as_path(out) / EXPORT_SETTINGS).write_text(json.dumps(
            {"settings": settings, "settings_hash": settings_digest(settings), "step": step}, indent=1))
        log.info("exported %s", out)
    barrier("export")
