"""The sharded SPLADE fine-tuning loop (big_vision style: build mesh, build state, loop, log, save).

The model is split once into a static graph and a flat ``{path: array}`` parameter dict; the train
step is a pure function of ``(state, batch)`` jitted with explicit in/out shardings and the state
donated. Queries and documents of the GLOBAL batch are encoded and scored inside that one jit,
so in-batch negatives span every device (the compiler inserts the gathers).

Every stage trains through ``fit`` (training/stages.py): its objective, its data, which parameters
train (``train.trainable``: all or the vocabulary rows) and optionally a LoRA ``Adapter``: then the
trained parameters are the adapter's alone, the model the objective sees is the base with the adapter
applied, and the model ``fit`` returns has the adapter merged into its weights (a plain model).
Frozen parameters get no gradient (only the trainable ones are differentiated) and no optimiser state.

Gradient accumulation (``train.grad_accum_steps = A``) scans over A micro-batches of B / A
examples inside the step and averages their gradients: in-batch negatives then come from the
micro-batch (B / A queries, still across all devices), not from the whole batch of B, and the
FLOPS term is a micro-batch mean, exactly as if each micro-batch were a batch of its own.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from sembridge_jax.models.encoder import remat_compiler_options
from sembridge_jax.models.lora import SUFFIX_A, SUFFIX_B, apply_lora, init_lora, lora_targets, merge_lora
from sembridge_jax.models.state import ParamLayout, merge_model, split_model
from sembridge_jax.storage import as_path
from sembridge_jax.training import losses, optim, sharding
from sembridge_jax.training.batches import Prefetcher
from sembridge_jax.training.checkpoint import CHECKPOINT_DIR, Checkpointer
from sembridge_jax.training.distributed import preemption_sync_manager
from sembridge_jax.training.monitor import (
    MetricsWriter,
    ProfileWindow,
    StepMetrics,
    bar_postfix,
    plot_curves,
    progress_bar,
)
from sembridge_jax.training.run_settings import prepare_resume, run_settings

log = logging.getLogger(__name__)

TrainState = dict[str, Any]  # {"params": {path: array}, "opt": optax state, "step": int32 scalar}


# ----------------------------------------------------------------------------- loss + step


def _splade(model, ids, mask, types, dropout_key):
    """model.splade, with a dropout key only when there is one (a model without dropout need not take it)."""
    if dropout_key is None:
        return model.splade(ids, mask, types)
    return model.splade(ids, mask, types, dropout_key=dropout_key)


def encode_batch(model: nnx.Module, batch: Mapping[str, jax.Array], dropout_keys=(None, None)
                 ) -> tuple[jax.Array, jax.Array]:
    """SPLADE vectors of the batch: queries [B, V] and documents [B, 1 + H, V] (positive first);
    ``dropout_keys``: the (query, document) forward passes' dropout keys (None: no dropout).

    Batch keys: ``query_input_ids``/``query_attention_mask`` [B, Lq] and
    ``doc_input_ids``/``doc_attention_mask`` [B, 1 + H, Ld] (optional ``*_token_type_ids``).
    """
    q = _splade(model, batch["query_input_ids"], batch["query_attention_mask"], batch.get("query_token_type_ids"),
                dropout_keys[0])
    ids = batch["doc_input_ids"]
    b, group, length = ids.shape
    flat = lambda x: None if x is None else x.reshape(b * group, length)
    d = _splade(model, flat(ids), flat(batch["doc_attention_mask"]), flat(batch.get("doc_token_type_ids")),
                dropout_keys[1])
    return q, d.reshape(b, group, -1)


def splade_objective(settings: losses.LossSettings, dropout_seed: int | None = None) -> Callable:
    """``objective(model, batch, step) -> (loss, metrics)``: the configured SPLADE loss. With a
    ``dropout_seed`` every forward pass applies the model's dropout, its masks drawn from (seed, step), so a
    resumed run draws the same ones (with gradient accumulation the micro-batches of a step share them)."""

    def objective(model, batch, step):
        keys = [None] * 4 if dropout_seed is None else list(
            jax.random.split(jax.random.fold_in(jax.random.key(dropout_seed), step), 4))
        q, d = encode_batch(model, batch, keys[:2])
        xling = None
        if settings.xling_weight:
            src = _splade(model, batch["src_input_ids"], batch["src_attention_mask"], batch.get("src_token_type_ids"),
                          keys[2])
            tgt = _splade(model, batch["tgt_input_ids"], batch["tgt_attention_mask"], batch.get("tgt_token_type_ids"),
                          keys[3])
            xling = (src, tgt)
        return losses.total_loss(settings, q, d, step, teacher_scores=batch.get("teacher_scores"), xling=xling)

    return objective


def make_train_step(
    layout: ParamLayout,
    tx: optax.GradientTransformation,
    objective: Callable,
    *,
    grad_accum_steps: int = 1,
    learning_rate: optax.Schedule | None = None,
    to_model: Callable[[Mapping[str, jax.Array]], nnx.Module] | None = None,
) -> Callable[[TrainState, Mapping[str, jax.Array]], tuple[TrainState, dict[str, jax.Array]]]:
    """The pure train step ``(state, batch) -> (state, metrics)`` (not yet jitted).

    ``state["params"]`` holds the trained parameters, ``state["frozen"]`` (optional) the others:
    only the trained ones are differentiated and updated. ``to_model(params)`` builds the model the
    objective sees from both (default ``merge_model(layout, .)``).
    With ``grad_accum_steps = A > 1`` every batch array carries a leading micro-batch axis of
    size A and the gradients of the A micro-batches are averaged (see the module docstring).
    Metrics are means over micro-batches, plus ``grad_norm`` (before clipping) and ``learning_rate``.
    """
    to_model = to_model or (lambda p: merge_model(layout, p))

    def loss_fn(params, frozen, batch, step):
        return objective(to_model({**frozen, **params}), batch, step)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step_fn(state: TrainState, batch):
        params, frozen, step = state["params"], state.get("frozen", {}), state["step"]
        if grad_accum_steps == 1:
            (_, metrics), grads = grad_fn(params, frozen, batch, step)
        else:

            def micro(carry, mb):
                (_, m), g = grad_fn(params, frozen, mb, step)
                return jax.tree.map(jnp.add, carry, (g, m)), None

            (_, m_shape), g_shape = jax.eval_shape(grad_fn, params, frozen, _first(batch), step)
            zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (g_shape, m_shape))
            (grads, metrics), _ = jax.lax.scan(micro, zeros, batch)
            grads, metrics = jax.tree.map(lambda x: x / grad_accum_steps, (grads, metrics))
        metrics = dict(metrics, grad_norm=optax.global_norm(grads))
        if learning_rate is not None:
            metrics["learning_rate"] = learning_rate(step)
        updates, opt = tx.update(grads, state["opt"], params)
        new = {**state, "params": optax.apply_updates(params, updates), "opt": opt, "step": step + 1}
        return new, metrics

    return step_fn


def _first(batch):
    return jax.tree.map(lambda x: x[0], batch)


@dataclasses.dataclass
class ShardedStep:
    """The jitted train step with its shardings."""

    mesh: Mesh
    state_sharding: Any
    batch_leading: int  # unsplit leading batch dims (1 with gradient accumulation)
    step: Callable
    abstract_state: Any  # ShapeDtypeStructs with shardings (for checkpoint restore)

    def put_batch(self, local_batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
        """This process's batch slice -> global arrays split over the data axes."""
        return sharding.global_batch(local_batch, self.mesh, self.batch_leading)


