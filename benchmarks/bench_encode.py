"""Encoding throughput and memory: our jitted Flax SparseEncoder vs sentence-transformers SparseEncoder.

Same CPU, same model folder, same texts, batch size and max length, in one run. Each encoder runs
in its own subprocess so that peak RSS is its own. Also: compiled temp memory of the SPLADE head
unchunked vs chunked (forward, and forward+backward) from jax's memory_analysis().

    python benchmarks/bench_encode.py --kit ../shared --texts 256 --batch-size 32 --max-length 128
    python benchmarks/bench_encode.py --models base --layers 2 --texts 64     # reduced size

Models: "base" = a random BERT-base-sized BertForMaskedLM (vocab 30522; --layers sets the depth,
12 for the real size); "tiny" = the kit's splade-tiny-en (needs --kit). Report ratios, not times.
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
sys.path.insert(0, str(REPO))  # run as a script from anywhere
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def make_texts(tokenizer, n: int, seed: int = 0) -> list[str]:
    """n pseudo-sentences of 8..200 whole words drawn from the tokenizer's vocabulary (deterministic)."""
    import numpy as np

    words = [w for w in tokenizer.get_vocab() if w.isalpha() and w.isascii() and len(w) > 2]
    words.sort()
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(words, size=int(rng.integers(8, 200)))) for _ in range(n)]


def make_random_base(folder: Path, layers: int) -> None:
    """A random BERT-base-sized BertForMaskedLM + the kit-free bert-base-uncased-like tokenizer."""
    import transformers as tf
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    cfg = tf.BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=layers, num_attention_heads=12,
                        intermediate_size=3072)
    tf.BertForMaskedLM(cfg).save_pretrained(str(folder))
    # A WordPiece vocabulary of 30522 synthetic words ("w0", "w1", ...): tokenisation cost is
    # the same for both encoders, so the words need not be English.
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])}
    for i in range(len(vocab), 30522):
        vocab[f"wd{i:05d}".translate(str.maketrans("0123456789", "abcdefghij"))] = i
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    from tokenizers.processors import TemplateProcessing

    tok.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    fast = tf.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                      cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                      model_max_length=512)
    fast.save_pretrained(str(folder))


def worker(which: str, folder: str, n: int, batch_size: int, max_length: int) -> dict:
    """Run one encoder in this process; returns throughput and memory figures."""
    def rss_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    if which == "ours":
        from sembridge_jax.api import SparseEncoder

        enc = SparseEncoder.from_pretrained(folder)
        texts = make_texts(enc.tokenizer, n)

        def run(ts):
            return enc.encode(ts, batch_size=batch_size, max_length=max_length)
    else:
        import torch
        from sentence_transformers import SparseEncoder

        enc = SparseEncoder(folder, device="cpu")
        enc.max_seq_length = max_length
        texts = make_texts(enc.tokenizer, n)

        def run(ts):
            with torch.inference_mode():
                return enc.encode(ts, batch_size=batch_size, convert_to_sparse_tensor=True)
    t0 = time.perf_counter()
    run(texts)  # warm-up: jit compilation of every bucket (ours), allocator warm-up (torch)
    warm = time.perf_counter() - t0
    before = rss_mb()
    t0 = time.perf_counter()
    run(texts)
    dt = time.perf_counter() - t0
    return {"encoder": which, "texts_per_s": n / dt, "warmup_s": warm, "peak_rss_mb": rss_mb(),
            "rss_growth_during_encode_mb": rss_mb() - before}


def head_memory(folder: str, batch: int, seq: int, chunk: int) -> dict:
    """Compiled temp bytes of model.splade (forward; forward+backward) unchunked vs chunked."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from sembridge_jax.hf.load import load_model

    model = load_model(folder)
    graphdef, state = nnx.split(model)
    ids = jnp.ones((batch, seq), jnp.int32)
    mask = jnp.ones((batch, seq), jnp.int32)

    def fwd(state, c):
        return nnx.merge(graphdef, state).splade(ids, mask, chunk_size=c)

    out = {}
    for c in (0, chunk):
        f = jax.jit(lambda s, c=c: fwd(s, c))
        g = jax.jit(jax.grad(lambda s, c=c: fwd(s, c).sum()))
        out[f"chunk{c}"] = {
            "forward_temp_mb": f.lower(state).compile().memory_analysis().temp_size_in_bytes / 2**20,
            "train_temp_mb": g.lower(state).compile().memory_analysis().temp_size_in_bytes / 2**20,
        }
    out["logits_f32_mb"] = batch * seq * model.config.vocab_size * 4 / 2**20
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="base,tiny", help="comma list of base, tiny")
    p.add_argument("--kit", type=Path, help="the shared kit folder (for 'tiny')")
    p.add_argument("--layers", type=int, default=12, help="depth of the random BERT-base model")
    p.add_argument("--texts", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--head-batch", type=int, default=32)
    p.add_argument("--head-seq", type=int, default=256)
    p.add_argument("--head-chunk", type=int, default=32)
    p.add_argument("--worker", nargs=2, metavar=("WHICH", "FOLDER"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.texts, args.batch_size, args.max_length)))
        return 0

    results = {"setup": {k: getattr(args, k) for k in ("texts", "batch_size", "max_length", "layers")},
               "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        folders = {}
        for name in args.models.split(","):
            if name == "base":
                folders[name] = Path(tmp) / "base"
                make_random_base(folders[name], args.layers)
            elif name == "tiny":
                if not args.kit:
                    raise SystemExit("--kit is needed for the 'tiny' model")
                folders[name] = args.kit / "assets" / "splade-tiny-en"
            else:
                raise SystemExit(f"unknown model {name!r} (base, tiny)")
        for name, folder in folders.items():
            row = {}
            for which in ("ours", "st"):
                cmd = [sys.executable, __file__, "--worker", which, str(folder), "--texts", str(args.texts),
                       "--batch-size", str(args.batch_size), "--max-length", str(args.max_length)]
                done = subprocess.run(cmd, capture_output=True, text=True, check=False,
                                      env={**os.environ, "PYTHONPATH": str(REPO)})
                if done.returncode:
                    raise SystemExit(f"{which} worker failed:\n{done.stderr[-3000:]}")
                row[which] = json.loads(done.stdout.strip().splitlines()[-1])
            row["throughput_ratio_ours_over_st"] = row["ours"]["texts_per_s"] / row["st"]["texts_per_s"]
            row["peak_rss_ratio_ours_over_st"] = row["ours"]["peak_rss_mb"] / row["st"]["peak_rss_mb"]
            row["head_memory"] = head_memory(str(folder), args.head_batch, args.head_seq, args.head_chunk)
            results[name] = row
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
