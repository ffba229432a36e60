"""The headline command, `python train.py --config configs/ko_splade.py`, and `evaluate.py` on MIRACL, run as
subprocesses against the local hub (tests/hub/): every download goes through the real huggingface_hub /
datasets / transformers / sentence-transformers code to the local server, which serves tiny random stand-ins
with the real file layouts of naver/splade-v3, monologg/kobigbird-bert-base, BAAI/bge-m3, PaDaS-Lab/webfaq and
the gated miracl/miracl + miracl/miracl-corpus. The command line overrides only sizes (steps, batch, lengths,
numbers of queries and training examples); the models, data sets, methods and settings are the config's.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hub.repos import WEBFAQ_KOR_ROWS, all_repos
from hub.server import FakeHub, hub_environment

REPO = Path(__file__).resolve().parents[1]
SIZES = [  # the only overrides: how much is run, not what
    "--config.train.num_steps=4", "--config.train.batch_size=2", "--config.train.warmup_steps=0",
    "--config.train.eval_every=2", "--config.checkpoint.every_steps=2", "--config.data.train.max_examples=2",
    "--config.data.dev.max_queries=3", "--config.eval.max_queries=5", "--config.model.max_query_length=16",
    "--config.model.max_doc_length=32", "--config.bridge.batch_size=64", "--config.eval.batch_size=8",
]


def test_paper_configs_name_real_webfaq_subsets_and_split():
    from configs import common
    from sembridge_jax.data import hub

    for lang in common.PAPER_TOKENIZERS:
        c = common.paper_config(lang)
        assert c.data.train.subset == hub.webfaq_config(lang) and c.data.train.split == hub.WEBFAQ_SPLIT
        assert (c.data.train.name, c.data.train.query_field, c.data.train.positive_field) == (
            hub.WEBFAQ_REPO, hub.WEBFAQ_QUERY_FIELD, hub.WEBFAQ_ANSWER_FIELD)
        assert c.eval.beir == c.data.dev.beir == hub.MIRACL_REPO and c.eval.subset == lang
        assert c.eval.corpus == c.data.dev.corpus == hub.MIRACL_CORPUS_REPO


@pytest.fixture
def local_hub(tmp_path):
    """The local hub and an environment for subprocesses: the libraries pointed at it (HF_ENDPOINT, empty
    caches, the test token for the gated MIRACL repos), our bridge cache in tmp, and every non-loopback
    HTTP(S) request sent to a dead proxy, so a download that bypassed the local hub fails the test."""
    root = tmp_path
    with FakeHub(all_repos(root / "repos")) as server, hub_environment(server.url, root / "hf-home"):
        env = dict(os.environ, SEMBRIDGE_CACHE=str(root / "sembridge-cache"), JAX_PLATFORMS="cpu",
                   HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9", NO_PROXY="127.0.0.1,localhost",
                   PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        env = {k: v for k, v in env.items() if not k.startswith(("SEMBRIDGE_COORDINATOR", "SEMBRIDGE_NUM",
                                                                 "SEMBRIDGE_PROCESS", "JAX_COORDINATOR"))}
        yield server, env, root


def _run(args: list[str], env: dict, timeout: int = 600) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc.stdout


def _files(server: FakeHub, repo: str) -> set[str]:
    """Repo files downloaded (GET) from the local hub: regular files from the hub server, LFS files (weights,
    parquet, jsonl.gz) from its CDN stand-in, which names them by sha256."""
    entries = next(r.entries for (_, rid), r in server.repos.items() if rid == repo)
    by_sha = {f.sha256: path for path, f in entries.items() if f.lfs}
    out = set()
    for p in server.paths_requested("GET"):
        p = p.split("?")[0]
        if f"/{repo}/resolve/" in p:
            out.add(p.split(f"/{repo}/resolve/", 1)[1].split("/", 1)[1])
        elif p.startswith("/lfs/") and p[len("/lfs/"):] in by_sha:
            out.add(by_sha[p[len("/lfs/"):]])
    return out


@pytest.mark.slow
def test_ko_splade_config_and_evaluate_py_against_the_hub(local_hub):
    """train.py: downloads, alignment (bge-m3 bridge through sentence-transformers), zero-shot MIRACL
    evaluation, WebFAQ fine-tuning with dev evaluations, fine-tuned evaluation and export, for SemBridge and
    the three compared initialisations of the paper config. Then evaluate.py on MIRACL (one test: the
    second half needs the first's run, and a module fixture could be built once per xdist worker)."""
    server, env, root = local_hub
    workdir = root / "ko_splade"
    out = _run(["train.py", "--config", "configs/ko_splade.py", "--workdir", str(workdir), *SIZES], env)
    rows = json.loads((workdir / "results.json").read_text())
    assert [r["method"] for r in rows] == ["sembridge", "mvgauss", "ofa", "random"]
    for r in rows:
        assert r["steps"] == 4 and np.isfinite(r["final_loss"])
        for m in ("zero-shot nDCG@10", "fine-tuned nDCG@10", "zero-shot R@100", "fine-tuned R@100"):
            assert 0 <= r[m] <= 1, (r["method"], m)
    assert "held-out evaluation (miracl/miracl, split dev)" in out
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "dev/nDCG@10" in r] == [2, 4]  # MIRACL dev evaluations
    config = json.loads((workdir / "config.json").read_text())
    assert config["source"] == "naver/splade-v3" and config["bridge"]["model"] == "BAAI/bge-m3"
    assert config["data"]["train"]["split"] == "default" and config["eval"]["corpus"] == "miracl/miracl-corpus"

    # what came from the hub: the models' weights once (safetensors, not also the .bin), the bridge through
    # sentence-transformers, MIRACL's topics / qrels / corpus shards as files, WebFAQ's parquet
    assert {"config.json", "model.safetensors", "vocab.txt"} <= _files(server, "naver/splade-v3")
    assert "pytorch_model.bin" not in _files(server, "naver/splade-v3")
    assert {"modules.json", "1_Pooling/config.json", "model.safetensors"} <= _files(server, "BAAI/bge-m3")
    assert "pytorch_model.bin" not in _files(server, "BAAI/bge-m3")
    assert {"tokenizer_config.json", "vocab.txt"} <= _files(server, "monologg/kobigbird-bert-base")
    assert {"miracl-v1.0-ko/topics/topics.miracl-v1.0-ko-dev.tsv",
            "miracl-v1.0-ko/qrels/qrels.miracl-v1.0-ko-dev.tsv"} <= _files(server, "miracl/miracl")
    assert "miracl.py" not in _files(server, "miracl/miracl")  # the refused script is never run
    assert {f"miracl-corpus-v1.0-ko/docs-{i}.jsonl.gz" for i in range(3)} <= _files(server, "miracl/miracl-corpus")
    webfaq = [s for _, p, s in server.requests if "kor.parquet" in p]
    assert webfaq and all(s in (206, 302) for s in webfaq)  # max_examples: streamed, ranged reads only

    # the export is the fine-tuned SemBridge model in the target vocabulary, as sentence-transformers loads it
    from sentence_transformers import SparseEncoder

    from sembridge_jax.api import SparseEncoder as Ours

    st = SparseEncoder(str(workdir / "export"), device="cpu")
    ours = Ours.from_pretrained(str(workdir / "export"))
    assert ours.vocab_size == len(st.tokenizer) == len(ours.tokenizer)
    text = [WEBFAQ_KOR_ROWS[0][3]]
    np.testing.assert_allclose(st.encode(text, convert_to_tensor=True).to_dense().numpy(),
                               ours.encode(text, max_length=32).toarray(), rtol=2e-2, atol=2e-2)

    # evaluate.py on MIRACL two ways: the run's checkpoint with the paper config's eval section, and the
    # exported folder with --hf / --hf-corpus; both give train.py's fine-tuned SemBridge row
    trained = rows[0]
    _run(["evaluate.py", "--config", "configs/ko_splade.py", "--workdir", str(workdir), "--checkpoint",
          str(workdir), "--config.eval.max_queries=5", "--config.model.max_query_length=16",
          "--config.model.max_doc_length=32", "--out", str(root / "eval-config")], env)
    _run(["evaluate.py", "--model", str(workdir / "export"), "--hf", "miracl/miracl", "--hf-corpus",
          "miracl/miracl-corpus", "--language", "ko", "--max-queries", "5", "--query-max-length", "16",
          "--doc-max-length", "32", "--bm25", "--out", str(root / "eval-hf")], env)
    by_config = json.loads((root / "eval-config" / "results.json").read_text())["results"]
    by_hf = json.loads((root / "eval-hf" / "results.json").read_text())["results"]
    assert [r["model"] for r in by_hf] == ["BM25", "export"]
    for row in (by_config[0], by_hf[1]):
        assert row["dataset"].startswith("miracl/miracl:ko/dev") and row["num_queries"] == 4 and row["num_docs"] == 9
        assert row["nDCG@10"] == pytest.approx(trained["fine-tuned nDCG@10"], abs=1e-6)
        assert row["R@100"] == pytest.approx(trained["fine-tuned R@100"], abs=1e-6)
