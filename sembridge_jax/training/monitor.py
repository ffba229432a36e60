"""Run observability: metrics as JSONL + TensorBoard events, a PNG of the curves, a progress bar,
the train-step metrics kept on the devices between log steps, and a profiler trace of a window of steps.

Only process 0 writes. On resume, JSONL records past the restored step are dropped first, so a
run killed between checkpoints does not leave duplicated steps in its curves. The workdir may be
an object store (``gs://``): objects cannot be appended to, so there the JSONL file is rewritten
whole at every write (it stays small: one line per ``train.log_every`` steps), and TensorBoard
events are written to a local folder whose event file is uploaded after every write.
"""
from __future__ import annotations

import functools
import io
import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
from etils import epath
from tqdm.auto import tqdm

from sembridge_jax.storage import as_path, copy_tree, is_remote

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
PLOT_FILE = "training_curves.png"
PROFILE_DIR = "profile"
# A step whose value of one of these is NaN/inf stops the run (trainer.check_finite).
GUARDED = ("loss", "grad_norm")
# Curves drawn by plot_curves, when present in the metrics.
PLOTTED = ("loss", "ranking", "accuracy", "flops_q", "flops_d", "active_q", "active_d", "lambda_q", "distill",
           "xling_js", "grad_norm", "learning_rate")
# ... and those of the adaptation stages (training/objectives.py), after them.
STAGE_PLOTTED = ("mlm_accuracy", "sparse_mse", "hidden_mse", "active", "teacher_active")


class MetricsWriter:
    """Append ``{"step": s, **metrics}`` lines to ``<workdir>/metrics.jsonl`` and TensorBoard scalars."""

    def __init__(self, workdir: str | os.PathLike, *, resume_step: int = 0):
        self.enabled = jax.process_index() == 0
        self.path = as_path(workdir) / METRICS_FILE
        self._remote = is_remote(self.path)
        self._lines: list[str] = []
        self._tb = None
        self._tb_dir = self.path.parent / TENSORBOARD_DIR
        self._tb_staging = None
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self._lines = [line for line in self.path.read_text().splitlines() if _step_of(line) <= resume_step]
        self.path.write_text("".join(line + "\n" for line in self._lines))
        from tensorboardX import SummaryWriter  # heavy optional: seconds of import time, process 0 only

        if self._remote:
            self._tb_staging = tempfile.TemporaryDirectory(prefix="sembridge-tensorboard-")
        local = self._tb_staging.name if self._remote else str(self._tb_dir)
        self._tb = SummaryWriter(local, purge_step=resume_step + 1)

    def write(self, step: int, metrics: Mapping[str, float], prefix: str = "") -> None:
        if not self.enabled:
            return
        record = {"step": int(step), **{prefix + k: float(v) for k, v in metrics.items()}}
        self._lines.append(json.dumps(record))
        if self._remote:
            self.path.write_text("".join(line + "\n" for line in self._lines))
        else:
            with self.path.open("a") as f:
                f.write(self._lines[-1] + "\n")
        for k, v in record.items():
            if k != "step" and math.isfinite(v):
                self._tb.add_scalar(k, v, step)
        if self._remote:
            self._tb.flush()
            copy_tree(epath.Path(self._tb_staging.name), self._tb_dir)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._tb_staging is not None:
            copy_tree(epath.Path(self._tb_staging.name), self._tb_dir)
            self._tb_staging.cleanup()
        self._tb = self._tb_staging = None


