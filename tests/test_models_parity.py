"""Our Flax encoders against PyTorch/transformers on tiny random checkpoints (float32, 1e-4)."""
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from sembridge_jax.hf.load import load_model
from tests.tiny_models import make_hf_folder

MODEL_TYPES = ["bert", "distilbert", "roberta", "xlm-roberta"]


def _batch(pad_id: int, with_types: bool, seed: int = 0):
    """Two rows of random ids (avoiding the pad id), the second one right-padded; token types 0/1."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 1000, size=(2, 11))
    mask = np.ones_like(ids)
    mask[1, 6:] = 0
    ids[1, 6:] = pad_id
    types = np.zeros_like(ids)
    if with_types:
        types[:, 4:] = 1
    return ids, mask, types


def _torch_logits(tm, ids, mask, types, model_type):
    kw = dict(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
    if model_type != "distilbert":
        kw["token_type_ids"] = torch.tensor(types)
    with torch.no_grad():
        return tm(**kw).logits.numpy()


@pytest.fixture(scope="module", params=MODEL_TYPES)
def pair(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    tm = make_hf_folder(folder, request.param)
    return request.param, tm, load_model(folder)


def test_mlm_logits_match_pytorch(pair):
    model_type, tm, ours = pair
    with_types = model_type in ("bert", "roberta")
    ids, mask, types = _batch(ours.config.pad_token_id, with_types)
    ref = _torch_logits(tm, ids, mask, types, model_type)
    got = np.asarray(ours.mlm_logits(jnp.asarray(ids), jnp.asarray(mask),
                                     jnp.asarray(types) if with_types else None))
    valid = mask.astype(bool)
    np.testing.assert_allclose(got[valid], ref[valid], atol=1e-4, rtol=1e-4)
    assert np.abs(ref).max() > 0.5  # logits are not trivially small


def test_untied_decoder_matches_pytorch(tmp_path):
    tm = make_hf_folder(tmp_path, "bert", tie=False, seed=3)
    ours = load_model(tmp_path)
    assert not ours.config.tie_word_embeddings and ours.mlm.decoder is not None
    ids, mask, types = _batch(0, True, seed=1)
    ref = _torch_logits(tm, ids, mask, types, "bert")
    got = np.asarray(ours.mlm_logits(jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(types)))
    np.testing.assert_allclose(got[mask == 1], ref[mask == 1], atol=1e-4, rtol=1e-4)


def test_headless_bert_embed_matches_pytorch_mean_pooling(tmp_path):
    """A BertModel checkpoint (no MLM head, no pooler use) loads for dense `embed`, like the e5 bridge."""
    tm = make_hf_folder(tmp_path, "bert", headless=True, seed=2)
    ours = load_model(tmp_path)
    assert not ours.config.mlm_head
    ids, mask, types = _batch(0, False, seed=2)
    with torch.no_grad():
        h = tm(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state
    m = torch.tensor(mask)[..., None].float()
    ref = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1).numpy()
    got = np.asarray(ours.embed(jnp.asarray(ids), jnp.asarray(mask), pooling="mean"))
    np.testing.assert_allclose(got, ref, atol=1e-5)
    cls = np.asarray(ours.embed(jnp.asarray(ids), jnp.asarray(mask), pooling="cls", normalize=False))
    np.testing.assert_allclose(cls, h[:, 0].numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="without an MLM head"):
        ours.splade(jnp.asarray(ids), jnp.asarray(mask))


def test_bfloat16_compute_is_close_to_float32(tmp_path):
    make_hf_folder(tmp_path, "bert", seed=4)
    f32 = load_model(tmp_path)
    bf16 = load_model(tmp_path, dtype="bfloat16")
    ids, mask, types = _batch(0, True, seed=4)
    args = (jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(types))
    a, b = np.asarray(f32.splade(*args)), np.asarray(bf16.splade(*args))
    assert b.dtype == np.float32 and np.isfinite(b).all()
    assert jnp.dtype(bf16.embeddings.word[...].dtype) == jnp.float32  # parameters stay float32
    np.testing.assert_allclose(b, a, atol=0.1 * np.abs(a).max())
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99


def test_remat_gives_the_same_values(tmp_path):
    make_hf_folder(tmp_path, "roberta", seed=5)
    plain, remat = load_model(tmp_path), load_model(tmp_path, remat_policy="full")
    ids, mask, _ = _batch(1, False, seed=5)
    args = (jnp.asarray(ids), jnp.asarray(mask))
    np.testing.assert_allclose(np.asarray(remat.splade(*args)), np.asarray(plain.splade(*args)), atol=1e-6)
