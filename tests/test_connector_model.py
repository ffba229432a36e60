"""ConnectorSparseEncoder: the SPLADE model reproduced through an identity connector, the whole composition
against PyTorch/transformers (connector in torch + BertForMaskedLM fed `inputs_embeds`), frozen parts, errors;
the LexEcho block against numpy, the English block unchanged by it, save/load round trip."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from sembridge_jax.export.connector import load_connector, save_connector
from sembridge_jax.hf.load import load_model, read_config
from sembridge_jax.hf.tokenizer import load_tokenizer
from sembridge_jax.models import EncoderConfig, build_model
from sembridge_jax.models.connector import ConnectorConfig, ConnectorSparseEncoder, Frozen
from sembridge_jax.models.state import merge_model, split_model
from tests.tiny_models import make_hf_folder

D_BRIDGE = 24


def _ids_mask(seed=0, rows=3, length=9, vocab=1000):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab, size=(rows, length)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 5:] = 0
    mask[2, 2:] = 0
    return ids, mask


def _randomize(model, seed):
    """Spread every trainable parameter (std 0.2, norms around 1) so a layout mistake cannot hide."""
    layout, params = split_model(model)
    rng = np.random.default_rng(seed)
    for k, v in params.items():
        base = 1.0 if k.endswith("scale") else 0.0
        params[k] = jnp.asarray(base + 0.2 * rng.standard_normal(v.shape), v.dtype)
    nnx.update(model, nnx.State.from_flat_path({layout.paths[k]: v for k, v in params.items()}))


def test_identity_connector_on_the_embedding_table_reproduces_splade():
    cfg = EncoderConfig(vocab_size=300, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                        type_vocab_size=2)
    english = build_model(cfg, nnx.Rngs(0))
    ids, mask = _ids_mask(vocab=300)
    expected = np.asarray(english.splade(jnp.asarray(ids), jnp.asarray(mask)))
    states = jnp.take(english.embeddings.word[...], jnp.asarray(ids), axis=0)
    model = ConnectorSparseEncoder(ConnectorConfig(cfg, bridge_hidden=16, kind="identity"), nnx.Rngs(1),
                                   english=english)
    got = np.asarray(model.splade_from_states(states, jnp.asarray(mask)))
    np.testing.assert_array_equal(got, expected)
    assert (expected > 0).sum() > 10


def _torch_reference(model, english_torch, states, mask, n_added):
    """The same composition, independently: torch connector -> inputs_embeds of BertForMaskedLM (which adds
    position + type-0 embeddings and its LayerNorm) -> MLM logits -> masked max of log1p(relu)."""
    c = model.connector
    t = lambda v: torch.tensor(np.asarray(v[...], np.float32))  # noqa: E731
    x = torch.tensor(np.asarray(states, np.float32))
    x = torch.nn.functional.layer_norm(x, (x.shape[-1],), t(c.norm.scale), t(c.norm.bias), eps=1e-12)
    x = torch.nn.functional.gelu(x @ t(c.fc1.kernel) + t(c.fc1.bias)) @ t(c.fc2.kernel) + t(c.fc2.bias)
    b, length = mask.shape
    pos = torch.arange(length).expand(b, length)
    m = torch.tensor(mask)
    if n_added:
        added = t(model.added).expand(b, n_added, -1)
        x = torch.cat([x, added], 1)
        pos = torch.cat([pos, m.sum(-1, keepdim=True) + torch.arange(n_added)[None]], 1)
        m = torch.cat([m, torch.ones(b, n_added, dtype=m.dtype)], 1)
    with torch.no_grad():
        logits = english_torch(inputs_embeds=x, attention_mask=m, position_ids=pos,
                               token_type_ids=torch.zeros_like(m)).logits
    w = torch.log1p(torch.relu(logits)) * m[..., None]
    return w.max(1).values.numpy()


@pytest.mark.parametrize("n_added", [0, 2])
def test_composition_matches_pytorch(tmp_path, n_added):
    tm = make_hf_folder(tmp_path, "bert")
    english = load_model(tmp_path)
    cfg = ConnectorConfig(english.config, bridge_hidden=D_BRIDGE, connector_hidden=20, n_added=n_added)
    model = ConnectorSparseEncoder(cfg, nnx.Rngs(0), english=english)
    _randomize(model.connector, 1)
    if n_added:
        model.added[...] = 0.5 * jax.random.normal(jax.random.key(2), model.added.shape)
    rng = np.random.default_rng(3)
    states = rng.standard_normal((3, 7, D_BRIDGE)).astype(np.float32)
    mask = np.ones((3, 7), np.int64)
    mask[1, 4:] = 0
    got = np.asarray(model.splade_from_states(jnp.asarray(states), jnp.asarray(mask)))
    ref = _torch_reference(model, tm, states, mask, n_added)
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-5)
    assert (ref > 0).sum() > 50
    raw = np.asarray(model.max_logits_from_states(jnp.asarray(states), jnp.asarray(mask)))
    np.testing.assert_allclose(np.log1p(np.maximum(raw, 0)), got, atol=1e-6)


def _tiny(dtype="float32", train_english=True, with_bridge=False, echo=False, echo_pooling="max"):
    eng = EncoderConfig(vocab_size=200, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                        type_vocab_size=2, dtype=dtype)
    bridge_cfg = EncoderConfig(vocab_size=150, hidden_size=D_BRIDGE, num_layers=1, num_heads=2,
                               intermediate_size=32, type_vocab_size=1, pad_token_id=1, dtype=dtype)
    bridge = build_model(bridge_cfg, nnx.Rngs(5)) if with_bridge else None
    cfg = ConnectorConfig(eng, bridge_hidden=D_BRIDGE, train_english=train_english,
                          bridge=bridge_cfg if with_bridge else None, dtype=dtype, echo=echo, bridge_vocab=150,
                          echo_pooling=echo_pooling)
    return ConnectorSparseEncoder(cfg, nnx.Rngs(0), bridge=bridge)


def test_trainable_parts():
    _, params = split_model(_tiny())
    assert "vocab" not in params and "vocab_bias" not in params  # the English output space never trains
    assert "layers.0.ffn_up.kernel" in params and "connector.fc1.kernel" in params
    model = _tiny(train_english=False, with_bridge=True)
    _, params = split_model(model)
    assert sorted({k.split(".")[0] for k in params}) == ["connector"]
    frozen = nnx.to_flat_state(nnx.state(model, Frozen))
    assert any(p[0] == "bridge" for p, _ in frozen) and any(p[0] == "layers" for p, _ in frozen)


def test_text_path_runs_the_frozen_bridge():
    model = _tiny(with_bridge=True)
    ids, mask = _ids_mask(vocab=150, length=6)
    states = model.bridge.sequence_output(jnp.asarray(ids), jnp.asarray(mask))
    np.testing.assert_array_equal(np.asarray(model.splade(jnp.asarray(ids), jnp.asarray(mask))),
                                  np.asarray(model.splade_from_states(states, jnp.asarray(mask))))
    assert model.config.max_tokens == 512 and model.config.pad_token_id == 1


@pytest.mark.parametrize("echo", [False, True])
def test_bfloat16_is_close_to_float32(echo):
    rng = np.random.default_rng(0)
    states = jnp.asarray(rng.standard_normal((2, 5, D_BRIDGE)), jnp.float32)
    mask = jnp.ones((2, 5), jnp.int32)
    ids = jnp.asarray(rng.integers(0, 150, (2, 5)), jnp.int32) if echo else None
    f32 = _tiny(echo=echo)
    b16 = _tiny(dtype="bfloat16", echo=echo)
    a = np.asarray(jax.jit(lambda s, m, i: f32.splade_from_states(s, m, i))(states, mask, ids))
    b = np.asarray(b16.splade_from_states(states, mask, ids))
    assert b.dtype == np.float32 and b.shape == (2, 350 if echo else 200)
    np.testing.assert_allclose(a, b, atol=0.1)
    assert not echo or (a[:, 200:] > 0).sum() > 3


def test_bad_input_errors():
    eng = EncoderConfig(vocab_size=20, hidden_size=8, num_layers=1, num_heads=2, intermediate_size=8)
    with pytest.raises(ValueError, match="connector.kind"):
        ConnectorConfig(eng, bridge_hidden=8, kind="linear")
    with pytest.raises(ValueError, match="bridge_hidden"):
        ConnectorConfig(eng, bridge_hidden=12, bridge=eng)
    with pytest.raises(ValueError, match="identity"):
        ConnectorConfig(eng, bridge_hidden=12, kind="identity")
    with pytest.raises(ValueError, match="connector.echo_pooling"):
        ConnectorConfig(eng, bridge_hidden=12, echo=True, bridge_vocab=10, echo_pooling="sum")
    model = ConnectorSparseEncoder(ConnectorConfig(eng, bridge_hidden=8), nnx.Rngs(0))
    with pytest.raises(ValueError, match="no bridge encoder"):
        model.splade(jnp.ones((1, 3), jnp.int32), jnp.ones((1, 3), jnp.int32))


def _echo_reference(model, states, mask, ids):
    """numpy: w_i = relu(u . x_i + c) at real tokens, per bridge id the max ("max") or log1p of the sum
    ("log_sum"), times |scale|."""
    u = np.asarray(model.echo.proj.kernel[...])[:, 0]
    c = float(np.asarray(model.echo.proj.bias[...])[0])
    w = np.maximum(np.asarray(states, np.float64) @ u + c, 0) * mask
    out = np.zeros((len(ids), model.config.bridge_vocab))
    for b in range(len(ids)):
        for i in range(ids.shape[1]):
            if model.config.echo_pooling == "max":
                out[b, ids[b, i]] = max(out[b, ids[b, i]], w[b, i])
            else:
                out[b, ids[b, i]] += w[b, i]
    if model.config.echo_pooling == "log_sum":
        out = np.log1p(out)
    return abs(float(model.echo.scale[...])) * out


@pytest.mark.parametrize("pooling", ["max", "log_sum"])
def test_echo_block_matches_numpy(pooling):
    model = _tiny(echo=True, echo_pooling=pooling)
    model.echo.proj.kernel[...] = 0.3 * jax.random.normal(jax.random.key(4), model.echo.proj.kernel.shape)
    model.echo.scale[...] = jnp.float32(-0.7)  # the block uses |scale|: vectors stay non-negative
    ids, mask = _ids_mask(vocab=150, length=8)
    ids[0, 5] = ids[0, 1]  # a repeated id: the larger of the two weights / log1p of their sum
    ids[1, 6] = ids[1, 0]  # a padding position sharing an id with a real token: must not count
    states = np.random.default_rng(2).standard_normal((3, 8, D_BRIDGE)).astype(np.float32)
    ref = _echo_reference(model, states, mask, ids)
    got = np.asarray(jax.jit(lambda s, m, i: model.splade_from_states(s, m, i))(states, mask, ids))
    assert got.shape == (3, 200 + 150) and model.config.vocab_size == 350 and model.config.english_size == 200
    np.testing.assert_allclose(got[:, 200:], ref, rtol=1e-5, atol=1e-6)
    assert (ref > 0).sum(1).min() >= 1 and (ref == 0).sum(1).min() > 100
    english = jax.jit(lambda s, m: model.english_from_states(s, m))(states, mask)
    np.testing.assert_array_equal(got[:, :200], np.asarray(english))
    np.testing.assert_allclose(np.asarray(model.echo_weights(states, mask)),
                               np.maximum(states @ np.asarray(model.echo.proj.kernel[...])[:, 0] + 0.1, 0) * mask,
                               rtol=1e-5, atol=1e-6)
    top = np.asarray(model.splade_from_states(states, mask, ids, top_k=5))  # top_k over the whole vector
    assert ((top > 0).sum(1) <= 5).all()
    # trained: the echo head and its scale are parameters, and gradients reach them through the pooling
    layout, params = split_model(model)
    assert {"echo.proj.kernel", "echo.proj.bias", "echo.scale"} <= set(params)
    assert (layout.logical_axes["echo.proj.kernel"], layout.logical_axes["echo.proj.bias"],
            layout.logical_axes["echo.scale"]) == (("embed", None), (None,), None)  # the scalar: replicated
    grads = jax.grad(lambda p: merge_model(layout, p).splade_from_states(states, mask, ids).sum())(params)
    assert float(jnp.abs(grads["echo.proj.kernel"]).sum()) > 0 and float(grads["echo.scale"]) != 0
    with pytest.raises(ValueError, match="input_ids"):
        model.splade_from_states(states, mask)


def test_echo_off_leaves_the_english_block_bit_identical():
    """The echo head is built last: the same seed gives the same other weights, and the echo-off model is
    the English block of the echo-on one, bit for bit (jit and eager)."""
    ids, mask = _ids_mask(vocab=150, length=6)
    off, on = _tiny(with_bridge=True), _tiny(with_bridge=True, echo=True)
    assert off.config.vocab_size == 200 and off.echo is None
    for run in (lambda m: m.splade(jnp.asarray(ids), jnp.asarray(mask)),
                jax.jit(lambda m: m.splade(jnp.asarray(ids), jnp.asarray(mask)))):
        a, b = np.asarray(run(off)), np.asarray(run(on))
        np.testing.assert_array_equal(a, b[:, :200])
        assert (b[:, 200:] > 0).any()
    with pytest.raises(ValueError, match="no echo head"):
        off.echo_weights(jnp.zeros((1, 2, D_BRIDGE)), jnp.ones((1, 2)))


def test_echo_config_errors():
    eng = EncoderConfig(vocab_size=20, hidden_size=8, num_layers=1, num_heads=2, intermediate_size=8)
    with pytest.raises(ValueError, match="bridge_vocab"):
        ConnectorConfig(eng, bridge_hidden=8, echo=True)
    with pytest.raises(ValueError, match="bridge_vocab is 30"):
        ConnectorConfig(eng, bridge_hidden=8, bridge=eng, bridge_vocab=30)
    assert ConnectorConfig(eng, bridge_hidden=8, bridge=eng).bridge_vocab == 20


@pytest.mark.parametrize("echo", [False, True])
def test_save_load_round_trip(tmp_path, echo):
    """A model trained from cached states (no bridge attached) saved with its bridge folder: the loaded model
    encodes bridge token ids exactly as the original does through that bridge's states."""
    make_hf_folder(tmp_path / "en", "bert")
    make_hf_folder(tmp_path / "bridge", "xlm-roberta", seed=3, headless=True)
    english = load_model(tmp_path / "en")
    bridge = load_model(tmp_path / "bridge")
    cfg = ConnectorConfig(english.config, bridge_hidden=32, n_added=1, echo=echo,
                          bridge_vocab=read_config(tmp_path / "bridge").vocab_size)
    model = ConnectorSparseEncoder(cfg, nnx.Rngs(0), english=english)
    _randomize(model, 7)
    out = save_connector(model, tmp_path / "out", bridge_folder=tmp_path / "bridge",
                         english_tokenizer=load_tokenizer(str(tmp_path / "en")))
    loaded, _, en_tok = load_connector(out)
    assert loaded.config.echo is echo and loaded.config.vocab_size == 1000 + (1000 if echo else 0)
    ids, mask = _ids_mask(vocab=1000, length=7)
    ids[mask == 0] = 1
    states = bridge.sequence_output(jnp.asarray(ids), jnp.asarray(mask))
    expected = np.asarray(model.splade_from_states(states, jnp.asarray(mask), jnp.asarray(ids)))
    np.testing.assert_array_equal(np.asarray(loaded.splade(jnp.asarray(ids), jnp.asarray(mask))), expected)
    assert len(en_tok) > 0
