"""One writer per workdir (training/lock.py): a live holder is named in the refusal, a killed holder's lock is
taken over with a warning, and two `train.py` runs started together on one workdir: exactly one runs."""
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sembridge_jax.training.lock import LOCK_FILE, WorkdirLockedError, workdir_lock

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from test_train_cli import _env, setup  # noqa: E402,F401  (the tiny train.py setup fixture)

HOLD = ("import sys, time\nfrom sembridge_jax.training.lock import workdir_lock\n"
        "with workdir_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)\n")


def _holder(workdir: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(workdir)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_live_holder_is_named_and_a_killed_one_is_taken_over(tmp_path, caplog):
    holder = _holder(tmp_path)
    try:
        with pytest.raises(WorkdirLockedError, match=rf"in use by host \S+ pid {holder.pid} \(started "), \
                workdir_lock(tmp_path):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == holder.pid  # left behind by kill -9
    with caplog.at_level(logging.WARNING), workdir_lock(tmp_path):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert f"pid {holder.pid}" in caplog.text and "no longer running" in caplog.text
    assert (tmp_path / LOCK_FILE).read_text() == ""  # released cleanly: the next holder does not warn
    caplog.clear()
    with caplog.at_level(logging.WARNING), workdir_lock(tmp_path):
        pass
    assert "taking over" not in caplog.text


def test_an_object_store_lease_refuses_while_fresh(gcs):
    from etils import epath

    run = gcs.path("leased")
    with workdir_lock(run):
        record = json.loads((epath.Path(run) / LOCK_FILE).read_text())
        assert record["pid"] == os.getpid()
        with pytest.raises(WorkdirLockedError, match=f"pid {os.getpid()}"), workdir_lock(run):
            pass
    assert not (epath.Path(run) / LOCK_FILE).exists()


@pytest.mark.slow
def test_two_trainers_on_one_workdir_exactly_one_runs(setup, tmp_path_factory):  # noqa: F811
    workdir = setup / "locked_run"
    env = _env(tmp_path_factory)
    args = [sys.executable, "train.py", "--config", str(setup / "cfg.py"), "--workdir", str(workdir),
            "--config.compare.methods=()"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
             for _ in range(2)]
    t0 = time.time()
    outs = [p.communicate(timeout=900) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 1], [o[1][-3000:] for o in outs]
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    last = outs[loser][1].strip().splitlines()[-1]
    assert last.startswith(f"error: workdir {workdir} is in use by host ") and f"pid {procs[winner].pid}" in last
    assert "Traceback" not in outs[loser][1]
    # nothing lost: the winner's whole job is there, and its config.json was not overwritten by the loser
    rows = json.loads((workdir / "results.json").read_text())
    assert [r["method"] for r in rows] == ["sembridge"] and rows[0]["steps"] == 6
    for path in ("checkpoints/6", "export/model.safetensors", "alignments/sembridge/alignment.npz"):
        assert (workdir / path).exists(), path
    assert (workdir / LOCK_FILE).read_text() == ""
    print(f"two trainers: {time.time() - t0:.0f} s")
