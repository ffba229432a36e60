"""Worker for tests/test_multihost.py: the real pipeline on one process of a (simulated) multi-host job.

    python train_worker.py SETUP WORKDIR --steps N [--resume-at K] [--out DIR]

SETUP (made by the test) holds ``source/`` (a tiny Hugging Face BERT + its tokenizer, also used as
the bridge), ``target/`` (the target tokenizer) and ``train.jsonl``. Every process:
1. joins the job (``initialise_distributed``: SEMBRIDGE_* variables, or single process);
2. gets the alignment through ``run_on_main_process``: process 0 runs ``build_alignment`` (sembridge,
   jax bridge backend) and appends a line to OUT/builds.txt, the others wait and load it;
3. applies it to the source model and trains with ``trainer.fit`` (its mesh, sharding rules, Orbax
   checkpoints and ``TrainData``'s per-process shard of every global batch).
With ``--resume-at K`` it first trains to step K, then calls ``fit`` again to step N with a model
initialised at RANDOM, so matching an uninterrupted run proves the state came from the checkpoint.
Process 0 writes OUT/params.npz (the gathered final parameters) and OUT/result.json; OUT (default
WORKDIR) also gets builds.txt. WORKDIR may be a gs:// URL, OUT is a local folder.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from transformers import AutoTokenizer

from sembridge_jax.bridge.alignment import Alignment
from sembridge_jax.bridge.apply import apply_alignment
from sembridge_jax.bridge.build import build_alignment
from sembridge_jax.hf import load_pretrained
from sembridge_jax.models import build_model
from sembridge_jax.models.state import split_model
from sembridge_jax.storage import as_path
from sembridge_jax.training import trainer
from sembridge_jax.training.batches import TrainData
from sembridge_jax.training.distributed import initialise_distributed, is_main_process, run_on_main_process

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from train_tiny import tiny_config  # noqa: E402  (the trainer's own tiny settings)

cpu = {"start": time.process_time()}  # CPU seconds per phase, printed as it goes (CI budget)


def phase(name):
    cpu[name] = time.process_time()
    print(f"{time.strftime('%H:%M:%S')} {name}: {cpu[name] - list(cpu.values())[-2]:.1f} s CPU", flush=True)


plan = initialise_distributed(timeout_s=60)  # before anything touches a device (importing jax does not)
phase("init")
ap = argparse.ArgumentParser()
ap.add_argument("setup", type=Path)
ap.add_argument("workdir")
ap.add_argument("--out", type=Path)
ap.add_argument("--steps", type=int, required=True)
ap.add_argument("--resume-at", type=int, default=0)
args = ap.parse_args()
source, target = args.setup / "source", args.setup / "target"
workdir, out = as_path(args.workdir), args.out or Path(args.workdir)


def build(path):
    with open(out / "builds.txt", "a") as f:
        f.write(f"process {jax.process_index()} of {jax.process_count()}\n")
    build_alignment(str(source), str(target), method="sembridge", bridge=str(source), bridge_backend="jax",
                    bridge_batch_size=64).save(path)


out.mkdir(parents=True, exist_ok=True)
alignment = run_on_main_process(build, workdir / "alignment", load_fn=Alignment.load)
tokenizer = AutoTokenizer.from_pretrained(str(target))


def config_for(steps):
    c = tiny_config(workdir, args.setup / "train.jsonl", steps=steps)
    c.checkpoint.every_steps = 3  # + the forced save at the end of every fit
    c.checkpoint.keep = 3
    c.mesh.axes = (("data", -1), ("fsdp", 2))  # parameters split over fsdp, batch over data x fsdp
    return c


def aligned_model():
    model, _, _ = load_pretrained(str(source))
    return apply_alignment(model, alignment, target_tokenizer=tokenizer)


model = aligned_model()
phase("alignment")
if args.resume_at:
    first = trainer.fit(config_for(args.resume_at), model, workdir, TrainData(config_for(args.resume_at), tokenizer))
    assert first.step == args.resume_at, first
    model = build_model(model.config, nnx.Rngs(1234))  # must be overwritten by the checkpoint
    phase("fit_1")
result = trainer.fit(config_for(args.steps), model, workdir, TrainData(config_for(args.steps), tokenizer))
phase("fit")

_, params = split_model(result.model)
params = multihost_utils.process_allgather(params, tiled=True)  # global arrays -> full host copies
if is_main_process():
    np.savez(out / "params.npz", **params)
    (out / "result.json").write_text(json.dumps({
        "plan": [plan.mode, plan.num_processes], "devices": jax.device_count(), "step": result.step,
        "status": result.status, "mesh": dict(trainer.sharding.make_mesh(config_for(1).mesh.axes).shape),
    }))
phase("end")
