"""Fault test: the newest checkpoint broken four ways (a truncated data file, garbled metadata, flipped bytes
in the state, a state that is not the one its fingerprint was taken of: a finite change only the
fingerprint catches). Each restart names the skipped step and why, moves it to checkpoints/corrupt/<step>-<reason>
(nothing deleted), resumes from the previous step and ends bit-identical to an uninterrupted run."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
from test_train_loop import STEPS, _assert_same_params, _checkpoints, _params, _run, env, reference  # noqa: E402,F401

pytestmark = pytest.mark.slow  # subprocesses that import and compile jax programs


def _largest_data_file(step_dir: Path) -> Path:
    return max((p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"),
               key=lambda p: p.stat().st_size)


def _truncate(step_dir: Path) -> None:
    path = _largest_data_file(step_dir)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garble_metadata(step_dir: Path) -> None:
    (step_dir / "state" / "_METADATA").write_text('{"tree_metadata": {garbled')


def _flip_bytes(step_dir: Path) -> None:
    path = _largest_data_file(step_dir)
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 64, 8):
        data[i] ^= 0x40
    path.write_bytes(bytes(data))


def _stale_fingerprint(step_dir: Path) -> None:
    """The state readable and finite but not the one its fingerprint was taken of: what a silent finite
    change of the state looks like, deterministically (a flipped bit in the zstd-compressed data files
    garbles what follows it, so it reaches the readability or the finiteness check first, see _flip_bytes)."""
    path = step_dir / "meta" / "metadata"
    meta = json.loads(path.read_text())
    fingerprint = meta["state_fingerprint"]
    meta["state_fingerprint"] = ("0" if fingerprint[0] != "0" else "1") + fingerprint[1:]
    path.write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def nine_steps(tmp_path_factory, env):  # noqa: F811
    """A run stopped after step 9 (checkpoints 6 and 9) of the reference's 12."""
    workdir = tmp_path_factory.mktemp("nine")
    proc = subprocess.run([sys.executable, str(TESTS / "train_tiny.py"), str(workdir), "--steps", "9"],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _checkpoints(workdir) == [6, 9]
    pristine = tmp_path_factory.mktemp("nine_pristine") / "run"
    shutil.copytree(workdir, pristine)
    return workdir, pristine


def _fresh(nine_steps) -> Path:
    """The nine-step run as it was, at its own path (its settings record the data file inside it)."""
    workdir, pristine = nine_steps
    shutil.rmtree(workdir)
    shutil.copytree(pristine, workdir)
    return workdir


@pytest.mark.parametrize("corrupt", [_truncate, _garble_metadata, _flip_bytes, _stale_fingerprint])
def test_a_broken_newest_checkpoint_falls_back_bit_identically(corrupt, nine_steps, tmp_path, env, reference):  # noqa: F811
    workdir = _fresh(nine_steps)
    corrupt(workdir / "checkpoints" / "9")
    proc = _run(workdir, env)
    assert f"FIT done {STEPS}" in proc.stdout
    warning = next(line for line in proc.stderr.splitlines() if "checkpoint step 9 is unusable" in line)
    assert "| 6/12 [" in proc.stderr and "| 0/12 [" not in proc.stderr  # the progress bar starts at step 6
    moved = list((workdir / "checkpoints" / "corrupt").iterdir())
    assert [p.name.split("-")[0] for p in moved] == ["9"] and moved[0].name.split("-")[1] in warning
    assert (moved[0] / "state").is_dir()  # kept whole, for a post-mortem
    _assert_same_params(_params(workdir), _params(reference))
    assert _checkpoints(workdir) == [9, 12]
    # flipped exponent bits give NaN/inf or finite wrong values, depending on which arrays the bytes hold
    # Flipped bytes are caught by whichever check they reach first: the store's own framing when they land on
    # it (which file holds which bytes varies between saves), else the values or the fingerprint.
    reasons = {_truncate: {"unreadable"}, _garble_metadata: {"unreadable"},
               _flip_bytes: {"unreadable", "nonfinite", "fingerprint"}, _stale_fingerprint: {"fingerprint"}}[corrupt]
    assert moved[0].name.removeprefix("9-") in reasons, warning


def test_every_newer_broken_step_is_skipped(nine_steps, tmp_path):
    """Both checkpoints broken: restore_newest moves both aside and finds nothing (a fresh start)."""
    import jax

    from sembridge_jax.training.checkpoint import Checkpointer

    workdir = _fresh(nine_steps)
    for step in (6, 9):
        _garble_metadata(workdir / "checkpoints" / str(step))
    ckpt = Checkpointer(workdir, every_steps=3, keep=2)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), {"x": np.zeros(2, np.float32)})
    assert ckpt.restore_newest(abstract) is None
    ckpt.close()
    assert sorted(p.name for p in (workdir / "checkpoints" / "corrupt").iterdir()) == ["6-unreadable", "9-unreadable"]