def build_sharded_step(
    layout: ParamLayout,
    tx: optax.GradientTransformation,
    objective: Callable,
    mesh: Mesh,
    rules,
    *,
    grad_accum_steps: int = 1,
    learning_rate: optax.Schedule | None = None,
    to_model: Callable | None = None,
    trainable: Mapping[str, bool] | None = None,
    average: bool = False,
) -> ShardedStep:
    """Shardings for parameters (from logical axes + rules), optimiser state (like its parameter)
    and batch (data axes), and the train step jitted with them and with the state donated.

    ``trainable`` ({path: bool} over ``layout.shapes``, default all) splits the parameters into the
    state's "params" (trained; ``tx`` sees only these) and "frozen"; ``to_model`` as in ``make_train_step``;
    ``average``: the state also holds "avg", a running mean of the trained parameters (``average_params``)."""
    param_sh = sharding.param_shardings(layout.logical_axes, layout.shapes, mesh, rules)
    abstract_all = {k: jax.ShapeDtypeStruct(s, layout.dtypes[k]) for k, s in layout.shapes.items()}
    trained, frozen = split_trainable(abstract_all, trainable)
    abstract_opt = jax.eval_shape(tx.init, trained)
    state_sh = {
        "params": {k: param_sh[k] for k in trained},
        "opt": sharding.like_params(abstract_opt, param_sh, layout.shapes, mesh),
        "step": sharding.replicated(mesh),
    }
    abstract = {"params": trained, "opt": abstract_opt, "step": jax.ShapeDtypeStruct((), jnp.int32)}
    if frozen:
        state_sh["frozen"], abstract["frozen"] = {k: param_sh[k] for k in frozen}, frozen
    if average:
        state_sh["avg"], abstract["avg"] = dict(state_sh["params"]), dict(trained)
    abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, state_sh)
    leading = 1 if grad_accum_steps > 1 else 0
    fn = make_train_step(layout, tx, objective, grad_accum_steps=grad_accum_steps, learning_rate=learning_rate,
                         to_model=to_model)
    jitted = jax.jit(
        fn,
        in_shardings=(state_sh, sharding.batch_sharding(mesh, leading)),
        out_shardings=(state_sh, sharding.replicated(mesh)),
        donate_argnums=0,
        compiler_options=remat_compiler_options(mesh.devices.flat[0].platform),
    )
    return ShardedStep(mesh, state_sh, leading, jitted, abstract)


