"""One prepared accelerator check: the train step, encoding and the bridge precompute on the device at hand.

    bash benchmarks/device_check.sh [OUT_DIR] [--smoke]          # OUT_DIR defaults to $OUT, else benchmarks/results/device_check
    python benchmarks/device_check.py --out DIR [--smoke] [--budget 450] [--peak-tflops X] [--only train,bridge]

Made for one GPU (JAX with CUDA installed; no network: random weights and synthetic data only, nothing
from the kit or a hub) and bounded to 8 minutes: every section runs in its own process under its own
time limit (shrunk to what is left of ``--budget`` seconds), and a section that fails or runs out of
time is recorded with its error and the next one runs. ``--smoke`` runs every section at tiny sizes
(the test suite does, on CPU). Sections:

  env     devices, versions, the peak dense bf16 FLOP/s that MFU is relative to (the device's data sheet,
          or ``--peak-tflops``) and a measured square bf16 matmul (8192^3): what the device delivers.
  train   ``trainer.build_sharded_step`` on BERT-base (vocab 30522, 12 layers, d 768): SPLADE-max,
          InfoNCE over in-batch negatives + FLOPS regularisers, AdamW; bf16 compute, float32 parameters
          and optimiser state, ``remat_policy`` none, head unchunked; queries 32 + documents 256 tokens;
          two batch sizes. examples/s, tokens/s, MFU from FLOPs counted analytically (``train_flops``)
          and from XLA's cost analysis of the compiled step, peak device memory (``memory_stats()``).
  encode  SPLADE encoding (forward only) of the same model in bf16: texts/s, tokens/s, MFU.
  bridge  the bridge precompute at 32k x 250k x 1024: exact alpha-entmax (alpha 4) of the similarities
          of synthetic unit vectors (``bridge.entmax.similarity_entmax``, the inputs of
          benchmarks/bench_bridge.py's synthetic case), compilation included.

Writes ``device_check.json`` (everything, rewritten after every section) and ``device_check.md`` (one
table) into the output folder.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# Dense bf16 peak FLOP/s by device kind (data sheets; SXM parts for NVIDIA). First match wins.
PEAK_BF16_TFLOPS = (("H200", 989.4), ("H100", 989.4), ("A100", 312.0), ("L40", 181.0), ("L4", 121.0),
                    ("TPU v6", 918.0), ("TPU v5p", 459.0), ("TPU v5", 197.0), ("TPU v4", 275.0))
BERT_BASE = dict(vocab_size=30522, hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072)
SIZES = {
    "full": dict(model=BERT_BASE, query_len=32, doc_len=256, train_batches=(64, 256), encode_batch=512,
                 encode_len=256, bridge=(32768, 250000, 1024), matmul=8192, steps=20, seconds=15.0),
    "smoke": dict(model=dict(vocab_size=1000, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128),
                  query_len=8, doc_len=32, train_batches=(4, 8), encode_batch=8, encode_len=32,
                  bridge=(256, 2048, 64), matmul=256, steps=3, seconds=5.0),
}
# Time limit of each section in seconds (full sizes; the smoke run is bounded by --budget alone).
LIMITS = {"env": 45, "train": 110, "encode": 70, "bridge": 120}


# ----------------------------------------------------------------------------- FLOPs


def encoder_macs_per_token(model: dict, length: int) -> int:
    """Multiply-adds per token of one forward pass through the encoder and the SPLADE head: per layer
    the q/k/v/output projections (4 d^2), the FFN (2 d F) and attention over ``length`` tokens (scores
    and context, 2 L d); then the MLM transform (d^2) and the vocabulary projection (d V)."""
    d, f, v = model["hidden_size"], model["intermediate_size"], model["vocab_size"]
    return model["num_layers"] * (4 * d * d + 2 * d * f + 2 * length * d) + d * d + d * v


def encode_flops(model: dict, batch: int, length: int) -> int:
    return 2 * batch * length * encoder_macs_per_token(model, length)


def train_flops(model: dict, batch: int, query_len: int, doc_len: int) -> int:
    """FLOPs of one train step on ``batch`` (query, positive) pairs: forward + backward (twice the
    forward's matmuls) of both encodings, plus the in-batch score matrix q @ d^T. Embedding lookups,
    normalisations, activations and the optimiser update are not counted (a few per mille)."""
    forward = encode_flops(model, batch, query_len) + encode_flops(model, batch, doc_len)
    return 3 * (forward + 2 * batch * batch * model["vocab_size"])


def peak_tflops(device_kind: str) -> float | None:
    return next((p for name, p in PEAK_BF16_TFLOPS if name.lower() in device_kind.lower()), None)


# ----------------------------------------------------------------------------- sections (child processes)


def _timed(fn, args, steps: int, seconds: float = float("inf")):
    """Call ``fn(*args)`` (it returns the next args) ``steps`` times, or fewer once ``seconds`` have passed,
    and wait for the devices; returns (last args, calls, seconds)."""
    import jax

    t0, n = time.perf_counter(), 0
    while n < steps and (n == 0 or time.perf_counter() - t0 < seconds):
        args = fn(*args)
        n += 1
    jax.block_until_ready(args)
    return args, n, time.perf_counter() - t0


def _cost_flops(compiled) -> float | None:
    """FLOPs of a compiled program by XLA's cost analysis (None where the backend gives none)."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # not every backend implements it: a missing figure, not a failed section
        return None
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost["flops"]) if cost and "flops" in cost else None


