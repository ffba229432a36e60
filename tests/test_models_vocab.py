"""Vocabulary rows (vocab_params / replace_vocab), logical axes, and config.json mapping."""
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from flax.core import spmd
from jax.sharding import PartitionSpec as P

from sembridge_jax.models import EncoderConfig, build_model, replace_vocab, vocab_params
from sembridge_jax.models.layers import logical_axes
from tests.tiny_models import tiny_config

CFG = EncoderConfig(vocab_size=40, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                    max_position_embeddings=16)


@pytest.mark.parametrize("tie", [True, False])
def test_vocab_params_are_the_vocab_axis_tensors(tie):
    model = build_model(CFG.replace(tie_word_embeddings=tie), nnx.Rngs(0))
    rows = vocab_params(model)
    want = {("embeddings", "word"), ("mlm", "bias")} | (set() if tie else {("mlm", "decoder")})
    assert set(rows) == want
    assert all(r.shape[0] == 40 for r in rows.values())


def test_replace_vocab_keeps_other_params_and_sets_rows():
    model = build_model(CFG.replace(tie_word_embeddings=False), nnx.Rngs(0))
    rows = vocab_params(model)
    keep = np.array([3, 1, 4, 1, 5, 9, 2, 6])
    new = replace_vocab(model, {p: r[keep] for p, r in rows.items()}, CFG.replace(vocab_size=8,
                                                                               tie_word_embeddings=False))
    for p, r in vocab_params(new).items():
        np.testing.assert_array_equal(r, rows[p][keep])
    ids = jnp.array([[0, 5, 3, 7]])
    mask = jnp.ones_like(ids)
    # Same rows, permuted vocabulary: the new model's logits are the old ones' columns `keep`.
    old_logits = np.asarray(model.mlm_logits(keep[np.asarray(ids)], mask))
    np.testing.assert_allclose(np.asarray(new.mlm_logits(ids, mask)), old_logits[..., keep], atol=1e-5)


def test_replace_vocab_errors_name_the_path():
    model = build_model(CFG, nnx.Rngs(0))
    rows = vocab_params(model)
    with pytest.raises(ValueError, match=r"missing \[\('mlm', 'bias'\)\]"):
        replace_vocab(model, {("embeddings", "word"): rows[("embeddings", "word")]}, CFG)
    bad = dict(rows)
    bad[("mlm", "bias")] = rows[("mlm", "bias")][:5]
    with pytest.raises(ValueError, match=r"new_rows\[\('mlm', 'bias'\)\] has shape \(5,\), expected \(40,\)"):
        replace_vocab(model, bad, CFG)


def test_every_param_has_logical_axes_and_rules_map_them():
    model = build_model(CFG.replace(tie_word_embeddings=False), nnx.Rngs(0))
    allowed = {"vocab", "embed", "mlp", "heads", "kv", "position", "type", None}
    axes = logical_axes(model)
    shapes = {p: v.shape for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    assert axes.keys() == shapes.keys()
    for path, names in axes.items():
        assert len(names) == len(shapes[path]), path
        assert set(names) <= allowed, (path, names)
    assert axes[("embeddings", "word")] == ("vocab", "embed")
    assert axes[("layers", 0, "attention", "query")] == ("embed", "heads", "kv")
    state = nnx.state(model, nnx.Param)
    with spmd.logical_axis_rules([("vocab", "model"), ("mlp", "model"), ("embed", None)]):
        specs = nnx.get_partition_spec(state)
    assert specs["mlm"]["decoder"].get_value() == P("model", None)
    assert specs["layers"][0]["ffn_up"]["kernel"].get_value() == P(None, "model")


@pytest.mark.parametrize("model_type", ["bert", "distilbert", "roberta", "xlm-roberta"])
def test_config_round_trips_through_config_json(model_type):
    hf = tiny_config(model_type).to_dict()
    cfg = EncoderConfig.from_hf(hf)
    assert EncoderConfig.from_hf(cfg.to_hf()) == cfg
    if model_type in ("roberta", "xlm-roberta"):
        assert cfg.arch == "roberta" and cfg.position_offset == 2
