"""Training speed and memory on CPU: our train step vs sentence-transformers, per remat policy; and the
demo config's training loop vs another checkout of this repository (e.g. the previous commit).

    python benchmarks/bench_train.py [--size base|tiny] [--steps 2] [--policies none,head,...] [--out FILE]
    python benchmarks/bench_train.py --demo [--baseline-repo DIR] [--reps 3] [--out FILE]

Train step (default mode). Both sides train a randomly initialised BERT-base masked-LM (vocab
30522, 12 layers, hidden 768; ours built by one jitted init) with SPLADE-max on the same batch: 16 queries x 32 tokens and 16
positives x 128 tokens (random ids, no padding), InfoNCE over in-batch negatives + FLOPS regularisers
(q 5e-5, d 3e-5), AdamW lr 2e-5.
- ours: ``training.trainer.build_sharded_step`` (jit, donated state, SPLADE head chunked over the
  sequence: ``model.splade_chunk_size``), float32, once per ``model.remat_policy`` in ``--policies``
  (none, head, dots_with_no_batch_dims_saveable, full). ``compiled_temp_mib`` is XLA's scratch memory
  of the compiled step (``memory_analysis()``): deterministic, unlike the resident sizes;
- reference: sentence-transformers ``SparseEncoder`` (MLMTransformer + SpladePooling) with
  ``SpladeLoss(SparseMultipleNegativesRankingLoss)``: loss forward, backward, ``torch.optim.AdamW`` step,
  i.e. the loop ``SparseEncoderTrainer`` runs, without its data-loading and logging overhead.
Each row runs in its own process; peak memory is that process's peak resident set size (ru_maxrss,
parameters + optimiser state + activations + compiler); ``rss_after_steps_mib`` is the resident size
after the timed steps (without the compiler's transient peak). One warm-up step (JAX: compilation) is not
timed; throughput = examples (query + positive pairs) per second over the timed steps. On a shared
machine wall time depends on the other load, so the process CPU time per step is reported too
(``cpu_time_ratio_vs_st`` = their CPU seconds per step / ours).

Demo loop (``--demo``). ``trainer.fit`` on ``configs/demo_ko.py`` (SemBridge init of splade-tiny-en onto
the Korean WordPiece, batch 16, query 16 / document 128 tokens, head chunk 32), the sembridge method only,
without evaluation: the whole loop (tokenisation, placement, step, metrics, progress bar), timed from
the write of the metrics of step ``--demo-warmup`` to that of step ``--demo-warmup + --demo-steps``
(both versions of the loop wait for the devices there). With ``--baseline-repo`` the same measurement
runs on that checkout's code too, alternating, ``--reps`` times each; the ratio is of the medians.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
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
POLICIES = ("none", "head", "dots_with_no_batch_dims_saveable", "full")


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


class TrainSettings(dict):
    """The `train` settings `optim.make_optimizer` reads, with attribute access (no ml_collections needed)."""

    __getattr__ = dict.__getitem__


def sharded_train_step(model, *, clip_norm: float = 0.0):
    """(``trainer.ShardedStep``, initial state) of this benchmark's objective (InfoNCE + FLOPS q 5e-5 /
    d 3e-5) and AdamW (lr 2e-5, weight decay 0.01, constant) for ``model`` over every device."""
    sys.path.insert(0, str(REPO))
    from sembridge_jax.models.state import split_model
    from sembridge_jax.training import losses, optim, sharding, trainer

    layout, params = split_model(model)
    settings = TrainSettings(learning_rate=LR, num_steps=10_000, warmup_steps=0, decay="constant", weight_decay=0.01,
                             clip_norm=clip_norm, trainable="all")
    tx, _ = optim.make_optimizer(settings, layout.shapes, layout.logical_axes)
    objective = trainer.splade_objective(losses.LossSettings(lambda_q=LAMBDA_Q, lambda_d=LAMBDA_D))
    step = trainer.build_sharded_step(layout, tx, objective, sharding.make_mesh({"data": -1}), [])
    return step, trainer.init_state(params, tx, step.state_sharding)


def random_model(cfg):
    """A randomly initialised encoder built by one jitted program, as JAX code builds a model to train
    (built eagerly, every tensor's initialiser is a program of its own, and at BERT-base size the
    process keeps ~0.3 GB more resident afterwards)."""
    sys.path.insert(0, str(REPO))
    from flax import nnx

    from sembridge_jax.models import build_model

    return nnx.jit(lambda: build_model(cfg, nnx.Rngs(0)))()


def run_jax(size: str, steps: int, chunk: int, policy: str) -> dict:
    sys.path.insert(0, str(REPO))
    import jax
    import numpy as np

    from sembridge_jax.models import EncoderConfig

    hidden, layers, heads, inter = SIZES[size]
    cfg = EncoderConfig(vocab_size=VOCAB, hidden_size=hidden, num_layers=layers, num_heads=heads,
                        intermediate_size=inter, splade_chunk_size=chunk, remat_policy=policy)
    step, state = sharded_train_step(random_model(cfg))
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
    return {"impl": f"sembridge-jax (chunk {chunk}, remat_policy {policy})", "jax": jax.__version__,
            "policy": policy, "first_loss": loss0, "warmup_s": warmup_s, "step_s": elapsed / steps,
            "cpu_s_per_step": cpu / steps, "examples_per_s": BATCH * steps / elapsed, "peak_rss_mib": peak_rss_mib(),
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


def run_demo(repo: Path, steps: int, warmup: int, root: Path) -> dict:
    """steps/s of ``trainer.fit`` on the demo config with the code of ``repo`` (see the module docstring)."""
    sys.path.insert(0, str(repo))
    from sembridge_jax import pipeline
    from sembridge_jax.bridge.apply import apply_alignment
    from sembridge_jax.config import load_config
    from sembridge_jax.training import monitor, trainer
    from sembridge_jax.training.batches import TrainData

    config = load_config(repo / "configs" / "demo_ko.py", [
        f"--config.workdir={root}", "--config.eval.beir=", "--config.compare.methods=()",
        f"--config.train.num_steps={warmup + steps}", f"--config.checkpoint.every_steps={warmup + steps}"])
    job = pipeline.prepare(config)
    alignment = pipeline.alignment_for(config, "sembridge", root)  # cached under root after the first run
    model = apply_alignment(job.source_model, alignment, bias_init=config.init.bias_init,
                            target_tokenizer=job.target_tokenizer)
    marks = {}
    write = monitor.MetricsWriter.write

    def timed_write(self, step, metrics, prefix=""):
        marks.setdefault(int(step), (time.perf_counter(), time.process_time()))
        return write(self, step, metrics, prefix)

    monitor.MetricsWriter.write = timed_write
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=root))
    trainer.fit(config, model, run_dir, TrainData(config, job.target_tokenizer), desc=repo.name)
    (t0, c0), (t1, c1) = marks[warmup], marks[warmup + steps]
    return {"repo": str(repo), "steps": steps, "after_warmup_steps": warmup, "steps_per_s": steps / (t1 - t0),
            "s_per_step": (t1 - t0) / steps, "cpu_s_per_step": (c1 - c0) / steps, "peak_rss_mib": peak_rss_mib()}


def child(args) -> None:
    if args.child == "torch":
        result = run_torch(args.size, args.steps, args.threads)
    elif args.child == "demo":
        result = run_demo(args.repo, args.demo_steps, args.demo_warmup, args.root)
    else:
        result = run_jax(args.size, args.steps, args.chunk, args.child_policy)
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


def demo_main(args, command: str) -> dict:
    repos = [REPO.resolve()] + ([args.baseline_repo.resolve()] if args.baseline_repo else [])
    root = Path(tempfile.mkdtemp(prefix="bench-train-demo-"))
    runs = {str(r): [] for r in repos}
    for rep in range(args.reps):
        for repo in repos if rep % 2 == 0 else repos[::-1]:  # alternate the order against drifting load
            extra = ["--repo", str(repo), "--root", str(root / repo.name), "--demo-steps", str(args.demo_steps),
                     "--demo-warmup", str(args.demo_warmup)]
            runs[str(repo)].append(spawn(args, "demo", *extra))
            r = runs[str(repo)][-1]
            print(f"{repo}: {r['steps_per_s']:.3f} steps/s, {r['cpu_s_per_step']:.3f} CPU s/step", flush=True)
    summary = {repo: {"steps_per_s": [r["steps_per_s"] for r in rs],
                      "median_steps_per_s": statistics.median(r["steps_per_s"] for r in rs),
                      "median_cpu_s_per_step": statistics.median(r["cpu_s_per_step"] for r in rs)}
               for repo, rs in runs.items()}
    report = {"setup": {"config": "configs/demo_ko.py (sembridge only, no evaluation)", "cpu_count": os.cpu_count(),
                        "load_average_at_end": os.getloadavg(), "command": command},
              "runs": runs, "summary": summary}
    if args.baseline_repo:
        ours, base = (summary[str(r)] for r in repos)
        report["speedup_steps_per_s"] = ours["median_steps_per_s"] / base["median_steps_per_s"]
        report["speedup_cpu_time"] = base["median_cpu_s_per_step"] / ours["median_cpu_s_per_step"]
        print(f"steps/s ratio (this / baseline, medians): {report['speedup_steps_per_s']:.2f}x; "
              f"CPU time per step ratio: {report['speedup_cpu_time']:.2f}x")
    return report


def step_main(args, command: str) -> dict:
    torch_row = spawn(args, "torch")
    rows = [spawn(args, "jax", "--child-policy", p) for p in args.policies] + [torch_row]
    for r in rows:
        r["throughput_ratio_vs_st"] = r["examples_per_s"] / torch_row["examples_per_s"]
        r["peak_memory_ratio_vs_st"] = r["peak_rss_mib"] / torch_row["peak_rss_mib"]
        r["cpu_time_ratio_vs_st"] = torch_row["cpu_s_per_step"] / r["cpu_s_per_step"]
    print(f"{'implementation':60s} {'ex/s':>7s} {'s/step':>7s} {'cpu s/step':>10s} {'peak MiB':>9s} "
          f"{'after MiB':>9s} {'XLA tmp':>8s} {'x thrpt':>7s} {'x cpu':>6s} {'x mem':>6s}")
    for r in rows:
        print(f"{r['impl']:60s} {r['examples_per_s']:7.2f} {r['step_s']:7.2f} {r['cpu_s_per_step']:10.2f} "
              f"{r['peak_rss_mib']:9.0f} {r['rss_after_steps_mib']:9.0f} {r.get('compiled_temp_mib', float('nan')):8.0f} "
              f"{r['throughput_ratio_vs_st']:7.2f} {r['cpu_time_ratio_vs_st']:6.2f} {r['peak_memory_ratio_vs_st']:6.2f}")
    return {"setup": {"model": f"BERT-{args.size} MLM, vocab {VOCAB}", "batch": f"{BATCH} q x {QUERY_LEN} + "
                      f"{BATCH} pos x {DOC_LEN} tokens", "timed_steps": args.steps, "cpu_count": os.cpu_count(),
                      "load_average_at_end": os.getloadavg(), "command": command},
            "rows": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    ap.add_argument("--size", choices=sorted(SIZES), default="base")
    ap.add_argument("--chunk", type=int, default=32, help="our SPLADE head's sequence chunk (0 = none)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads")
    ap.add_argument("--policies", type=lambda s: s.split(","), default=list(POLICIES),
                    help="comma-separated model.remat_policy values, one row each")
    ap.add_argument("--demo", action="store_true", help="time the demo config's training loop instead")
    ap.add_argument("--baseline-repo", type=Path, help="--demo: also time this checkout (e.g. a git worktree)")
    ap.add_argument("--reps", type=int, default=3, help="--demo: runs per checkout")
    ap.add_argument("--demo-steps", type=int, default=30)
    ap.add_argument("--demo-warmup", type=int, default=10, help="steps before the timed ones (>= warmup_steps)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--child", choices=["jax", "torch", "demo"], help=argparse.SUPPRESS)
    ap.add_argument("--child-policy", default="head", help=argparse.SUPPRESS)
    ap.add_argument("--repo", type=Path, default=REPO, help=argparse.SUPPRESS)
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return 0
    bad = sorted(set(args.policies) - set(POLICIES))
    if bad:
        ap.error(f"--policies: unknown {bad}; choose from {POLICIES}")
    command = "python benchmarks/bench_train.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = demo_main(args, command) if args.demo else step_main(args, command)
    out = args.out or REPO / "benchmarks" / "results" / ("bench_train_demo.json" if args.demo else "bench_train.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
