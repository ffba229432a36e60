"""The training loop in real subprocesses (tests/train_tiny.py): it learns, a larger FLOPS weight makes
vectors sparser, and checkpoints survive SIGKILL mid-run, SIGTERM (preemption) and a NaN step, with
the batches prefetched by a background thread (train.prefetch, on by default) and the metrics kept on
the devices between log steps."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # subprocesses that import and compile jax programs

TESTS = Path(__file__).resolve().parent
STEPS = 12  # checkpoints every 3 steps (tests/train_tiny.py)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """CPU jax with a persistent compilation cache shared by every subprocess of this module."""
    cache = tmp_path_factory.getbasetemp().parent / "jax_cache"
    return dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(cache),
                JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")


def _cmd(workdir: Path, *extra: str) -> list[str]:
    return [sys.executable, str(TESTS / "train_tiny.py"), str(workdir), "--steps", str(STEPS),
            "--out", str(workdir / "final.npz"), *extra]


def _run(workdir: Path, env, *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(_cmd(workdir, *extra), capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _steps_logged(workdir: Path) -> int:
    from sembridge_jax.training.monitor import read_metrics

    path = workdir / "metrics.jsonl"
    return max((r["step"] for r in read_metrics(path)), default=0) if path.exists() else 0


def _interrupt(workdir: Path, env, sig: int, after_step: int, checkpointed: bool = False,
               extra: tuple[str, ...] = ()) -> subprocess.Popen:
    """Start a slow run, send ``sig`` once it has logged ``after_step`` steps (and, if ``checkpointed``,
    finished a checkpoint: saves are asynchronous), wait for the exit."""
    proc = subprocess.Popen(_cmd(workdir, "--delay", "0.3", *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    deadline = time.time() + 900
    while _steps_logged(workdir) < after_step or (checkpointed and not _checkpoints(workdir)):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.time() < deadline, "the run never reached the step to interrupt at"
        time.sleep(0.1)
    os.kill(proc.pid, sig)
    proc.wait(timeout=300)
    return proc


def _params(workdir: Path) -> dict[str, np.ndarray]:
    with np.load(workdir / "final.npz") as f:
        return dict(f)


def _checkpoints(workdir: Path) -> list[int]:
    folder = workdir / "checkpoints"
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


@pytest.fixture(scope="module")
def reference(tmp_path_factory, env):
    """The uninterrupted run: its workdir (final parameters in final.npz)."""
    workdir = tmp_path_factory.mktemp("reference")
    out = _run(workdir, env).stdout
    assert f"FIT done {STEPS}" in out
    return workdir


def _assert_same_params(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_reference_run_learns_and_checkpoints(reference):
    from sembridge_jax.training.monitor import read_metrics

    records = read_metrics(reference / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    first, last = records[0]["ranking"], records[-1]["ranking"]
    assert last < first - 0.2, (first, last)  # the InfoNCE loss goes down on the tiny data
    assert _checkpoints(reference) == [9, 12]  # keep = 2, every 3 steps and at the end
    assert (reference / "training_curves.png").stat().st_size > 0
    assert list((reference / "tensorboard").glob("events.out.tfevents.*"))


def test_raising_lambda_lowers_flops_and_active_dims(tmp_path, env, reference):
    from sembridge_jax.training.monitor import read_metrics

    _run(tmp_path, env, "--lambda-flops", "1.0")
    low, high = read_metrics(reference / "metrics.jsonl"), read_metrics(tmp_path / "metrics.jsonl")
    assert low[0]["flops_q"] == pytest.approx(high[0]["flops_q"])  # same init, same first batch
    for key in ("flops_q", "flops_d", "active_q", "active_d"):
        assert high[-1][key] < high[0][key], key  # goes down during the run
        assert high[-1][key] < 0.8 * low[-1][key], key  # and well below the lambda = 1e-3 run


def test_sigkill_then_resume_matches_uninterrupted(tmp_path, env, reference):
    proc = _interrupt(tmp_path, env, signal.SIGKILL, after_step=5, checkpointed=True)
    assert proc.returncode == -signal.SIGKILL
    saved = _checkpoints(tmp_path)
    assert saved and max(saved) < STEPS
    out = _run(tmp_path, env).stdout
    assert f"FIT done {STEPS}" in out
    _assert_same_params(_params(tmp_path), _params(reference))
    # no duplicated or missing steps in the metrics after the restart
    from sembridge_jax.training.monitor import read_metrics

    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == list(range(1, STEPS + 1))


def test_sigterm_saves_exits_cleanly_and_resumes(tmp_path, env, reference):
    proc = _interrupt(tmp_path, env, signal.SIGTERM, after_step=4)
    out = proc.stdout.read()
    assert proc.returncode == 0, proc.stderr.read()[-3000:]
    stopped = int(out.split("FIT preempted ")[1].split()[0])
    assert 4 <= stopped < STEPS
    assert max(_checkpoints(tmp_path)) == stopped  # saved at the step it stopped, off the 3-step interval
    out = _run(tmp_path, env).stdout
    assert f"FIT done {STEPS}" in out
    _assert_same_params(_params(tmp_path), _params(reference))


def test_nan_step_stops_and_keeps_last_good_checkpoint(tmp_path, env):
    proc = subprocess.run(_cmd(tmp_path, "--poison-step", "7"), capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode != 0
    assert "non-finite training values at step 8" in proc.stderr
    assert _checkpoints(tmp_path) == [3, 6]  # step 8 (poisoned) was never saved
    from sembridge_jax.training.checkpoint import Checkpointer

    # A save killed before Orbax's atomic rename leaves only a temporary folder: never "latest".
    torn = tmp_path / "checkpoints" / "9.orbax-checkpoint-tmp" / "state"
    torn.mkdir(parents=True)
    (torn / "partial").write_bytes(b"\0" * 10)
    ckpt = Checkpointer(tmp_path, every_steps=3, keep=2)
    assert ckpt.latest_step() == 6
    params = ckpt.restore_params()
    ckpt.close()
    assert all(np.isfinite(v).all() for v in params.values())


def test_nan_between_log_steps_stops_before_saving_it(tmp_path, env, reference):
    """Log every 4 steps, checkpoint every 3: step 7 turns NaN, the host first looks at step 8 (a log step),
    names step 7 and stops before the save of step 9; step 6 stays the newest checkpoint."""
    from sembridge_jax.training.monitor import read_metrics

    proc = subprocess.run(_cmd(tmp_path, "--poison-step", "6", "--log-every", "4"), capture_output=True, text=True,
                          env=env, timeout=900)
    assert proc.returncode != 0
    assert "non-finite training values at step 7" in proc.stderr, proc.stderr[-3000:]
    assert _checkpoints(tmp_path) == [3, 6]
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [4]  # step 8's NaN window was never written
    # the logged values are the means over steps 1-4 (the reference run logs every step, same data)
    ref = read_metrics(reference / "metrics.jsonl")[:4]
    for key in ("loss", "grad_norm", "active_q"):
        assert records[0][key] == pytest.approx(np.mean([r[key] for r in ref]), rel=1e-5), key


def test_weight_averaging_is_the_mean_of_the_plain_runs_checkpoints_and_resumes_exactly(tmp_path, env):
    """train.average_every=3: the result is the mean of the parameters at steps 3, 6, 9, 12 of the same run
    without averaging (numpy over its checkpoints); killed mid-run, it resumes to the same bits."""
    from sembridge_jax.training.checkpoint import Checkpointer

    plain, averaged, killed = tmp_path / "plain", tmp_path / "averaged", tmp_path / "killed"
    _run(plain, env, "--keep", "4")
    ckpt = Checkpointer(plain, read_only=True)
    try:
        points = [ckpt.restore_params(s) for s in (3, 6, 9, 12)]
    finally:
        ckpt.close()
    _run(averaged, env, "--average-every", "3")
    got = _params(averaged)
    assert got.keys() == points[0].keys()
    for k in got:
        want = np.mean([np.asarray(p[k], np.float64) for p in points], axis=0)
        np.testing.assert_allclose(got[k], want, rtol=1e-5, atol=1e-6, err_msg=k)
    assert not np.allclose(got["layers.0.ffn_up.kernel"], np.asarray(points[-1]["layers.0.ffn_up.kernel"]))
    proc = _interrupt(killed, env, signal.SIGKILL, after_step=5, checkpointed=True, extra=("--average-every", "3"))
    assert proc.returncode == -signal.SIGKILL and max(_checkpoints(killed)) < STEPS
    _run(killed, env, "--average-every", "3")
    _assert_same_params(_params(killed), got)
