"""`python train.py` end to end on a tiny offline setup, and `python -m sembridge_jax.export --checkpoint`.

Setup: a random tiny Hugging Face BERT (also the bridge, jax backend), a target tokenizer that
reverses the source vocabulary and adds new tokens, lexical-match training pairs and a small BEIR
folder. Checks the job's artifacts, the final table, the resume of a finished job, and that the
exported folder loads in sentence-transformers with the checkpoint's vectors.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from train_tiny import NUM_WORDS, SPECIALS, tiny_beir, tiny_dataset  # noqa: E402

pytestmark = pytest.mark.slow  # subprocesses that import and compile jax programs

CONFIG = '''"""Tiny end-to-end config for tests/test_train_cli.py."""
from pathlib import Path
from sembridge_jax.config import default_config

SETUP = Path(__file__).parent


def get_config():
    c = default_config()
    c.workdir = str(SETUP / "work")
    c.source = str(SETUP / "source")
    c.target_tokenizer = str(SETUP / "target")
    c.bridge.model = str(SETUP / "source")
    c.bridge.backend = "jax"
    c.model.max_query_length = 8
    c.model.max_doc_length = 16
    c.model.splade_chunk_size = 8
    c.data.train.type = "jsonl"
    c.data.train.path = str(SETUP / "train.jsonl")
    c.data.dev.beir = str(SETUP / "beir")
    c.loss.preset = "none"
    c.loss.lambda_q = 1e-3
    c.loss.lambda_d = 1e-3
    c.loss.flops_warmup_steps = 0
    c.train.num_steps = 6
    c.train.batch_size = 8
    c.train.learning_rate = 1e-3
    c.train.warmup_steps = 0
    c.train.log_every = 1
    c.train.eval_every = 3
    c.checkpoint.every_steps = 3
    c.eval.beir = str(SETUP / "beir")
    c.eval.k = 10
    c.eval.metrics = ("nDCG@10", "R@10")
    c.init.method = "sembridge"  # pinned: these tests name its alignment and rows
    c.compare.methods = ("random",)
    return c
'''


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Path:
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    root = tmp_path_factory.mktemp("cli_setup")
    words = [f"w{i}" for i in range(NUM_WORDS)]
    for name, vocab in {"source": SPECIALS + words, "target": SPECIALS + words[::-1] + ["z0", "z1", "z2"]}.items():
        BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(str(root / name))
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(vocab_size=len(SPECIALS) + NUM_WORDS, hidden_size=32, num_hidden_layers=1,
                               num_attention_heads=2, intermediate_size=64, max_position_embeddings=32)
                    ).save_pretrained(root / "source")
    tiny_dataset(root / "train.jsonl")
    tiny_beir(root / "beir")
    (root / "cfg.py").write_text(CONFIG)
    return root


def _env(tmp_path_factory):
    cache = tmp_path_factory.getbasetemp().parent / "jax_cache"
    return dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(cache),
                JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")


def _python(args, env, cwd=REPO) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def job(setup, tmp_path_factory):
    workdir = setup / "run"
    env = _env(tmp_path_factory)
    out = _python(["train.py", "--config", str(setup / "cfg.py"), "--workdir", str(workdir),
                   "--config.train.learning_rate=2e-3"], env).stdout
    return workdir, out, env


def test_train_py_runs_the_whole_job(job):
    workdir, out, _ = job
    rows = json.loads((workdir / "results.json").read_text())
    assert [r["method"] for r in rows] == ["sembridge", "random"]
    for r in rows:
        assert r["steps"] == 6
        assert 0 <= r["zero-shot nDCG@10"] <= 1 and 0 <= r["fine-tuned nDCG@10"] <= 1
    assert "| sembridge |" in out and "fine-tuned nDCG@10" in out
    config = json.loads((workdir / "config.json").read_text())
    assert config["train"]["learning_rate"] == 2e-3 and config["workdir"] == str(workdir)  # overrides applied
    for path in ("checkpoints/6", "metrics.jsonl", "training_curves.png", "model/encoder_config.json",
                 "export/model.safetensors", "export/modules.json", "alignments/sembridge/alignment.npz",
                 "alignments/random/alignment.npz", "compare/random/checkpoints/6"):
        assert (workdir / path).exists(), path
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "dev/nDCG@10" in r] == [3, 6]  # periodic dev evaluation


def test_rerun_resumes_the_finished_job(job):
    workdir, out, env = job
    before = (workdir / "export" / "model.safetensors").read_bytes()
    again = _python(["train.py", "--config", str(workdir.parent / "cfg.py"), "--workdir", str(workdir),
                     "--config.train.learning_rate=2e-3"], env).stdout
    assert json.loads((workdir / "results.json").read_text())[0]["steps"] == 6
    assert again.split("held-out evaluation")[1] == out.split("held-out evaluation")[1]
    assert (workdir / "export" / "model.safetensors").read_bytes() == before


def test_export_from_checkpoint_loads_in_sentence_transformers(job, tmp_path):
    import torch
    from sentence_transformers import SparseEncoder

    from sembridge_jax.export.checkpoint import load_model_from_checkpoint

    workdir, _, env = job
    _python(["-m", "sembridge_jax.export", "--checkpoint", str(workdir), "--out", str(tmp_path / "hf")], env)
    assert (tmp_path / "hf" / "model.safetensors").read_bytes() == (workdir / "export" / "model.safetensors").read_bytes()

    model, tokenizer, step = load_model_from_checkpoint(workdir)
    assert step == 6
    texts = ["w1 w2 w3", "w40 w7"]
    enc = tokenizer(texts, padding="max_length", max_length=8, return_tensors="np")
    ours = np.asarray(model.splade(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]))
    st = SparseEncoder(str(tmp_path / "hf"), device="cpu")
    with torch.no_grad():
        theirs = st.encode(texts, convert_to_tensor=True).to_dense().numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=1e-4)


def test_train_py_runs_the_stages_before_retrieval(setup, tmp_path_factory):
    """mlm (LoRA) and align on, as a user turns them on: each stage trains in its own folder with its own
    curves, then retrieval starts from its result; the export is a plain model (adapter merged)."""
    from stages_tiny import tiny_parallel, tiny_texts

    texts, parallel = tiny_texts(setup / "texts.txt"), tiny_parallel(setup / "parallel.tsv")
    workdir = setup / "staged"
    args = ["train.py", "--config", str(setup / "cfg.py"), "--workdir", str(workdir), "--config.compare.methods=()",
            "--config.mlm.steps=2", "--config.mlm.batch_size=8", "--config.mlm.max_length=16",
            "--config.mlm.lora_rank=2", f"--config.data.text.path={texts}",
            "--config.align.steps=2", "--config.align.batch_size=8", "--config.align.max_length=16",
            f"--config.data.parallel.path={parallel}"]
    _python(args, _env(tmp_path_factory))
    for stage in ("mlm", "align"):
        folder = workdir / "stages" / stage
        assert (folder / "checkpoints" / "2").exists() and (folder / "training_curves.png").exists(), stage
        assert [json.loads(line)["step"] for line in (folder / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert json.loads((workdir / "results.json").read_text())[0]["steps"] == 6
    exported = json.loads((workdir / "export" / "config.json").read_text())
    assert not any("lora" in key for key in exported)  # merged: the export is a plain BERT


def test_gcs_workdir_gives_the_same_job(job, gcs):
    """The whole job on a gs:// workdir (a local GCS server): alignments, Orbax checkpoints, metrics,
    TensorBoard, plot, eval cache, export and results land in the bucket; the table and the exported
    weights equal the local run's; a rerun resumes; the export CLI reads and writes gs:// too."""
    from etils import epath

    local, out, env = job
    env = dict(env, **gcs.env)
    remote = gcs.path("run")
    args = ["train.py", "--config", str(local.parent / "cfg.py"), "--workdir", remote, "--config.train.learning_rate=2e-3"]
    first = _python(args, env).stdout
    assert first.split("held-out evaluation")[1] == out.split("held-out evaluation")[1]
    run = epath.Path(remote)
    for path in ("checkpoints/6", "metrics.jsonl", "training_curves.png", "model/encoder_config.json",
                 "model/tokenizer_config.json", "export/modules.json", "alignments/sembridge/alignment.npz",
                 "compare/random/checkpoints/6", "results.md"):
        assert (run / path).exists(), path
    assert [p.name for p in (run / "tensorboard").iterdir() if p.name.startswith("events.out.tfevents.")]
    assert list((run / "eval_cache").iterdir())
    assert (run / "metrics.jsonl").read_text() == (local / "metrics.jsonl").read_text()
    assert (run / "export" / "model.safetensors").read_bytes() == (local / "export" / "model.safetensors").read_bytes()

    again = _python(args, env)  # everything is found in the bucket: nothing is retrained
    assert again.stdout.split("held-out evaluation")[1] == out.split("held-out evaluation")[1]
    assert f"resumed from {remote}/checkpoints step 6" in again.stderr

    _python(["-m", "sembridge_jax.export", "--checkpoint", remote, "--out", gcs.path("hf")], env)
    hf = epath.Path(gcs.path("hf"))
    assert (hf / "model.safetensors").read_bytes() == (local / "export" / "model.safetensors").read_bytes()
    assert (hf / "modules.json").exists() and (hf / "tokenizer_config.json").exists()
