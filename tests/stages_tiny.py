"""The adaptation stages on tiny random models (tests/test_stages.py), and a CLI that runs the whole chain
vocab_warmup -> mlm (LoRA) -> align in a subprocess, for the kill -9 tests:

    python tests/stages_tiny.py WORKDIR [--delay S] [--out params.npz]

``--delay`` sleeps after every batch so a test can kill the run between steps. The teacher of the align
stage is a second tiny model over the same words; the alignment copies the first half of the vocabulary
and maps every other target id onto two source ids.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_tiny import NUM_WORDS, REPO, SlowData, params_of, tiny_config, tiny_model, tiny_tokenizer  # noqa: E402

STEPS = 6  # per stage; checkpoints every 2 steps


def tiny_texts(path: Path, n: int = 48, seed: int = 0) -> Path:
    """Runs of consecutive words among the first 30 (w5 w6 w7 ...): a masked word is one of few, and
    predictable from its neighbours."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, 20, n)
    path.write_text("".join(" ".join(f"w{s + i}" for i in range(10)) + "\n" for s in starts))
    return path


def tiny_parallel(path: Path, n: int = 48, seed: int = 0) -> Path:
    """'english<TAB>target' pairs: the target is the english words shifted by one id."""
    rng = np.random.default_rng(seed)
    lines = ["en\tko"]
    for _ in range(n):
        words = rng.choice(NUM_WORDS - 1, 6, replace=False)
        lines.append(" ".join(f"w{w}" for w in words) + "\t" + " ".join(f"w{w + 1}" for w in words))
    path.write_text("\n".join(lines) + "\n")
    return path


def tiny_alignment(vocab_size: int):
    from sembridge_jax.bridge.alignment import Alignment

    half = vocab_size // 2
    copy_src = np.where(np.arange(vocab_size) < half, np.arange(vocab_size), -1)
    new = np.arange(half, vocab_size)
    rows = np.repeat(new, 2)
    cols = np.stack([new - half, new - half + 1], 1).reshape(-1)
    return Alignment(copy_src, rows, cols, np.full(len(rows), 0.5), method="tiny", source_size=vocab_size)


def stage_config(workdir: Path, *, steps: int = STEPS, mlm_rank: int = 4, align_loss: str = "sparse_mse",
                 align_rank: int = 0, stages=("vocab_warmup", "mlm", "align")):
    """The tiny training config with data.text / data.parallel and the chosen stages on."""
    c = tiny_config(workdir, workdir / "train.jsonl", steps=4)
    c.data.train.path = ""  # the stages here read text and parallel pairs only
    c.data.text.path = str(workdir / "texts.txt")
    c.data.parallel.path = str(workdir / "parallel.tsv")
    c.checkpoint.every_steps = 2
    for name in ("vocab_warmup", "mlm", "align"):
        c[name].steps = steps if name in stages else 0
        c[name].batch_size = 8
        c[name].max_length = 16
        c[name].learning_rate = 3e-3
    c.mlm.lora_rank = mlm_rank
    c.align.lora_rank = align_rank
    c.align.loss = align_loss
    return c


def prepare(workdir: Path):
    """Tokenizer, text file and parallel file in `workdir` (made once)."""
    workdir.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_tokenizer(workdir / "tokenizer")
    if not (workdir / "texts.txt").exists():
        tiny_texts(workdir / "texts.txt")
        tiny_parallel(workdir / "parallel.tsv")
    return tokenizer


def teacher_of(tokenizer):
    from sembridge_jax.training.stages import Teacher

    return Teacher(tiny_model(len(tokenizer), seed=7), tokenizer, tiny_alignment(len(tokenizer)))


class SlowInputs:
    """Wrap every stage's data stream in train_tiny.SlowData (a delay after each batch)."""

    def __init__(self, delay: float):
        self.delay = delay

    def __enter__(self):
        from sembridge_jax.training import stages

        self._stream, delay = stages.stage_stream, self.delay

        def slow(*args, **kwargs):
            data, objective = self._stream(*args, **kwargs)
            return SlowData(data, delay), objective

        stages.stage_stream = slow
        return self

    def __exit__(self, *exc):
        from sembridge_jax.training import stages

        stages.stage_stream = self._stream


def run(workdir: Path, *, delay: float = 0.0, **settings):
    from sembridge_jax.training import stages

    tokenizer = prepare(workdir)
    config = stage_config(workdir, **settings)
    inputs = stages.load_stage_inputs(config)
    model = tiny_model(len(tokenizer))
    with SlowInputs(delay):
        return stages.run_stages(config, model, workdir, inputs, tokenizer, teacher_of(tokenizer))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    model, stopped = run(args.workdir, delay=args.delay)
    if stopped is not None:
        print(f"STAGES preempted {stopped.step}", flush=True)
        return
    if args.out:
        np.savez(args.out, **params_of(model))
    print("STAGES done", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    main()
