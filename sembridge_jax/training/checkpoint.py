"""Orbax checkpoints of a training run, and rebuilding a model from one (for export).

Layout under ``<workdir>/checkpoints/<step>/``: ``state`` (parameters, optimiser state, step as
sharded arrays), ``data`` (the data iterator position, JSON) and ``meta`` (seed, RNG key, loss,
JSON). Orbax writes each step into a temporary folder and renames it only once every item is
complete (atomic finalize), so ``latest_step`` never names a half-written checkpoint, even if
the process is killed mid-save. ``<workdir>/model/`` holds what rebuilds the model without the
source run: ``encoder_config.json`` (every ``EncoderConfig`` field) and the target tokenizer.
The workdir may be local or on an object store (``gs://bucket/run``): see ``sembridge_jax.storage``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from sembridge_jax.storage import as_path, readable_dir, writable_dir

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
MODEL_DIR = "model"
ENCODER_CONFIG = "encoder_config.json"


class NonFiniteStateError(RuntimeError):
    """Raised instead of saving a state whose loss or parameters are NaN/inf."""


@jax.jit
def all_finite(tree) -> jax.Array:
    """True iff every floating-point leaf of ``tree`` is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


class Checkpointer:
    """Keep-N, every-N-steps, optionally asynchronous Orbax checkpoints of one run."""

    def __init__(self, workdir: str | os.PathLike, *, every_steps: int, keep: int, async_save: bool = True):
        self.directory = as_path(workdir) / CHECKPOINT_DIR
        self.every_steps = every_steps
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep,
                save_interval_steps=every_steps,
                enable_async_checkpointing=async_save,
                create=True,
            ),
            item_handlers={
                "state": ocp.StandardCheckpointHandler(),
                "data": ocp.JsonCheckpointHandler(),
                "meta": ocp.JsonCheckpointHandler(),
            },
        )

    def latest_step(self) -> int | None:
        """The newest fully written checkpoint, or None."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state, data_state: Mapping, meta: Mapping, *, force: bool = False) -> bool:
        """Save when ``step`` is on the interval (or ``force``). Refuses non-finite states:
        raises ``NonFiniteStateError`` if ``meta["loss"]`` or any parameter is NaN/inf, so the
        previous checkpoint stays the newest. Returns whether a save started."""
        if not force and step % self.every_steps:
            return False
        loss = meta.get("loss")
        if loss is not None and not np.isfinite(loss):
            raise NonFiniteStateError(f"refusing to checkpoint step {step}: loss is {loss}")
        if not bool(all_finite(state)):
            raise NonFiniteStateError(f"refusing to checkpoint step {step}: the state holds NaN/inf")
        return self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=ocp.args.JsonSave(dict(data_state)),
                meta=ocp.args.JsonSave(_jsonable(meta)),
            ),
            force=True,  # the interval is decided above (Orbax alone would also save the first step)
        )

    def restore(self, step: int, abstract_state) -> tuple[object, dict, dict]:
        """Restore ``(state, data_state, meta)``; ``abstract_state`` gives shapes, dtypes and the
        shardings to place the arrays with (a tree of ``jax.ShapeDtypeStruct``)."""
        out = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state),
                data=ocp.args.JsonRestore(),
                meta=ocp.args.JsonRestore(),
            ),
        )
        return out["state"], dict(out["data"] or {}), dict(out["meta"] or {})

    def restore_params(self, step: int | None = None) -> dict[str, np.ndarray]:
        """Only the parameters of a checkpoint (default: the newest) as host arrays."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no finished checkpoint in {self.directory}")
        if step not in self.all_steps():
            raise FileNotFoundError(f"no checkpoint for step {step} in {self.directory} (have {self.all_steps()})")
        meta = self._manager.item_metadata(step)["state"]
        abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), meta["params"])
        cpu = jax.sharding.SingleDeviceSharding(jax.local_devices(backend="cpu")[0])
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=cpu), abstract)
        # Partial restore of the "params" subtree only (no optimiser state), straight from the item folder.
        item = {"params": abstract}
        with ocp.PyTreeCheckpointer() as reader:
            restored = reader.restore(
                self.directory / str(step) / "state",
                args=ocp.args.PyTreeRestore(
                    item=item,
                    restore_args=jax.tree.map(lambda _: ocp.ArrayRestoreArgs(sharding=cpu), item),
                    partial_restore=True,
                ),
            )
        return {k: np.asarray(v) for k, v in restored["params"].items()}

    def wait(self) -> None:
        """Block until pending asynchronous saves are finalized."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def _jsonable(meta: Mapping) -> dict:
    def conv(v):
        if isinstance(v, Mapping):
            return {str(k): conv(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, (np.generic, np.ndarray, jax.Array)):
            return np.asarray(v).tolist()
        return v

    return conv(meta)


def save_model_spec(workdir: str | os.PathLike, encoder_config, tokenizer):
    """Write ``<workdir>/model/`` (encoder config + tokenizer) so a checkpoint can be rebuilt alone."""
    out = as_path(workdir) / MODEL_DIR
    with writable_dir(out) as local:
        (local / ENCODER_CONFIG).write_text(json.dumps(dataclasses.asdict(encoder_config), indent=2, sort_keys=True))
        tokenizer.save_pretrained(str(local))
    return out


def load_model_from_checkpoint(workdir: str | os.PathLike, step: int | None = None):
    """Rebuild ``(model, tokenizer, step)`` from a run's workdir: the encoder from
    ``model/encoder_config.json``, its parameters from the checkpoint ``step`` (default: newest)."""
    from flax import nnx
    from transformers import AutoTokenizer

    from sembridge_jax.models import EncoderConfig, build_model
    from sembridge_jax.models.build import model_from_params
    from sembridge_jax.training.trainer import split_model

    workdir = as_path(workdir)
    spec = workdir / MODEL_DIR / ENCODER_CONFIG
    if not spec.is_file():
        raise FileNotFoundError(f"{spec} is missing: is {workdir} a sembridge-jax training workdir?")
    config = EncoderConfig(**json.loads(spec.read_text()))
    ckpt = Checkpointer(workdir, every_steps=1, keep=1 << 30, async_save=False)
    try:
        step = ckpt.latest_step() if step is None else step
        params = ckpt.restore_params(step)
    finally:
        ckpt.close()
    layout, _ = split_model(nnx.eval_shape(lambda: build_model(config, nnx.Rngs(0))))
    unknown = sorted(set(params) - set(layout.paths))
    if unknown:
        raise ValueError(f"checkpoint step {step} in {workdir} has parameters the model lacks: {unknown[:5]}")
    model = model_from_params(config, {layout.paths[k]: v for k, v in params.items()},
                              describe=lambda p: f"{'.'.join(map(str, p))} (checkpoint step {step} in {workdir})")
    with readable_dir(workdir / MODEL_DIR) as local:
        tokenizer = AutoTokenizer.from_pretrained(str(local))
    return model, tokenizer, step
