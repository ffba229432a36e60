"""Transfer an English SPLADE encoder to a new language and fine-tune it: the whole job.

    python train.py --config configs/demo_ko.py [--workdir DIR_OR_GS_URL] [--config.train.learning_rate=2e-5 ...]

For the init method ``config.init.method`` and each of ``config.compare.methods``: build (or load) the
vocabulary alignment, apply it, evaluate zero-shot, fine-tune (Orbax checkpoints, resume, SIGTERM save,
NaN guard, metrics JSONL/TensorBoard/PNG), evaluate again and export the main model
(``sembridge_jax/pipeline.py``). Finally prints and writes (``<workdir>/results.{json,md}``) the table
of zero-shot and fine-tuned metrics per method. Rerunning the same command resumes wherever the job stopped.

Several processes (a TPU pod, or ``SEMBRIDGE_COORDINATOR`` / ``SEMBRIDGE_NUM_PROCESSES`` /
``SEMBRIDGE_PROCESS_ID``, see ``training/distributed.py``) each run this same command. A SIGTERM to any
of them makes all of them save the same step.

Exit status: 0 done; 1 error (one line ``error: ...`` on stderr: a bad config, data or path, non-finite
training values, a full disk, another run holding the workdir; ``--debug`` or ``SEMBRIDGE_DEBUG=1`` also
prints the traceback); 2 bad command line; 75 (EX_TEMPFAIL) preempted: checkpoint saved, rerun to resume.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys

import jax

from sembridge_jax import pipeline
from sembridge_jax.cli import EXIT_CODES, EXIT_PREEMPTED, run_cli
from sembridge_jax.config import parse_config_args
from sembridge_jax.evaluation.report import markdown_table
from sembridge_jax.storage import as_path
from sembridge_jax.training.distributed import initialise_distributed, is_main_process
from sembridge_jax.training.lock import workdir_lock

log = logging.getLogger("train")


def build_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=EXIT_CODES)


def main(argv=None) -> int:
    initialise_distributed()  # before anything touches a jax device
    # force: importing orbax already made absl call basicConfig() with its defaults
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True)
    for noisy in ("absl", "httpx", "httpx2"):  # Orbax logs every file it writes, the hub client every request
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _, config = parse_config_args(argv, build_parser())
    workdir = as_path(config.workdir)  # local or gs://...
    workdir.mkdir(parents=True, exist_ok=True)
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # a resumed run skips recompiling
        jax.config.update("jax_compilation_cache_dir", str(workdir / "jax_cache"))
    # One writer per workdir (process 0 holds it for the whole job): taken before config.json is written.
    with workdir_lock(workdir) if is_main_process() else contextlib.nullcontext():
        return run(config, workdir)


def run(config, workdir) -> int:
    pipeline.check_settings(config)  # a resume with changed settings refuses before config.json changes
    if is_main_process():
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
    log.info("devices: %d (%s), processes: %d", jax.device_count(), jax.devices()[0].platform, jax.process_count())
    rows = pipeline.run(config)
    if rows is None:
        return EXIT_PREEMPTED  # a supervisor (tpu_setup/watch.py) relaunches instead of tearing down
    if is_main_process():
        table = markdown_table(rows)
        (workdir / "results.json").write_text(json.dumps(rows, indent=2))
        (workdir / "results.md").write_text(table)
        print(f"\nheld-out evaluation ({config.eval.beir or 'none'}, split {config.eval.split}):\n{table}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