def split_trainable(params: Mapping[str, Any], trainable: Mapping[str, bool] | None) -> tuple[dict, dict]:
    """(trained, frozen) parts of a flat parameter dict; ``trainable`` None = everything trains."""
    if trainable is None:
        return dict(params), {}
    return ({k: v for k, v in params.items() if trainable[k]}, {k: v for k, v in params.items() if not trainable[k]})


def init_state(
    params: Mapping[str, jax.Array], tx: optax.GradientTransformation, state_sharding,
    frozen: Mapping[str, jax.Array] | None = None,
) -> TrainState:
    """Place the parameters with their shardings and build the optimiser state already sharded
    (``frozen``: the parameters that do not train, placed as they are, no optimiser state)."""
    params = jax.device_put(dict(params), state_sharding["params"])
    average = "avg" in state_sharding
    init = jax.jit(
        lambda p: {"params": p, "opt": tx.init(p), "step": jnp.zeros((), jnp.int32),
                   **({"avg": jax.tree.map(jnp.copy, p)} if average else {})},
        in_shardings=(state_sharding["params"],),
        out_shardings={k: v for k, v in state_sharding.items() if k != "frozen"},
    )
    state = init(params)
    if frozen:
        # Copies: the step donates the whole state, and a frozen array may be shared with another model
        # (apply_alignment keeps the source model's encoder arrays, which the align stage's teacher reads).
        copy = jax.jit(lambda f: jax.tree.map(jnp.copy, f), out_shardings=state_sharding["frozen"])
        state["frozen"] = copy(dict(frozen))
    return state


