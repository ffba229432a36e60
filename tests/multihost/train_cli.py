"""Worker for tests/test_multihost.py: ``python train.py ARGS`` itself, with a probe for the test.

    python train_cli.py ARGS...     (the arguments of train.py)

Runs the repository's train.py as ``__main__`` (its ``main()``, exit status and all), with one
addition: every training batch of this process prints ``batch N`` (N counts from 1), and with
``SEMBRIDGE_TEST_BATCH_DELAY=S`` first sleeps S seconds, so the test can see where the run is and
send a signal between two steps. Nothing else is changed.
"""
import itertools
import os
import runpy
import sys
import time
from pathlib import Path

from sembridge_jax.training.batches import TrainData

REPO = Path(__file__).resolve().parents[2]
DELAY = float(os.environ.get("SEMBRIDGE_TEST_BATCH_DELAY", "0"))
_count = itertools.count(1)
_next_batch = TrainData.next_batch


def next_batch(self):
    time.sleep(DELAY)
    print(f"batch {next(_count)}", flush=True)
    return _next_batch(self)


TrainData.next_batch = next_batch
sys.argv = [str(REPO / "train.py"), *sys.argv[1:]]
runpy.run_path(str(REPO / "train.py"), run_name="__main__")
