"""Training throughput and peak memory: our jitted train step vs sentence-transformers on the same CPU.

    python benchmarks/bench_train.py [--steps 3] [--size base|tiny] [--no-remat] [--out benchmarks/results/bench_train.json]

Both sides train the same randomly initialised BERT-base masked-LM (vocab 30522, 12 layers, hidden 768)
with SPLADE-max on the same batch: 16 queries x 32 tokens and 16 positives x 128 tokens (random ids,
no padding), InfoNCE over in-batch negatives + FLOPS regularisers (q 5e-5, d 3e-5), AdamW lr 2e-5.
- ours: ``training.trainer.build_sharded_step`` (jit, donated state, SPLADE head chunked over the
  sequence: ``model.splade_chunk_size``), float32, once as is and once with rematerialised layers
  (``model.remat``; ``--no-remat`` skips that row). ``compiled_temp_mib`` is XLA's scratch memory of
  the compiled train step (``memory_analysis()``): deterministic, unlike the resident sizes;
- reference: sentence-transformers ``SparseEncoder`` (MLMTransformer + SpladePooling) with
  ``SpladeLoss(SparseMultipleNegativesRankingLoss)``: loss forward, backward, ``torch.optim.AdamW`` step,
  i.e. the loop ``SparseEncoderTrainer`` runs, without its data-loading and logging overhead.
Each side runs in its own process; peak memory is that process's peak resident set size (ru_maxrss,
parameters + optimiser state + activations + compiler); ``rss_after_steps_mib`` is the resident size
after the timed steps (without the compiler's transient peak). One warm-up step (JAX: compilation) is not
timed; throughput = examples (query + positive pairs) per second over the timed steps. On a shared
machine wall time depends on the other load, so the process CPU time per step is reported too
(``cpu_time_ratio_vs_st`` = their CPU seconds per step / ours).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BATCH, QUERY_LEN, DOC_LEN = 16, 32, 128
LAMBDA_Q, LAMBDA_D, LR = 5e-5, 3e-5, 2e-5
SIZES = {  # hidden, layers, heads, intermediate
    "base": (768, 12, 12, 3072),
    "tiny": (64, 2, 2, 128),  # for a quick check of the script itself
}
VOCAB = 30522


def batch_arrays(seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    q = rng.integers(1000, VOCAB, (BATCH, QUERY_LEN)).astype(np.int32)
    d = rng.integers(1000, VOCAB, (BATCH, DOC_LEN)).astype(np.int32)
    q[:, 0], d[:, 0], q[:, -1], d[:, -1] = 101, 101, 102, 102  # [CLS] ... [SEP]
    return q, d


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    """Resident set size now (after training steps: without the compiler's transient peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_jax(size: str, steps: int, chunk: int, remat: bool) -> dict:
    sys.path.insert(0, str(REPO))
    import jax
    import ml_collections
    import numpy as np
    from flax import nnx

    from sembridge_jax.models import EncoderConfig, build_model
    from sembridge_jax.models.state import split_model
    from sembridge_jax.training import losses, optim, sharding, trainer

    hidden, layers, heads, inter = SIZES[size]
    cfg = EncoderConfig(vocab_size=VOCAB, hidden_size=hidden, num_layers=layers, num_heads=heads,
                        intermediate_size=inter, splade_chunk_size=chunk, remat=remat)
    layout, params = split_model(build_model(cfg, nnx.Rngs(0)))
    tcfg = ml_collections.ConfigDict(dict(learning_rate=LR, num_steps=1000, warmup_steps=0, decay="constant",
                                          weight_decay=0.01, clip_norm=0.0, trainable="all"))
    tx, _ = optim.make_optimizer(tcfg, layout.shapes, layout.logical_axes)
    objective = trainer.splade_objective(losses.LossSettings(lambda_q=LAMBDA_Q, lambda_d=LAMBDA_D))
    mesh = sharding.make_mesh({"data": -1})
    step = trainer.build_sharded_step(layout, tx, objective, mesh, [])
    state = trainer.init_state(params, tx, step.state_sharding)
    del params
    q, d = batch_arrays()
    host = {"query_input_ids": q, "query_attention_mask": np.ones_like(q),
            "doc_input_ids": d[:, None], "doc_attention_mask": np.ones_like(d)[:, None]}
    batch = step.put_batch(host)
    t0 = time.perf_counter()
    compiled = step.step.lower(state, batch).compile()
    temp_mib = compiled.memory_analysis().temp_size_in_bytes / 2**20
    state, metrics = compiled(state, batch)
    loss0 = float(metrics["loss"])
    warmup_s = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        state, metrics = compiled(state, batch)
    jax.block_until_ready(state)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"impl": f"sembridge-jax (chunk {chunk}{', remat' if remat else ''})", "jax": jax.__version__,
            "first_loss": loss0, "warmup_s": warmup_s, "step_s": elapsed / steps, "cpu_s_per_step": cpu / steps,
            "examples_per_s": BATCH * steps / elapsed, "peak_rss_mib": peak_rss_mib(),
            "rss_after_steps_mib": current_rss_mib(), "compiled_temp_mib": temp_mib}


