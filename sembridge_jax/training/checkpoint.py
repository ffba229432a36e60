"""Orbax checkpoints of a training run, and rebuilding a model from one (for export).

Layout under ``<workdir>/checkpoints/<step>/``: ``state`` (trained parameters, frozen ones when some are,
optimiser state, step as sharded arrays), ``data`` (the data iterator position, JSON) and ``meta`` (seed, loss and
the last logged metrics, JSON; init sampling and data order derive from the seed, so no RNG key is stored). Orbax writes each step into a temporary folder and renames it only once every item is
complete (atomic finalize), so ``latest_step`` never names a half-written checkpoint, even if
the process is killed mid-save. A checkpoint damaged later (a truncated data file, garbled metadata,
flipped bits) is caught on restore: ``meta`` also holds a fingerprint of the state's bits, and
``restore_newest`` falls back to the newest step that restores, is finite and matches its fingerprint,
moving each broken newer step to ``<workdir>/checkpoints/corrupt/<step>-<reason>`` (never deleting it). ``<workdir>/model/`` holds what rebuilds the model without the
source run: ``encoder_config.json`` (every ``EncoderConfig`` field) and the target tokenizer.
The workdir may be local or on an object store (``gs://bucket/run``): see ``sembridge_jax.storage``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from sembridge_jax.storage import as_path, writable_dir
from sembridge_jax.training.distributed import barrier

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
CORRUPT_DIR = "corrupt"  # under CHECKPOINT_DIR: broken steps moved aside by restore_newest
MODEL_DIR = "model"
ENCODER_CONFIG = "encoder_config.json"


class NonFiniteStateError(RuntimeError):
    """Raised instead of saving a state whose loss or parameters are NaN/inf."""


@jax.jit
def all_finite(tree) -> jax.Array:
    """True iff every floating-point leaf of ``tree`` is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


@jax.jit
def _leaf_bit_sums(tree) -> list[jax.Array]:
    """Per leaf, the sum of its elements' bit patterns as unsigned ints, modulo 2**32: any single flipped bit
    changes it (by +-2**k)."""

    def bit_sum(x):
        if x.dtype == jnp.bool_:
            x = x.astype(jnp.uint8)
        unsigned = jax.lax.bitcast_convert_type(x, jnp.dtype(f"uint{x.dtype.itemsize * 8}"))
        return jnp.sum(unsigned.astype(jnp.uint32), dtype=jnp.uint32)

    return [bit_sum(x) for x in jax.tree.leaves(tree)]


def state_fingerprint(state) -> str:
    """A short hex digest of every bit of ``state`` (computed on the devices; only the sums come back)."""
    sums = np.asarray([np.asarray(s) for s in _leaf_bit_sums(state)], np.uint32)
    return hashlib.sha256(sums.tobytes()).hexdigest()[:16]


class Checkpointer:
    """Keep-N, every-N-steps, optionally asynchronous Orbax checkpoints of one run."""

    def __init__(self, workdir: str | os.PathLike, *, every_steps: int = 1, keep: int = 1, async_save: bool = True,
                 read_only: bool = False):
        """``read_only``: a view for export and evaluation that saves and deletes nothing."""
        self.directory = as_path(workdir) / CHECKPOINT_DIR
        self.every_steps = every_steps
        # a read-only view states what Orbax would otherwise warn that it changed
        read_only_options = ocp.CheckpointManagerOptions(read_only=True, save_interval_steps=0, create=False)
        options = read_only_options if read_only else ocp.CheckpointManagerOptions(
            max_to_keep=keep, save_interval_steps=every_steps, enable_async_checkpointing=async_save, create=True)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=options,
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
        meta = {**meta, "state_fingerprint": state_fingerprint(state)}
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

    def problem(self, state, meta: Mapping) -> str | None:
        """Why a restored checkpoint must not be used (``nonfinite`` / ``fingerprint`` and details), or None."""
        loss = meta.get("loss")
        if (loss is not None and not np.isfinite(loss)) or not bool(all_finite(state)):
            return f"nonfinite: loss {loss}, or NaN/inf in the state"
        expected = meta.get("state_fingerprint")
        found = state_fingerprint(state) if expected else None
        if found != expected:
            return f"fingerprint: the state's bits changed since it was saved ({found} != {expected})"
        return None

    def restore_newest(self, abstract_state) -> tuple[int, object, dict, dict] | None:
        """``(step, state, data_state, meta)`` of the newest checkpoint that restores, is finite and matches
        its fingerprint (None when there is none). Each newer broken step is logged with the reason and
        moved to ``<checkpoints>/corrupt/<step>-<reason>`` by process 0, never deleted."""
        for step in sorted(self.all_steps(), reverse=True):
            try:
                state, data_state, meta = self.restore(step, abstract_state)
                problem = self.problem(state, meta)
            except Exception as e:  # noqa: BLE001 - any failure to read a step makes it unusable
                problem = f"unreadable: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            if problem is None:
                return step, state, data_state, meta
            aside = self.move_aside(step, problem.split(":")[0])
            log.warning("checkpoint step %d is unusable (%s); moved to %s, trying the previous step", step,
                        problem[:500], aside)
        return None

    def newest_settings(self) -> tuple[int, dict] | None:
        """``(step, settings)`` recorded in the newest checkpoint whose metadata reads (None without one)."""
        for step in sorted(self.all_steps(), reverse=True):
            try:
                meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
            except Exception:  # noqa: BLE001 - a broken step: restore_newest names and skips it
                continue
            return (step, dict(meta["settings"])) if meta and "settings" in meta else None
        return None

    def move_aside(self, step: int, reason: str, under: str = CORRUPT_DIR):
        """Move the folder of ``step`` to ``<checkpoints>/<under>/<step>-<reason>`` (process 0; a later clash
        gets a time suffix) and forget it; returns the new place."""
        target = self.directory / under / f"{step}-{reason}"
        if target.exists():
            target = target.parent / f"{target.name}-{int(time.time())}"
        if jax.process_index() == 0:
            target.parent.mkdir(parents=True, exist_ok=True)
            (self.directory / str(step)).rename(target)
        barrier(f"checkpoint-aside-{under}-{step}-{reason}")  # every process forgets it only once it has moved
        self._manager.reload()
        return target

    def restore_params(self, step: int | None = None) -> dict[str, np.ndarray]:
        """Only the parameters of a checkpoint (default: the newest) as host arrays: the trained ones
        and, when some were frozen, those too."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no finished checkpoint in {self.directory}")
        if step not in self.all_steps():
            raise FileNotFoundError(f"no checkpoint for step {step} in {self.directory} (have {self.all_steps()})")
        meta = self._manager.item_metadata(step)["state"]
        cpu = jax.sharding.SingleDeviceSharding(jax.local_devices(backend="cpu")[0])
        # Partial restore of the parameter subtrees only (no optimiser state), straight from the item folder.
        item = {part: jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=cpu), meta[part])
                for part in ("params", "frozen") if part in meta}
        with ocp.PyTreeCheckpointer() as reader:
            restored = reader.restore(
                self.directory / str(step) / "state",
                args=ocp.args.PyTreeRestore(
                    item=item,
                    restore_args=jax.tree.map(lambda _: ocp.ArrayRestoreArgs(sharding=cpu), item),
                    partial_restore=True,
                ),
            )
        return {k: np.asarray(v) for part in item for k, v in restored[part].items()}

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