def _step_of(line: str) -> float:
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf  # a torn last line from a killed run: drop it


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a metrics JSONL file (a torn last line is skipped)."""
    out = []
    for line in as_path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def plot_curves(workdir: str | os.PathLike, out: str | os.PathLike | None = None):
    """Draw the training curves of ``<workdir>/metrics.jsonl`` into a PNG (one panel per metric,
    dev metrics included). Returns the PNG path, or None when there is nothing to draw."""
    import matplotlib  # heavy optional: a second of import time, only when a plot is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy optional: imported after choosing the Agg backend

    workdir = as_path(workdir)
    if not (workdir / METRICS_FILE).exists():
        return None
    records = read_metrics(workdir / METRICS_FILE)
    keys = [k for k in PLOTTED + STAGE_PLOTTED if any(k in r for r in records)]
    keys += sorted({k for r in records for k in r if k.startswith("dev/")})
    if not keys:
        return None
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        pts = [(r["step"], r[key]) for r in records if key in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o" if len(pts) < 20 else None, lw=1.2)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    out = as_path(out) if out else workdir / PLOT_FILE
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    out.write_bytes(png.getvalue())
    return out


def progress_bar(total: int, initial: int = 0, desc: str = "train") -> tqdm:
    """A tqdm bar over optimiser steps (silent on processes other than 0)."""
    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, disable=jax.process_index() != 0)


def bar_postfix(metrics: Mapping[str, float]) -> dict[str, str]:
    """The short summary shown on the bar: loss, FLOPS weight, average active dims of q/d."""
    names = {"loss": "loss", "lambda_q": "λq", "active_q": "act_q", "active_d": "act_d"}
    return {short: f"{metrics[k]:.4g}" for k, short in names.items() if k in metrics}


# ----------------------------------------------------------------------------- metrics on the devices


def _first_bad(metrics, step, bad):
    """``step`` if no earlier step was bad (``bad`` 0) and a guarded metric of this one is NaN/inf."""
    finite = jnp.all(jnp.stack([jnp.isfinite(metrics[k]) for k in GUARDED if k in metrics] or [jnp.bool_(True)]))
    return jnp.where((bad == 0) & ~finite, step, bad)


@jax.jit
def _start(metrics, step):
    return {"sum": metrics, "bad": _first_bad(metrics, step, jnp.zeros_like(step))}


@functools.partial(jax.jit, donate_argnums=0)
def _add(acc, metrics, step):
    return {"sum": jax.tree.map(jnp.add, acc["sum"], metrics), "bad": _first_bad(metrics, step, acc["bad"])}


class StepMetrics:
    """The train step's scalar metrics summed on the devices, fetched only when asked.

    ``add`` queues a tiny jitted update per step (no transfer, no wait), so the host never waits
    for the devices between fetches. ``fetch()`` (one device-to-host copy) returns the means over
    the steps added since the last ``reset()`` and the first of those steps whose loss or gradient
    norm was NaN/inf (0 when none): a bad step is never hidden by a later fetch, and the sums
    themselves turn NaN/inf with it.
    """

    def __init__(self):
        self._acc, self._count = None, 0

    def add(self, metrics: Mapping[str, jax.Array], step: jax.Array) -> None:
        """``step``: the device scalar numbering the step these metrics belong to (1-based)."""
        self._acc = _start(dict(metrics), step) if self._acc is None else _add(self._acc, dict(metrics), step)
        self._count += 1

    def __len__(self) -> int:
        return self._count

    def fetch(self) -> tuple[dict[str, float], int]:
        """(means since the last reset, first non-finite step or 0); ({}, 0) when nothing was added."""
        if self._acc is None:
            return {}, 0
        acc = jax.device_get(self._acc)
        return {k: float(v) / self._count for k, v in acc["sum"].items()}, int(acc["bad"])

    def reset(self) -> None:
        self._acc, self._count = None, 0


# ----------------------------------------------------------------------------- profiler trace


def check_profile_steps(steps) -> str | None:
    """The `train.profile_steps` check: () or (start, stop) with 0 <= start < stop."""
    if tuple(steps) == ():
        return None
    if (len(steps) != 2 or any(isinstance(s, bool) or not isinstance(s, int) for s in steps)
            or not 0 <= steps[0] < steps[1]):
        return f"must be () (off) or (start, stop) with 0 <= start < stop, got {tuple(steps)!r}"
    return None


class ProfileWindow:
    """A JAX profiler trace of the train steps ``start + 1 .. stop`` into ``<workdir>/profile/``.

    ``at(step, state)`` is called whenever ``step`` steps are done and the next is about to be
    dispatched: the trace starts at ``start`` and stops at ``stop`` once the devices have finished
    those steps (``state`` is waited for). The trace holds the TensorBoard profile plugin's files
    (``plugins/profile/<run>/*.xplane.pb``) and a Perfetto trace (``perfetto_trace.json.gz``);
    docs/scaling.md says how to view them. Only process 0 traces. A remote workdir gets the files
    copied once the trace stops. ``()`` (or a window the run resumed past) traces nothing.
    """

    def __init__(self, workdir: str | os.PathLike, steps: Sequence[int] = ()):
        self.dest = as_path(workdir) / PROFILE_DIR
        self.window = tuple(steps) if jax.process_index() == 0 else ()
        self._staging = None
        self._active = False

    def at(self, step: int, state) -> None:
        if not self.window:
            return
        start, stop = self.window
        if step == start and not self._active:
            self._staging = tempfile.TemporaryDirectory(prefix="sembridge-profile-") if is_remote(self.dest) else None
            local = self._staging.name if self._staging else str(self.dest)
            jax.profiler.start_trace(local, create_perfetto_trace=True)
            self._active = True
        elif step == stop and self._active:
            self.close(state)

    def close(self, state=None) -> None:
        """Stop a running trace (after the devices finished ``state``); a no-op otherwise."""
        if not self._active:
            return
        if state is not None:
            jax.block_until_ready(state)
        jax.profiler.stop_trace()
        self._active = False
        if self._staging is not None:
            copy_tree(epath.Path(self._staging.name), self.dest)
            self._staging.cleanup()
            self._staging = None
        log.info("profiler trace of steps %d..%d in %s", self.window[0] + 1, self.window[1], self.dest)