def _memory(emit) -> None:
    import jax

    stats = jax.local_devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        emit(peak_memory_gib=stats["peak_bytes_in_use"] / 2**30)


def _model(size: dict, **overrides):
    from bench_train import random_model

    from sembridge_jax.models import EncoderConfig

    return random_model(EncoderConfig(**size["model"], dtype="bfloat16", param_dtype="float32", splade_chunk_size=0,
                                      remat_policy="none", **overrides))


def _ids(rng, shape, vocab: int):
    import numpy as np

    ids = rng.integers(1000 if vocab > 2000 else 5, vocab, shape).astype(np.int32)
    ids[..., 0], ids[..., -1] = 2, 3  # stand-ins for [CLS] ... [SEP]; no padding
    return ids


def section_env(size: dict, emit) -> None:
    import jax
    import jax.numpy as jnp

    device = jax.devices()[0]
    versions = {}
    for name in ("jax", "jaxlib", "flax", "optax", "numpy"):
        try:
            versions[name] = __import__(name).__version__
        except Exception as e:  # a missing package is a finding, not a crash
            versions[name] = f"unavailable: {e}"
    emit(platform=device.platform, device_kind=device.device_kind, device_count=jax.device_count(),
         versions=versions, peak_bf16_tflops=peak_tflops(device.device_kind))
    n = size["matmul"]
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.bfloat16)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.bfloat16)
    matmul = jax.jit(lambda a, b: (a @ b * (1.0 / n) ** 0.5, b))  # chained, so timing waits for every product
    jax.block_until_ready(matmul(a, b))
    _, calls, seconds = _timed(matmul, (a, b), 10 * size["steps"], size["seconds"] / 3)
    emit(matmul_n=n, matmul_tflops=2 * n**3 * calls / seconds / 1e12)


def section_train(size: dict, emit, batch: int) -> None:
    import numpy as np
    from bench_train import sharded_train_step

    lq, ld = size["query_len"], size["doc_len"]
    step, state = sharded_train_step(_model(size, max_position_embeddings=max(512, ld)), clip_norm=1.0)
    rng = np.random.default_rng(0)
    q, d = _ids(rng, (batch, lq), size["model"]["vocab_size"]), _ids(rng, (batch, 1, ld), size["model"]["vocab_size"])
    host = {"query_input_ids": q, "query_attention_mask": np.ones_like(q),
            "doc_input_ids": d, "doc_attention_mask": np.ones_like(d)}
    batch_arrays = step.put_batch(host)
    emit(batch=batch, query_len=lq, doc_len=ld, tokens_per_example=lq + ld, devices=step.mesh.size,
         flops_analytic=train_flops(size["model"], batch, lq, ld))
    t0 = time.perf_counter()
    compiled = step.step.lower(state, batch_arrays).compile()
    emit(compile_s=time.perf_counter() - t0, flops_xla=_cost_flops(compiled))
    run = lambda state, metrics: compiled(state, batch_arrays)
    (state, metrics), _, _ = _timed(run, (state, None), 3)  # warm-up
    emit(first_loss=float(metrics["loss"]))
    (state, metrics), steps, seconds = _timed(run, (state, metrics), size["steps"], size["seconds"])
    step_s = seconds / steps
    emit(timed_steps=steps, step_s=step_s, examples_per_s=batch / step_s, tokens_per_s=batch * (lq + ld) / step_s,
         last_loss=float(metrics["loss"]))
    _memory(emit)


