"""What a training run and each cached artifact of a workdir are keyed by, and what a rerun with changed
settings does (``resume_policy``, ``checkpoint.restart_from``).

A run's settings are every config key except the few that cannot change what is trained (``FREE``: where
and how often to log, evaluate and save, the device layout, memory trade-offs); a key added to the schema
later is a training setting unless listed here, so a new knob can never be changed silently on resume.
Every checkpoint's metadata holds the settings it was trained with. A rerun whose settings differ from the
newest checkpoint's refuses, naming each changed key, unless

* ``checkpoint.restart_from=STEP``: continue from that step with the new settings (say, a lower learning
  rate after a NaN stop); the newer steps are moved to ``checkpoints/previous/``. Once the run has saved
  a checkpoint with the new settings the option has nothing left to do, so rerunning the same command
  resumes normally;
* ``resume_policy="new_run"``: start over in the same workdir; every old step is moved to
  ``checkpoints/previous/`` (nothing is deleted).

Artifacts (an alignment, the export) record the settings that determine them and their hash in their
metadata; a stale one is rebuilt (``resume_policy`` "rebuild", the default, or "new_run") or refused
("refuse"), naming the changed keys.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from sembridge_jax.schema import changed_settings, flat_keys, get, settings_digest

log = logging.getLogger(__name__)

RESUME_POLICIES = ("rebuild", "refuse", "new_run")
PREVIOUS_DIR = "previous"  # under checkpoints/: steps set aside by restart_from or a new run

# Keys (or sections) a resumed run may change freely: they do not change the parameters it trains, except
# train.num_steps, which says how far to train (a finished run extended keeps its steps; with a decaying
# learning rate the remaining steps follow the new length).
FREE = ("workdir", "resume_policy", "eval", "export", "compare", "checkpoint", "mesh", "data.dev",
        "train.num_steps", "train.log_every", "train.eval_every", "train.prefetch", "train.profile_steps", "bridge.batch_size",
        "bridge.cache_dir", "model.splade_chunk_size", "model.remat_policy", "model.query_encoder", "model.idf_corpus")


class SettingsChangedError(ValueError):
    """A workdir's run or artifact was made with other settings than the config's."""


def _free(key: str) -> bool:
    return any(key == f or key.startswith(f + ".") for f in FREE)


def flat_settings(config, keys) -> dict:
    """``{key: value}`` with JSON values (tuples as lists), as a stored record reads back."""
    return json.loads(json.dumps({k: get(config, k) for k in keys}, default=str))


def run_settings(config, method: str | None = None) -> dict:
    """The settings that determine a training run; ``method`` replaces init.method (a compared method)."""
    out = flat_settings(config, [k for k in flat_keys(config) if not _free(k)])
    if method is not None:
        out["init.method"] = method
    return out


def artifact_is_current(what: str, recorded: Mapping | None, settings: Mapping, policy: str) -> bool:
    """Whether an artifact recorded with ``recorded`` settings (None: none recorded) may be reused for
    ``settings``; a stale one is rebuilt (False) or, under policy "refuse", an error naming the keys."""
    if recorded is not None and settings_digest(recorded) == settings_digest(settings):
        return True
    diff = changed_settings(recorded, settings) if recorded is not None else ["(no settings recorded)"]
    if policy == "refuse":
        raise SettingsChangedError(f"{what} was built with other settings ({'; '.join(diff)}) and "
                                   "resume_policy='refuse': use another --workdir or --config.resume_policy=rebuild")
    log.warning("%s was built with other settings (%s): rebuilding it", what, "; ".join(diff))
    return False


def prepare_resume(config, checkpointer, settings: Mapping) -> None:
    """Before restoring: compare ``settings`` with the newest checkpoint's, then continue (same settings),
    set steps aside (``restart_from``, ``resume_policy="new_run"``) or refuse naming the changed keys."""
    newest = checkpointer.newest_settings()
    if newest is None:  # no checkpoint, or none that recorded its settings
        return
    step, old = newest
    diff = changed_settings(old, settings)
    if not diff:
        return
    steps = checkpointer.all_steps()
    tag = f"settings-{settings_digest(old)}"
    restart = config.checkpoint.restart_from
    if config.resume_policy == "new_run":
        moved = [checkpointer.move_aside(s, tag, under=PREVIOUS_DIR) for s in steps]
        log.warning("new run with changed settings (%s): the old steps %s moved to %s", "; ".join(diff), steps,
                    moved[0].parent)
    elif restart is not None:
        if restart not in steps:
            raise SettingsChangedError(f"checkpoint.restart_from={restart}: no checkpoint of step {restart} in "
                                       f"{checkpointer.directory} (have {steps})")
        later = [s for s in steps if s > restart]
        for s in later:
            checkpointer.move_aside(s, tag, under=PREVIOUS_DIR)
        log.warning("restarting from step %d with changed settings (%s); later steps %s moved to %s", restart,
                    "; ".join(diff), later, checkpointer.directory / PREVIOUS_DIR)
    else:
        raise SettingsChangedError(
            f"{checkpointer.directory} step {step} was trained with other settings: {'; '.join(diff)}. To continue "
            f"it with the new ones from a step: --config.checkpoint.restart_from=STEP (have {steps}; later steps "
            "are set aside); to start over in this workdir: --config.resume_policy=new_run; or use another --workdir")
