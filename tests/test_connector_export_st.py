"""The connector's sentence-transformers export: `SparseEncoder(out, trust_remote_code=True)` (PyTorch,
transformers' BERT/XLM-R modules) encodes texts as our JAX `SparseEncoder.from_pretrained(connector folder)`
does, within 1e-4, with and without LexEcho and appended tokens; the CLI; bad input."""
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sembridge_jax import SparseEncoder
from sembridge_jax.export.__main__ import main as export_main
from sembridge_jax.export.connector import save_connector
from sembridge_jax.export.connector_st import export_connector_st
from sembridge_jax.hf.load import load_model, read_config
from sembridge_jax.hf.tokenizer import load_tokenizer
from sembridge_jax.models.connector import ConnectorConfig, ConnectorSparseEncoder
from tests.test_connector_model import _randomize
from tests.tiny_models import make_hf_folder

TEXTS = ["the cat sat on the mat", "hello", "what causes the northern lights", "world hello the cat sat on mats",
         "lights lights lights"]  # different lengths: every batch is padded; a repeated token for the echo max


def _connector_folder(tmp_path, *, echo: bool, n_added: int, seed: int = 7):
    """A tiny random connector model (English tiny BERT, tiny XLM-R bridge) saved as a connector folder."""
    make_hf_folder(tmp_path / "en", "bert")
    make_hf_folder(tmp_path / "bridge", "xlm-roberta", seed=3, headless=True)
    english = load_model(tmp_path / "en")
    cfg = ConnectorConfig(english.config, bridge_hidden=32, connector_hidden=24, n_added=n_added, echo=echo,
                          bridge_vocab=read_config(tmp_path / "bridge").vocab_size)
    model = ConnectorSparseEncoder(cfg, nnx.Rngs(0), english=english)
    _randomize(model, seed)
    if echo:  # an echo block with weight on most tokens, at a non-trivial scale
        model.echo.proj.kernel[...] = 0.05 * jax.random.normal(jax.random.key(seed), model.echo.proj.kernel.shape)
        model.echo.proj.bias[...] = jnp.full((1,), 0.5)
        model.echo.scale[...] = jnp.float32(0.8)
    return save_connector(model, tmp_path / "conn", bridge_folder=tmp_path / "bridge",
                          english_tokenizer=load_tokenizer(str(tmp_path / "en")))


def _st_encode(folder, texts, batch_size=2):
    from sentence_transformers import SparseEncoder as STSparseEncoder  # heavy: torch + sentence-transformers

    st = STSparseEncoder(str(folder), trust_remote_code=True, device="cpu")
    return st, st.encode(texts, batch_size=batch_size, convert_to_tensor=True).to_dense().numpy()


@pytest.mark.parametrize("echo,n_added", [(False, 0), (True, 0), (False, 2), (True, 2)])
def test_st_export_matches_jax(tmp_path, echo, n_added):
    folder = _connector_folder(tmp_path, echo=echo, n_added=n_added)
    ours = SparseEncoder.from_pretrained(folder).encode(TEXTS, batch_size=3).toarray()
    out = export_connector_st(folder, tmp_path / "st")
    st, theirs = _st_encode(out, TEXTS)
    width = 1000 + (1000 if echo else 0)  # English vocabulary (+ bridge vocabulary)
    assert ours.shape == theirs.shape == (len(TEXTS), width) and st.get_embedding_dimension() == width
    np.testing.assert_allclose(theirs, ours, atol=1e-4, rtol=1e-4)
    assert (ours[:, :1000] > 0).sum(1).min() > 20
    if echo:  # the echo block is on, sits on the texts' own bridge ids, and its scale is applied
        assert ((ours[:, 1000:] > 0).sum(1) >= 1).all()
        ids = st.tokenizer(TEXTS[1])["input_ids"]
        assert set(np.flatnonzero(ours[1, 1000:])) <= set(ids)


def test_cli_writes_the_st_folder(tmp_path, capsys):
    folder = _connector_folder(tmp_path, echo=True, n_added=1)
    assert export_main(["--connector", str(folder), "--out", str(tmp_path / "st")]) == 0
    assert "wrote" in capsys.readouterr().out
    modules = json.loads((tmp_path / "st" / "modules.json").read_text())
    assert modules[0]["type"] == "st_connector_module.ConnectorSparseModule"
    cfg = json.loads((tmp_path / "st" / "sembridge_connector.json").read_text())
    assert cfg["echo"] and cfg["english_size"] == 1000 and cfg["bridge_vocab"] == 1000 and cfg["n_added"] == 1


@pytest.mark.slow
def test_st_export_matches_jax_with_the_kit_models(kit, tmp_path):
    """The real route: the kit's e5 bridge (BertModel, XLM-R tokenizer, 250,037 ids) and splade-tiny-en,
    a random connector with two appended tokens and the echo, Korean and English texts."""
    from sembridge_jax.bridge.e5 import materialize_e5

    bridge_dir = materialize_e5()
    english = load_model(kit / "assets/splade-tiny-en")
    cfg = ConnectorConfig(english.config, bridge_hidden=384, connector_hidden=256, n_added=2, echo=True,
                          bridge_vocab=read_config(Path(bridge_dir)).vocab_size)
    model = ConnectorSparseEncoder(cfg, nnx.Rngs(0), english=english)
    _randomize(model.connector, 1)
    model.echo.scale[...] = jnp.float32(0.8)
    model.vocab_bias[...] = model.vocab_bias[...] + 4.0  # an untrained connector activates few terms otherwise
    folder = save_connector(model, tmp_path / "conn", bridge_folder=bridge_dir,
                            english_tokenizer=load_tokenizer(str(kit / "assets/splade-tiny-en")))
    texts = ["셀에 표를 삽입하는 방법", "what causes the northern lights", "인쇄", "Insert a table into a text document "
             "and format its cells", "프린터 설정 대화 상자에서 용지 크기를 바꿉니다."]
    ours = SparseEncoder.from_pretrained(folder).encode(texts, batch_size=2).toarray()
    _, theirs = _st_encode(export_connector_st(folder, tmp_path / "st"), texts, batch_size=3)
    assert ours.shape == theirs.shape == (5, 30522 + 250037)
    np.testing.assert_allclose(theirs, ours, atol=1e-4, rtol=1e-4)
    assert (ours[:, :30522] > 0).sum(1).min() > 5 and (ours[:, 30522:] > 0).sum(1).min() >= 1