def run_torch(size: str, steps: int, threads: int) -> dict:
    import torch
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.losses import SparseMultipleNegativesRankingLoss, SpladeLoss
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    torch.set_num_threads(threads)
    hidden, layers, heads, inter = SIZES[size]
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        BertForMaskedLM(BertConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers,
                                   num_attention_heads=heads, intermediate_size=inter)).save_pretrained(tmp)
        vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(100)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        vocab += [f"tok{i}" for i in range(VOCAB - len(vocab))]
        BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(tmp)
        model = SparseEncoder(tmp, device="cpu")
    model.train()
    loss_fn = SpladeLoss(model, SparseMultipleNegativesRankingLoss(model), document_regularizer_weight=LAMBDA_D,
                         query_regularizer_weight=LAMBDA_Q)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    q, d = batch_arrays()
    feats = [{"input_ids": torch.tensor(x, dtype=torch.long), "attention_mask": torch.ones(x.shape, dtype=torch.long),
              "token_type_ids": torch.zeros(x.shape, dtype=torch.long)} for x in (q, d)]

    def one_step():
        opt.zero_grad(set_to_none=True)
        loss = sum(loss_fn(feats, None).values())
        loss.backward()
        opt.step()
        return float(loss)

    t0 = time.perf_counter()
    loss0 = one_step()
    warmup_s = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        one_step()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    import sentence_transformers

    return {"impl": "sentence-transformers SpladeLoss(SparseMNRL)", "torch": torch.__version__,
            "sentence_transformers": sentence_transformers.__version__, "threads": threads,
            "first_loss": loss0, "warmup_s": warmup_s, "step_s": elapsed / steps, "cpu_s_per_step": cpu / steps,
            "examples_per_s": BATCH * steps / elapsed, "peak_rss_mib": peak_rss_mib(),
            "rss_after_steps_mib": current_rss_mib()}


def child(args) -> None:
    if args.impl == "torch":
        result = run_torch(args.size, args.steps, args.threads)
    else:
        result = run_jax(args.size, args.steps, args.chunk, args.remat)
    print("RESULT " + json.dumps(result), flush=True)


def spawn(args, impl: str, *extra: str) -> dict:
    cmd = [sys.executable, __file__, "--child", impl, "--size", args.size, "--steps", str(args.steps),
           "--chunk", str(args.chunk), "--threads", str(args.threads), *extra]
    env = dict(os.environ, JAX_PLATFORMS="cpu", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{impl} run failed:\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    ap.add_argument("--size", choices=sorted(SIZES), default="base")
    ap.add_argument("--chunk", type=int, default=32, help="our SPLADE head's sequence chunk (0 = none)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads")
    ap.add_argument("--no-remat", dest="remat", action="store_false",
                    help="skip the run of ours with rematerialised layers")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "bench_train.json")
    ap.add_argument("--child", choices=["jax", "torch"], help=argparse.SUPPRESS)
    ap.add_argument("--child-remat", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        args.impl, args.remat = args.child, args.child_remat
        child(args)
        return 0
    torch_row = spawn(args, "torch")
    rows = [spawn(args, "jax"), *([spawn(args, "jax", "--child-remat")] if args.remat else []), torch_row]
    for r in rows:
        r["throughput_ratio_vs_st"] = r["examples_per_s"] / torch_row["examples_per_s"]
        r["peak_memory_ratio_vs_st"] = r["peak_rss_mib"] / torch_row["peak_rss_mib"]
        r["cpu_time_ratio_vs_st"] = torch_row["cpu_s_per_step"] / r["cpu_s_per_step"]
    report = {"setup": {"model": f"BERT-{args.size} MLM, vocab {VOCAB}", "batch": f"{BATCH} q x {QUERY_LEN} + "
                        f"{BATCH} pos x {DOC_LEN} tokens", "timed_steps": args.steps, "cpu_count": os.cpu_count(),
                        "command": "python benchmarks/bench_train.py " + " ".join(argv or sys.argv[1:])},
              "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"{'implementation':48s} {'ex/s':>7s} {'s/step':>7s} {'cpu s/step':>10s} {'peak MiB':>9s} "
          f"{'after MiB':>9s} {'XLA tmp':>8s} {'x thrpt':>7s} {'x cpu':>6s} {'x mem':>6s}")
    for r in rows:
        print(f"{r['impl']:48s} {r['examples_per_s']:7.2f} {r['step_s']:7.2f} {r['cpu_s_per_step']:10.2f} "
              f"{r['peak_rss_mib']:9.0f} {r['rss_after_steps_mib']:9.0f} {r.get('compiled_temp_mib', float('nan')):8.0f} "
              f"{r['throughput_ratio_vs_st']:7.2f} "
              f"{r['cpu_time_ratio_vs_st']:6.2f} {r['peak_memory_ratio_vs_st']:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