def average_params(state: TrainState, every: int) -> TrainState:
    """The state with "avg" moved to the running mean of the trained parameters over the averaging points
    so far (steps every, 2 every, ..., and this one: ceil(step / every) points): avg + (params - avg) / n."""
    n = ((state["step"] + every - 1) // every).astype(jnp.float32)
    avg = jax.tree.map(lambda a, p: (a + (p - a) / n).astype(a.dtype), state["avg"], state["params"])
    return {**state, "avg": avg}


@dataclasses.dataclass(frozen=True)
class Adapter:
    """A LoRA adapter (models/lora.py) trained instead of the model's weights: ``rank`` > 0, ``alpha``,
    ``targets`` among lora.TARGET_AXES. A is drawn from the run's seed, B starts at zero."""

    rank: int
    alpha: float
    targets: tuple[str, ...] = ("attention", "ffn")


def adapter_space(layout: ParamLayout, adapter: Adapter, seed: int):
    """(layout extended by the adapter's parameters, the fresh adapter, ``to_model``) for training it."""
    lora = init_lora(layout.shapes, lora_targets(layout, adapter.targets), adapter.rank, seed)
    extended = dataclasses.replace(
        layout,
        shapes={**layout.shapes, **{k: tuple(v.shape) for k, v in lora.items()}},
        dtypes={**layout.dtypes, **{k: v.dtype for k, v in lora.items()}},
        logical_axes={**layout.logical_axes, **dict.fromkeys(lora)},  # small: replicated
    )

    def to_model(params):
        adapter_params = {k: v for k, v in params.items() if k.endswith((SUFFIX_A, SUFFIX_B))}
        return merge_model(layout, apply_lora(params, adapter_params, adapter.alpha, adapter.rank))

    return extended, lora, to_model


def plain_model(layout: ParamLayout, params: Mapping[str, Any], adapter: Adapter | None) -> nnx.Module:
    """The model of a stage's final parameters (host arrays), its adapter (if any) merged into the weights
    in numpy (``lora.merge_lora``): the one path both a finished run and a rerun that skips it take, so the
    next stage starts from the same bits either way."""
    params = {k: np.asarray(v) for k, v in params.items()}
    if adapter is not None:
        lora = {k: params.pop(k) for k in [k for k in params if k.endswith((SUFFIX_A, SUFFIX_B))]}
        params = merge_lora(params, lora, adapter.alpha, adapter.rank)
    return merge_model(layout, {k: jnp.asarray(v) for k, v in params.items()})


def host_params(params: Mapping[str, jax.Array]) -> dict[str, np.ndarray]:
    """Every parameter fully on this host (a collective under several processes: all must call it)."""
    out = {}
    for k, v in params.items():
        if isinstance(v, jax.Array) and not v.is_fully_addressable:
            v = multihost_utils.process_allgather(v, tiled=True)
        out[k] = np.asarray(v)
    return out


def micro_batches(batch: Mapping[str, np.ndarray], grad_accum_steps: int) -> dict[str, np.ndarray]:
    """Reshape a host batch [B, ...] into [A, B / A, ...] for gradient accumulation (A > 1)."""
    if grad_accum_steps == 1:
        return dict(batch)
    out = {}
    for k, v in batch.items():
        if v.shape[0] % grad_accum_steps:
            raise ValueError(f"batch[{k!r}] has {v.shape[0]} rows, not divisible by grad_accum_steps={grad_accum_steps}")
        out[k] = v.reshape(grad_accum_steps, v.shape[0] // grad_accum_steps, *v.shape[1:])
    return out


# ----------------------------------------------------------------------------- preemption


class PreemptionFlag:
    """SIGTERM (TPU preemption notice, ``kill``): ``reached(step)`` turns True after a step at which the loop
    saves and stops. Under ``jax.distributed`` jax's preemption service owns SIGTERM and every process gets
    True at the same step, whichever process was signalled (the largest step any process had passed when
    the notice arrived, plus one); a plain single process uses its own handler. Every process calls
    ``reached(step)`` after every step; the counter is the training step, the value Orbax's
    CheckpointManager also passes to the service when it saves."""

    def __init__(self):
        self._event = threading.Event()
        self._previous = None
        self._sync = None

    def __enter__(self):
        self._sync = preemption_sync_manager()
        if self._sync is None and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, lambda *_: self._event.set())
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def reached(self, step: int) -> bool:
        if self._sync is not None:
            return self._sync.reached_sync_point(step)
        return self._event.is_set()

    def __bool__(self):  # the old `if preempted:` would now always be true: fail loudly instead
        raise TypeError("ask PreemptionFlag.reached(step) once per step")


def check_finite(step: int, metrics: Mapping[str, float], saved_step: int = 0, learning_rate: float = 0.0) -> None:
    """Stop the run on a NaN/inf loss or gradient norm, naming the step, the bad values and how to restart
    from the newest checkpoint (``saved_step``, 0: none) with other settings."""
    bad = {k: v for k, v in metrics.items() if k in ("loss", "grad_norm") and not np.isfinite(v)}
    if not bad:
        return
    lower = f"--config.train.learning_rate={learning_rate / 2:g}" if learning_rate else "a lower --config.train.learning_rate"
    how = (f"The newest good checkpoint is step {saved_step}: to continue from it with other settings, rerun the "
           f"same command with e.g. {lower} --config.checkpoint.restart_from={saved_step}" if saved_step else
           f"No checkpoint was saved yet: rerun with e.g. {lower} (the run starts over)")
    raise FloatingPointError(f"non-finite training values at step {step}: {bad}; stopped without saving this "
                             f"state. {how}, or check the data.")


# ----------------------------------------------------------------------------- the loop


def check_resume(config, workdir: str | os.PathLike, method: str | None = None) -> None:
    """``fit``'s refusal of changed settings, alone and cheap (checkpoint metadata only), so that a job can
    refuse before any work; whatever ``restart_from`` / ``resume_policy="new_run"`` set aside, ``fit`` does."""
    if config.resume_policy == "new_run" or config.checkpoint.restart_from is not None:
        return
    if not (as_path(workdir) / CHECKPOINT_DIR).exists():
        return
    ckpt = Checkpointer(workdir, read_only=True)
    try:
        prepare_resume(config, ckpt, run_settings(config, method))
    finally:
        ckpt.close()


@dataclasses.dataclass
class FitResult:
    """What ``fit`` returns: the trained model, the step reached and why the loop ended."""

    model: nnx.Module
    step: int
    status: str  # "done" | "preempted"
    last_metrics: dict[str, float]


def fit(
    config,
    model: nnx.Module,
    workdir: str | os.PathLike,
    data,
    *,
    evaluate: Callable[[nnx.Module], Mapping[str, float]] | None = None,
    objective: Callable | None = None,
    mesh: Mesh | None = None,
    desc: str = "train",
    method: str | None = None,
    stage: str = "retrieval",
    adapter: Adapter | None = None,
) -> FitResult:
    """Train ``model`` for ``config.train.num_steps`` steps, resuming from ``workdir``'s newest
    checkpoint (parameters, optimiser state, step, data position; the RNG is the seed, stored).

    ``data`` offers ``next_batch() -> {name: np.ndarray}`` (this process's rows), ``state()`` and
    ``restore(state)`` (``training.batches.TrainData``); a background thread makes and places its
    batches ``train.prefetch`` steps ahead (``batches.Prefetcher``). ``evaluate(model) -> {metric: value}``
    runs every ``train.eval_every`` steps (0 = never here). Checkpoints every ``checkpoint.every_steps``
    and at the end; on SIGTERM saves at once and returns with status "preempted". Each checkpoint records
    the run's settings (``run_settings.run_settings``; ``method`` replaces init.method); a resume with other
    settings refuses naming them, unless ``checkpoint.restart_from`` / ``resume_policy="new_run"`` say what
    to do (``run_settings.prepare_resume``). A broken newest checkpoint is skipped (``restore_newest``).
    ``objective`` defaults
    to the retrieval loss of ``config.loss``; ``stage`` names the stage in the checkpoint metadata (a
    checkpoint of another stage is refused); ``train.trainable`` picks the trained parameters, or
    ``adapter`` trains only a LoRA adapter, merged into the weights of the returned model.
    ``train.average_every = N > 0``: the trained parameters at steps N, 2N, ... and the last step are
    averaged (a running mean kept in the state, so resume stays exact); at the last step the average
    replaces them, so the final checkpoint, the returned model and every export hold the average (a
    finished run extended with more steps goes on from the average, its mean still over every point).

    The host waits for the devices only at log, evaluation and save steps: the metrics stay on the
    devices in between (``monitor.StepMetrics``), and ``metrics.jsonl`` gets their means over the
    steps since the previous log step. A NaN/inf loss or gradient norm at any step raises
    ``FloatingPointError`` (naming that step) at the next of those steps, before anything is
    saved, leaving the last good checkpoint newest. ``train.profile_steps`` traces a window of steps.
    """
    workdir = as_path(workdir)
    tcfg = config.train
    mesh = mesh or sharding.make_mesh(config.mesh.axes)
    base_layout, params = split_model(model)
    layout, to_model = base_layout, None
    if adapter is not None:
        layout, lora, to_model = adapter_space(base_layout, adapter, config.seed)
        trainable = {k: k in lora for k in layout.shapes}
        params = {**params, **lora}
    else:
        trainable = optim.trainable_mask(layout.logical_axes, tcfg.trainable)
    trained, frozen = split_trainable(params, trainable)
    tx, schedule = optim.make_optimizer(tcfg, {k: layout.shapes[k] for k in trained},
                                        {k: layout.logical_axes[k] for k in trained}, trainable="all")
    objective = objective or splade_objective(losses.loss_settings(config),
                                              dropout_seed=config.seed if tcfg.get("dropout") else None)
    every = tcfg.get("average_every", 0)
    sharded = build_sharded_step(
        layout, tx, objective, mesh, config.mesh.rules,
        grad_accum_steps=tcfg.grad_accum_steps, learning_rate=schedule, to_model=to_model,
        trainable=trainable, average=bool(every),
    )
    if every:
        average = jax.jit(lambda s: average_params(s, every), out_shardings=sharded.state_sharding,
                          donate_argnums=0)
        take_average = jax.jit(lambda s: {**s, "params": jax.tree.map(jnp.copy, s["avg"])},
                               out_shardings=sharded.state_sharding, donate_argnums=0)
    ckpt = Checkpointer(workdir, every_steps=config.checkpoint.every_steps, keep=config.checkpoint.keep,
                        async_save=config.checkpoint.async_save)
    settings = run_settings(config, method)
    prepare_resume(config, ckpt, settings)  # refuses changed settings, or sets steps aside as told
    restored = ckpt.restore_newest(sharded.abstract_state)  # skips (and moves aside) broken newer steps
    if restored is None:
        state = init_state(trained, tx, sharded.state_sharding, frozen)
        start, last = 0, {}
    else:
        start, state, data_state, meta = restored
        if meta.get("seed", config.seed) != config.seed:
            raise ValueError(f"{ckpt.directory} was written with seed {meta['seed']}, config.seed is {config.seed}: "
                             "use a fresh workdir or the same seed")
        if meta.get("stage", stage) != stage:
            raise ValueError(f"{ckpt.directory} holds the {meta['stage']!r} stage, not {stage!r}: "
                             "use a fresh workdir")
        data.restore(data_state)
        last = dict(meta.get("metrics", {}))
        log.info("resumed from %s step %d (stage %s)", ckpt.directory, start, stage)
    del params, trained, frozen  # the state owns (donated) copies from here on
    model_of = to_model or (lambda p: merge_model(layout, p))
    writer = MetricsWriter(workdir, resume_step=start)
    meter, profile = StepMetrics(), ProfileWindow(workdir, tcfg.profile_steps)
    place = lambda batch: sharded.put_batch(micro_batches(batch, tcfg.grad_accum_steps))
    step, status, saved_step = start, "done", start
    try:
        with PreemptionFlag() as preempted, progress_bar(tcfg.num_steps, start, desc) as bar, \
                Prefetcher(data, place, tcfg.prefetch) as batches:
            while step < tcfg.num_steps:
                profile.at(step, state)
                # Only queued on the devices: no host sync in the step itself.
                state, metrics = sharded.step(state, batches.next())
                meter.add(metrics, state["step"])
                step += 1
                bar.update(1)
                if every and (step % every == 0 or step == tcfg.num_steps):
                    state = average(state)
                    if step == tcfg.num_steps:  # the run's result (saved, exported, resumed) is the average
                        state = take_average(state)
                stop = preempted.reached(step)
                final = step == tcfg.num_steps or stop
                log_now = final or step % tcfg.log_every == 0
                eval_now = evaluate is not None and tcfg.eval_every and step % tcfg.eval_every == 0
                save_now = final or step % config.checkpoint.every_steps == 0
                if log_now or eval_now or save_now:
                    # The only host sync: the NaN guard sees every step since the previous one
                    # before anything is written, evaluated or saved.
                    last, bad_step = meter.fetch()
                    check_finite(bad_step or step, last, saved_step, tcfg.learning_rate)
                if log_now:
                    writer.write(step, last)
                    bar.set_postfix(bar_postfix(last), refresh=False)
                    meter.reset()
                if eval_now:
                    writer.write(step, evaluate(model_of({**state.get("frozen", {}), **state["params"]})),
                                 prefix="dev/")
                if save_now:
                    meta = {"loss": last["loss"], "seed": config.seed, "stage": stage, "metrics": last,
                            "settings": settings}
                    ckpt.save(step, state, batches.state(), meta, force=True)
                    saved_step = step
                if stop:
                    status = "preempted"
                    log.warning("SIGTERM: saved step %d to %s; rerun the same command to resume", step, ckpt.directory)
                    break
            profile.at(step, state)
    finally:
        profile.close()
        ckpt.close()  # waits for pending (good) saves; a failed step never reached save()
        writer.close()
    plot_curves(workdir)
    params = {**state.get("frozen", {}), **state["params"]}
    if adapter is not None:
        return FitResult(plain_model(base_layout, host_params(params), adapter), step, status, last)
    return FitResult(merge_model(layout, params), step, status, last)