def section_encode(size: dict, emit) -> None:
    import jax
    import numpy as np

    from sembridge_jax.models.state import merge_model, split_model

    batch, length = size["encode_batch"], size["encode_len"]
    layout, params = split_model(_model(size, max_position_embeddings=max(512, length)))
    encode = jax.jit(lambda p, ids, mask: merge_model(layout, p).splade(ids, mask))
    ids = jax.device_put(_ids(np.random.default_rng(1), (batch, length), size["model"]["vocab_size"]))
    mask = jax.numpy.ones_like(ids)
    emit(batch=batch, length=length, flops_analytic=encode_flops(size["model"], batch, length))
    t0 = time.perf_counter()
    compiled = encode.lower(params, ids, mask).compile()
    emit(compile_s=time.perf_counter() - t0, flops_xla=_cost_flops(compiled))
    jax.block_until_ready(compiled(params, ids, mask))
    run = lambda out: (compiled(params, ids, mask),)  # in order on the device: the last one waits for all
    _, calls, seconds = _timed(run, (None,), size["steps"], size["seconds"])
    step_s = seconds / calls
    emit(timed_steps=calls, step_s=step_s, examples_per_s=batch / step_s, tokens_per_s=batch * length / step_s)
    _memory(emit)


def section_bridge(size: dict, emit) -> None:
    import numpy as np
    from bench_bridge import synthetic_inputs

    from sembridge_jax.bridge.entmax import similarity_entmax

    n_t, n_s, dim = size["bridge"]
    t0 = time.perf_counter()
    targets, sources = synthetic_inputs(n_t, n_s, dim)
    emit(target_rows=n_t, source_rows=n_s, dim=dim, alpha=4.0, inputs_s=time.perf_counter() - t0)
    t0 = time.perf_counter()
    rows, _, weights, stats = similarity_entmax(targets, sources, 4.0, progress=False)
    seconds = time.perf_counter() - t0
    emit(step_s=seconds, examples_per_s=n_t / seconds, ms_per_row=1e3 * seconds / n_t,
         similarity_tflops=2 * n_t * n_s * dim / seconds / 1e12, nnz_per_row=len(weights) / n_t,
         rows_summing_to_one=bool(np.allclose(np.bincount(rows, weights, minlength=n_t), 1.0, atol=1e-4)),
         stats={k: int(v) for k, v in stats.items()})
    _memory(emit)


SECTIONS = {"env": section_env, "train": section_train, "encode": section_encode, "bridge": section_bridge}


def child(name: str, kwargs: dict, smoke: bool) -> None:
    sys.path[:0] = [str(REPO), str(HERE)]
    result: dict = {}

    def emit(**values):
        result.update(values)
        print("RESULT " + json.dumps(result), flush=True)

    SECTIONS[name](SIZES["smoke" if smoke else "full"], emit, **kwargs)


# ----------------------------------------------------------------------------- the parent


def _stop_children(signum, frame):
    """SIGTERM/SIGINT (e.g. the shell script's overall timeout): no section may outlive this process."""
    for pid in list(_RUNNING):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    sys.exit(128 + signum)


_RUNNING: set[int] = set()


