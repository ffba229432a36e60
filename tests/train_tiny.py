"""A tiny, fast training setup shared by the tests/test_train_*.py files, and a CLI that runs it
in a subprocess (for the kill / SIGTERM / multi-device tests):

    python tests/train_tiny.py WORKDIR [--steps N] [--delay S] [--out params.npz] [--lambda-flops X]
                               [--poison-step K] [--log-every N] [--prefetch N]

``--delay`` sleeps before every batch so a test can kill the run between steps.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
NUM_WORDS = 123  # vocabulary of 128: splits evenly over 2, 4 or 8 devices
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_tokenizer(folder: Path):
    """A WordPiece tokenizer over SPECIALS + w0..w{NUM_WORDS-1} (whole words only)."""
    from transformers import AutoTokenizer, BertTokenizer

    if not (folder / "tokenizer_config.json").exists():
        words = SPECIALS + [f"w{i}" for i in range(NUM_WORDS)]
        BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(str(folder))
    return AutoTokenizer.from_pretrained(str(folder))


def tiny_dataset(path: Path, n: int = 64, seed: int = 0) -> Path:
    """Query -> document pairs that share two words: lexical matching is learnable."""
    rng = np.random.default_rng(seed)
    with path.open("w") as f:
        for _ in range(n):
            words = rng.choice(NUM_WORDS, size=8, replace=False)
            f.write(json.dumps({"query": f"w{words[0]} w{words[1]}",
                                "positive": " ".join(f"w{w}" for w in words)}) + "\n")
    return path


def tiny_beir(folder: Path, seed: int = 1) -> Path:
    """A BEIR folder (split dev) of 24 documents of 8 words; queries q0..q11 are two words of d0..d11."""
    rng = np.random.default_rng(seed)
    (folder / "qrels").mkdir(parents=True)
    corpus, queries, qrels = [], [], ["query-id\tcorpus-id\tscore"]
    for i in range(24):
        ws = rng.choice(NUM_WORDS, 8, replace=False)
        corpus.append(json.dumps({"_id": f"d{i}", "title": "", "text": " ".join(f"w{x}" for x in ws)}))
        if i < 12:
            queries.append(json.dumps({"_id": f"q{i}", "text": f"w{ws[0]} w{ws[1]}"}))
            qrels.append(f"q{i}\td{i}\t1")
    for name, lines in (("corpus.jsonl", corpus), ("queries.jsonl", queries), ("qrels/dev.tsv", qrels)):
        (folder / name).write_text("\n".join(lines) + "\n")
    return folder


def tiny_model(vocab_size: int, seed: int = 0):
    from flax import nnx

    from sembridge_jax.models import EncoderConfig, build_model

    cfg = EncoderConfig(vocab_size=vocab_size, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                        max_position_embeddings=32, splade_chunk_size=8)
    return build_model(cfg, nnx.Rngs(seed))


def tiny_config(workdir: Path, data_path: Path, *, steps: int = 12, lambda_flops: float = 1e-3):
    from sembridge_jax.config import default_config

    c = default_config()
    c.workdir = str(workdir)
    c.seed = 0
    c.data.train.type = "jsonl"
    c.data.train.path = str(data_path)
    c.model.max_query_length = 8
    c.model.max_doc_length = 16
    c.loss.preset = "none"
    c.loss.lambda_q = lambda_flops
    c.loss.lambda_d = lambda_flops
    c.loss.flops_warmup_steps = 0
    c.train.num_steps = steps
    c.train.batch_size = 8
    c.train.learning_rate = 1e-3
    c.train.warmup_steps = 0
    c.train.decay = "constant"
    c.train.log_every = 1
    c.checkpoint.every_steps = 3
    c.checkpoint.keep = 2
    c.checkpoint.async_save = True
    c.mesh.axes = (("data", -1), ("fsdp", 1))
    c.mesh.rules = (("vocab", "fsdp"), ("mlp", "fsdp"))
    return c


def poisoned(objective, poison_step: int):
    """Wrap an objective so that step ``poison_step`` (0-based) produces NaN loss and gradients."""
    import jax.numpy as jnp

    def wrapped(model, batch, step):
        loss, metrics = objective(model, batch, step)
        loss = loss * jnp.where(step == poison_step, jnp.nan, 1.0)
        return loss, dict(metrics, loss=loss)

    return wrapped


class SlowData:
    """A data stream that sleeps after making every batch (and otherwise is the wrapped one): the
    prefetching thread then holds a batch read ahead while the loop saves, so a checkpoint that
    recorded the data's own position instead of the consumed batch's would skip a batch on resume."""

    def __init__(self, data, delay: float):
        self.data, self.delay = data, delay

    def next_batch(self):
        batch = self.data.next_batch()
        time.sleep(self.delay)
        return batch

    def state(self):
        return self.data.state()

    def restore(self, state):
        self.data.restore(state)


def run(workdir: Path, *, steps: int, poison_step: int = -1, lambda_flops: float = 1e-3, delay: float = 0.0,
        log_every: int = 1, prefetch: int | None = None, average_every: int = 0, keep: int = 2):
    """Train the tiny setup in ``workdir`` (data and tokenizer created there once); ``prefetch`` None keeps
    the default of ``train.prefetch``; ``keep`` checkpoints (every 3 steps) are kept."""
    from sembridge_jax.training import losses, trainer
    from sembridge_jax.training.batches import TrainData

    workdir.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_tokenizer(workdir / "tokenizer")
    data_path = workdir / "train.jsonl"
    if not data_path.exists():
        tiny_dataset(data_path)
    config = tiny_config(workdir, data_path, steps=steps, lambda_flops=lambda_flops)
    config.train.log_every = log_every
    config.train.average_every = average_every
    config.checkpoint.keep = keep
    if prefetch is not None:
        config.train.prefetch = prefetch
    objective = trainer.splade_objective(losses.loss_settings(config))
    if poison_step >= 0:
        objective = poisoned(objective, poison_step)
    data = TrainData(config, tokenizer, process_index=0, process_count=1)
    if delay:
        data = SlowData(data, delay)
    return trainer.fit(config, tiny_model(len(tokenizer)), workdir, data, objective=objective)


def params_of(model) -> dict[str, np.ndarray]:
    from sembridge_jax.models.state import split_model

    return {k: np.asarray(v) for k, v in split_model(model)[1].items()}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--poison-step", type=int, default=-1)
    ap.add_argument("--lambda-flops", type=float, default=1e-3)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--log-every", type=int, default=1)
    ap.add_argument("--prefetch", type=int)
    ap.add_argument("--average-every", type=int, default=0)
    ap.add_argument("--keep", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    result = run(args.workdir, steps=args.steps, poison_step=args.poison_step, lambda_flops=args.lambda_flops,
                 delay=args.delay, log_every=args.log_every, prefetch=args.prefetch,
                 average_every=args.average_every, keep=args.keep)
    if args.out:
        np.savez(args.out, **params_of(result.model))
    print(f"FIT {result.status} {result.step}", flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    main()
