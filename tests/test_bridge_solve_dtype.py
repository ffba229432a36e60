"""`init.solve_dtype` / `--solve-dtype`: "auto" resolves per platform, a float32 solve (what GPU/TPU run)
stays within FLOAT32_WEIGHT_ERROR of the float64 reference with the exactness proof on, and the value
reaches the entmax from the config, the bridge CLI and the pipeline."""
from pathlib import Path

import entmax
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from sembridge_jax import pipeline
from sembridge_jax.bridge import __main__ as bridge_cli
from sembridge_jax.bridge.entmax import FLOAT32_WEIGHT_ERROR, resolve_solve_dtype, similarity_entmax
from sembridge_jax.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "demo_ko.py"


def _unit(x):
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_auto_resolves_per_platform():
    assert resolve_solve_dtype("auto", "cpu") == "float64"
    assert resolve_solve_dtype("auto", "gpu") == resolve_solve_dtype("auto", "tpu") == "float32"
    assert resolve_solve_dtype("float32", "cpu") == "float32" and resolve_solve_dtype("float64", "gpu") == "float64"
    assert resolve_solve_dtype("auto") == "float64"  # the tests run on CPU
    with pytest.raises(ValueError, match="TPUs have no float64"):
        resolve_solve_dtype("float64", "tpu")
    with pytest.raises(ValueError, match="init.solve_dtype"):
        resolve_solve_dtype("float16", "cpu")


@pytest.fixture(scope="module")
def rows(kit):
    """Random unit rows, and real ones: cosines between splade-tiny-en input embeddings."""
    rng = np.random.default_rng(0)
    emb = load_file(str(kit / "assets/splade-tiny-en/model.safetensors"))["bert.embeddings.word_embeddings.weight"]
    keys = _unit(emb)
    return {"random": (_unit(rng.standard_normal((40, 32))), _unit(rng.standard_normal((3000, 32))), (16, 256)),
            "real": (keys[[2000, 2154, 3000, 4937, 5310, 7592, 10000, 15000]], keys, (64, 1024))}


@pytest.mark.parametrize("alpha", [1.5, 2.0, 3.0, 4.0])
@pytest.mark.parametrize("name", ["random", "real"])
def test_float32_solve_matches_the_float64_reference(rows, name, alpha):
    """entmax_bisect on the float64 cosines is the reference; the float32 solve (top-k candidates,
    proof with the float32 margin, retries, full rows) lands within FLOAT32_WEIGHT_ERROR of it."""
    q, k, ks = rows[name]
    z = q.astype(np.float64) @ k.astype(np.float64).T
    ref = entmax.entmax_bisect(torch.from_numpy(z), alpha=alpha, dim=-1, n_iter=100).numpy()
    r, c, w, stats = similarity_entmax(q, k, alpha, k=ks, block_rows=16, solve_dtype="float32", progress=False)
    dense = np.zeros(ref.shape)
    dense[r, c] = w
    np.testing.assert_allclose(dense, ref, atol=FLOAT32_WEIGHT_ERROR, rtol=0)
    assert stats["unique_rows"] == len(q)
    if alpha >= 3:  # small supports: the proof settles every row on its first candidates
        assert stats[f"top{ks[0]}"] == len(q), stats


def test_bad_value_is_a_config_error_naming_the_key():
    assert load_config(DEMO).init.solve_dtype == "auto"
    assert load_config(DEMO, ["--config.init.solve_dtype=float32"]).init.solve_dtype == "float32"
    with pytest.raises(ConfigError, match=r"init\.solve_dtype"):
        load_config(DEMO, ["--config.init.solve_dtype=float16"])


class _Built(Exception):
    """Raised by the stand-in build_alignment once it has seen its arguments."""


def _capture(monkeypatch, module):
    seen = {}

    def fake(*args, **kwargs):
        seen.update(kwargs)
        raise _Built

    monkeypatch.setattr(module, "build_alignment", fake)
    return seen


def test_cli_config_and_pipeline_pass_it_on(monkeypatch, tmp_path):
    seen = _capture(monkeypatch, bridge_cli)
    with pytest.raises(_Built):
        bridge_cli.main(["build", "--source", "S", "--target-tokenizer", "T", "--out", str(tmp_path),
                         "--solve-dtype", "float32"])
    assert seen["solve_dtype"] == "float32"
    with pytest.raises(_Built):
        bridge_cli.main(["build", "--config", str(DEMO), "--config.init.solve_dtype=float32", "--out", str(tmp_path)])
    assert seen["solve_dtype"] == "float32"
    with pytest.raises(SystemExit):
        bridge_cli.main(["build", "--source", "S", "--target-tokenizer", "T", "--out", "O", "--solve-dtype", "f16"])

    seen = _capture(monkeypatch, pipeline)
    config = load_config(DEMO, ["--config.init.solve_dtype=float32", f"--config.workdir={tmp_path}"])
    with pytest.raises(_Built):
        pipeline.alignment_for(config, "sembridge", tmp_path)
    assert seen["solve_dtype"] == "float32"
