"""The embedded default `configs/demo_ko.py` runs end to end (train.py), shortened by overrides.

Everything the demo reads comes from the repository (bundled splade-tiny-en, Korean tokenizer and
LibreOffice-help data). Only the bridge is swapped for the small bundled English model itself (run by our
JAX bridge backend), because the real multilingual-e5-small bridge spends minutes encoding 42k vocabulary
strings on 2 CPU cores; the real bridge is exercised by the bridge tests and by `make demo`.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo") / "run"
    overrides = [
        "--config.bridge.model=assets/splade-tiny-en", "--config.bridge.backend=jax", "--config.bridge.prompt=",
        "--config.train.num_steps=6", "--config.train.warmup_steps=1", "--config.train.batch_size=8",
        "--config.checkpoint.every_steps=3", "--config.eval.max_queries=24", "--config.model.max_doc_length=64",
        "--config.compare.methods=('sembridge', 'mvgauss')",  # the machinery of the comparison table
    ]
    env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "train.py", "--config", "configs/demo_ko.py", "--workdir", str(workdir),
                           *overrides], cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return workdir, proc.stdout


def test_demo_prints_the_comparison_table(demo_run):
    workdir, stdout = demo_run
    rows = json.loads((workdir / "results.json").read_text())
    assert [r["method"] for r in rows] == ["identity_semantic", "sembridge", "mvgauss"]
    for r in rows:
        assert r["steps"] == 6
        for key in ("zero-shot nDCG@10", "fine-tuned nDCG@10"):
            assert 0.0 <= r[key] <= 1.0
    assert "| sembridge " in stdout and "fine-tuned nDCG@10" in stdout


def test_demo_leaves_checkpoints_curves_and_an_export(demo_run):
    workdir, _ = demo_run
    assert (workdir / "training_curves.png").stat().st_size > 1000
    assert len((workdir / "metrics.jsonl").read_text().splitlines()) >= 1
    for method in ("sembridge", "mvgauss"):
        assert (workdir / "compare" / method / "metrics.jsonl").is_file()
    from sentence_transformers import SparseEncoder

    from sembridge_jax.api import SparseEncoder as OurEncoder

    st = SparseEncoder(str(workdir / "export"), device="cpu")
    ours = OurEncoder.from_pretrained(workdir / "export")
    text = ["셀 범위를 텍스트 문서로 끌어 놓습니다."]
    theirs = st.encode(text, convert_to_tensor=True).to_dense().numpy()
    assert abs(ours.encode(text).toarray() - theirs).max() < 1e-4


def test_demo_serves_inference_free_queries_it_was_scored_with(demo_run):
    """model.query_encoder='idf': the export holds the IDF of the training pages (idf.json), sentence-transformers
    loads it as a Router whose queries equal ours, and the fine-tuned row is what the export scores."""
    import numpy as np
    from sentence_transformers import SparseEncoder

    from sembridge_jax.api import SparseEncoder as OurEncoder
    from sembridge_jax.data.idf import corpus_query_weights
    from sembridge_jax.data.retrieval import load_eval_dataset
    from sembridge_jax.evaluation.encode import CorpusEncoder
    from sembridge_jax.evaluation.evaluator import EvalSettings, evaluate_encoder

    workdir, _ = demo_run
    ours = OurEncoder.from_pretrained(workdir / "export")
    expected = corpus_query_weights(REPO / "assets/data/lohelp-hangul", ours.tokenizer, ours.vocab_size)
    np.testing.assert_array_equal(ours.query_weights, expected)
    queries = ["셀 범위 선택", "차트 삽입"]
    st = SparseEncoder(str(workdir / "export"), device="cpu")
    np.testing.assert_allclose(st.encode_query(queries, convert_to_tensor=True).to_dense().numpy(),
                               ours.encode_queries(queries).toarray(), rtol=1e-6)
    row = json.loads((workdir / "results.json").read_text())[0]
    ds = load_eval_dataset(str(REPO / "assets/data/lohelp-hangul"), split="dev", max_queries=24)
    settings = EvalSettings(measures=("nDCG@10",), depth=100, batch_size=64, query_max_length=16, doc_max_length=64)
    assert evaluate_encoder(CorpusEncoder(ours), ds, settings, "export")["nDCG@10"] == pytest.approx(
        row["fine-tuned nDCG@10"], abs=1e-6)
