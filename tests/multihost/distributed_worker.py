"""Worker for tests/test_multihost.py: exercise ``initialise_distributed`` and ``run_on_main_process``.

Usage: python distributed_worker.py OUT_DIR [BUILD_SECONDS]. Joins the job described by SEMBRIDGE_*
variables, runs a precompute (taking BUILD_SECONDS) that appends one line per build to
OUT_DIR/builds.txt, checks every process reads the same artifact, that a failing build raises on
every process (no hang) and that a collective still works. Writes OUT_DIR/result-<process>.json.
"""
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils

from sembridge_jax.training.distributed import initialise_distributed, run_on_main_process

out = Path(sys.argv[1])
build_seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0  # a slow build (beyond gloo's 30 s)
plan = initialise_distributed(timeout_s=60)  # before anything touches a device (importing jax does not)
again = initialise_distributed(timeout_s=60)


def build(path):
    time.sleep(build_seconds)
    with open(out / "builds.txt", "a") as f:
        f.write(f"process {jax.process_index()}\n")
    path.mkdir()
    (path / "alignment.json").write_text(json.dumps({"built_by": jax.process_index(), "rows": [1, 2, 3]}))


def load(path):
    return json.loads((path / "alignment.json").read_text())


first = run_on_main_process(build, out / "artifact", load_fn=load)
second = run_on_main_process(build, out / "artifact", load_fn=load)  # reused: no second build


def broken(path):
    raise OSError("disk full (simulated)")


try:
    run_on_main_process(broken, out / "broken")
    failure = None
except Exception as e:  # noqa: BLE001 - the test checks the type and message
    failure = f"{type(e).__name__}: {e}"

gathered = multihost_utils.process_allgather(np.int32(jax.process_index()))  # a collective after the waits
(out / f"result-{jax.process_index()}.json").write_text(json.dumps({
    "plan": [plan.mode, plan.num_processes, plan.process_id],
    "idempotent": again is plan,
    "process_count": jax.process_count(),
    "devices": jax.device_count(),
    "first": first,
    "second": second,
    "failure": failure,
    "gathered": gathered.tolist(),
}))