def run_section(name: str, kwargs: dict, limit: float, smoke: bool) -> dict:
    """Run one section in a child process group under ``limit`` seconds; its last RESULT plus a status."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--section", name, "--kwargs", json.dumps(kwargs)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd + (["--smoke"] if smoke else []), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, process_group=0, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    _RUNNING.add(proc.pid)
    try:
        out, err = proc.communicate(timeout=limit)
        status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        status = f"timeout after {limit:.0f} s"
    finally:
        _RUNNING.discard(proc.pid)
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    result = json.loads(lines[-1][len("RESULT "):]) if lines else {}
    result.update(section=name, status=status, wall_s=time.perf_counter() - t0, **kwargs)
    if status != "ok":
        result["error"] = err.strip()[-2000:]
    return result


def with_mfu(result: dict, peak: float | None) -> dict:
    step_s = result.get("step_s")
    for source in ("analytic", "xla"):
        flops = result.get(f"flops_{source}")
        if peak and step_s and flops:
            result[f"mfu_{source}"] = flops / step_s / (peak * 1e12)
    return result


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(report: dict) -> str:
    env = report["env"]
    lines = [f"Device check: {env.get('device_kind', '?')} x {env.get('device_count', '?')} "
             f"({env.get('platform', '?')}), jax {env.get('versions', {}).get('jax', '?')}; MFU relative to "
             f"{_fmt(report['peak_bf16_tflops'], '.1f')} TFLOP/s dense bf16; measured {env.get('matmul_n', '?')}^3 bf16 "
             f"matmul: {_fmt(env.get('matmul_tflops'), '.1f')} TFLOP/s. Sizes: {report['setup']['sizes']}.", "",
             "| check | setting | s / step | examples/s | tokens/s | MFU (analytic) | MFU (XLA cost) "
             "| peak memory GiB | status |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    model = "BERT-base" if report["setup"]["sizes"] == "full" else "tiny BERT"
    for r in report["sections"]:
        if r["section"] == "train":
            setting = f"{model} train step, batch {r.get('batch')} x ({r.get('query_len')} + {r.get('doc_len')}) tokens"
        elif r["section"] == "encode":
            setting = f"{model} SPLADE encode, batch {r.get('batch')} x {r.get('length')} tokens"
        elif r["section"] == "bridge":
            setting = (f"bridge entmax {r.get('target_rows')} x {r.get('source_rows')} x {r.get('dim')} "
                       f"(examples = target rows)")
        else:
            setting = r["section"]
        lines.append(f"| {r['section']} | {setting} | {_fmt(r.get('step_s'), '.4g')} | {_fmt(r.get('examples_per_s'), '.4g')} "
                     f"| {_fmt(r.get('tokens_per_s'), '.4g')} | {_fmt(r.get('mfu_analytic'), '.1%')} "
                     f"| {_fmt(r.get('mfu_xla'), '.1%')} | {_fmt(r.get('peak_memory_gib'), '.2f')} | {r['status']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or REPO / "benchmarks/results/device_check"))
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (CPU test of the script)")
    ap.add_argument("--budget", type=float, default=450.0, help="seconds for all sections together")
    ap.add_argument("--peak-tflops", type=float, help="peak dense bf16 TFLOP/s for MFU (default: by device kind)")
    ap.add_argument("--only", type=lambda s: s.split(","), default=list(LIMITS),
                    help="comma-separated sections to run (default: all), e.g. train,bridge for a rerun")
    ap.add_argument("--section", choices=sorted(SECTIONS), help=argparse.SUPPRESS)
    ap.add_argument("--kwargs", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.section:
        child(args.section, json.loads(args.kwargs), args.smoke)
        return 0
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop_children)
    size = SIZES["smoke" if args.smoke else "full"]
    plan = [("env", {}), *[("train", {"batch": b}) for b in size["train_batches"]], ("encode", {}), ("bridge", {})]
    unknown = sorted(set(args.only) - set(LIMITS))
    if unknown:
        ap.error(f"--only: unknown sections {unknown}; choose from {list(LIMITS)}")
    plan = [(name, kwargs) for name, kwargs in plan if name in args.only]
    args.out.mkdir(parents=True, exist_ok=True)
    deadline = time.perf_counter() + args.budget
    report = {"setup": {"command": "python benchmarks/device_check.py " + " ".join(argv or sys.argv[1:]),
                        "sizes": "smoke" if args.smoke else "full", "budget_s": args.budget,
                        "started": time.strftime("%Y-%m-%d %H:%M:%S")},
              "env": {}, "peak_bf16_tflops": args.peak_tflops, "sections": []}
    for name, kwargs in plan:
        left = deadline - time.perf_counter()
        limit = left if args.smoke else min(LIMITS[name], left)
        if limit < 1:
            result = {"section": name, "status": "skipped: time budget spent", **kwargs}
        else:
            result = run_section(name, kwargs, limit, args.smoke)
        if name == "env":
            report["env"] = result
            report["peak_bf16_tflops"] = args.peak_tflops or result.get("peak_bf16_tflops")
        report["sections"].append(with_mfu(result, report["peak_bf16_tflops"]))
        print(f"{name} {kwargs or ''}: {result['status']} ({result.get('wall_s', 0):.0f} s)", flush=True)
        (args.out / "device_check.json").write_text(json.dumps(report, indent=2))
        (args.out / "device_check.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
