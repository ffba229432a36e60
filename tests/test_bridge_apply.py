"""apply_alignment: copies reproduce the source model exactly; bias switches; pad/position handling."""
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sembridge_jax.bridge import Alignment, apply_alignment, build_alignment
from sembridge_jax.bridge.apply import positional_bias
from sembridge_jax.models import EncoderConfig, build_model
from sembridge_jax.models.vocab import vocab_params
from tests.test_bridge_overlap import bytelevel, wordpiece

WORDS = ["the", "cat", "sat", "on", "mat", "dog", "##s", "##ing", "a", "run", ".", ",", "big", "small", "red"]


def _tiny(arch, vocab_size, pad, tied=True):
    cfg = EncoderConfig(arch=arch, vocab_size=vocab_size, hidden_size=32, num_layers=2, num_heads=2,
                        intermediate_size=64, max_position_embeddings=40, pad_token_id=pad,
                        position_offset=pad + 1 if arch == "roberta" else 0, tie_word_embeddings=tied)
    model = build_model(cfg, nnx.Rngs(0))
    rng = np.random.default_rng(0)  # a non-trivial output bias, so that the remap is visible
    model.mlm.bias[...] = jnp.asarray(rng.standard_normal(vocab_size).astype(np.float32))
    return model


def _ids(tok, texts):
    enc = tok(texts, padding=True, return_tensors="np")
    return jnp.asarray(enc["input_ids"]), jnp.asarray(enc["attention_mask"])


@pytest.mark.parametrize("arch,tied", [("bert", True), ("bert", False), ("distilbert", True)])
def test_all_copies_reproduce_the_source(arch, tied):
    src_tok = wordpiece(WORDS)
    rng = np.random.default_rng(1)
    tgt_tok = wordpiece([WORDS[i] for i in rng.permutation(len(WORDS))])  # same tokens, other ids
    al = build_alignment(src_tok, tgt_tok, method="mean")
    assert (al.copy_src >= 0).all()
    model = _tiny(arch, len(src_tok), pad=0, tied=tied)
    new = apply_alignment(model, al, target_tokenizer=tgt_tok)
    texts = ["the big cat sat on a red mat.", "dogs running, small dog"]
    ws = np.asarray(model.splade(*_ids(src_tok, texts)))
    wt = np.asarray(new.splade(*_ids(tgt_tok, texts)))
    np.testing.assert_array_equal(wt, ws[:, al.copy_src])
    ls = np.asarray(model.mlm_logits(*_ids(src_tok, texts)))
    lt = np.asarray(new.mlm_logits(*_ids(tgt_tok, texts)))
    np.testing.assert_array_equal(lt, ls[:, :, al.copy_src])


def test_roberta_pad_change_keeps_positions():
    # XLM-R style source (pad id 1) -> target whose pad id is 3: the position table is shifted with it
    src_tok = bytelevel(["\u0120the", "\u0120cat", "\u0120sat", "."])
    toks = ["\u0120cat", "<s>", "</s>", "<pad>", "<unk>", "<mask>", ".", "\u0120the", "\u0120sat"]
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE({t: i for i, t in enumerate(toks)}, [], unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tgt_tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                      unk_token="<unk>", mask_token="<mask>")
    al = build_alignment(src_tok, tgt_tok, method="mean")
    assert (al.copy_src >= 0).all() and tgt_tok.pad_token_id == 3
    model = _tiny("roberta", len(src_tok), pad=1)
    new = apply_alignment(model, al, target_tokenizer=tgt_tok)
    assert new.config.pad_token_id == 3 and new.config.position_offset == 4
    texts = [" the cat sat.", " cat"]
    ws = np.asarray(model.splade(*_ids(src_tok, texts)))
    wt = np.asarray(new.splade(*_ids(tgt_tok, texts)))
    np.testing.assert_array_equal(wt, ws[:, al.copy_src])


def test_bias_switches_and_new_tokens():
    src_tok = wordpiece(WORDS)
    tgt_tok = wordpiece(["cat", "zebra", "the", "##xyz"])  # two new tokens
    al = build_alignment(src_tok, tgt_tok, method="mean")
    model = _tiny("bert", len(src_tok), pad=0)
    rows = vocab_params(model)
    emb, bias = rows[("embeddings", "word")], rows[("mlm", "bias")]
    new_ids = al.new_ids
    assert len(new_ids) == 2
    for mode in ("remap", "zero", "positional"):
        got = vocab_params(apply_alignment(model, al, bias_init=mode))
        np.testing.assert_allclose(got[("embeddings", "word")][new_ids], np.tile(emb.mean(0), (2, 1)), atol=1e-6)
        b = got[("mlm", "bias")]
        if mode == "remap":
            np.testing.assert_allclose(b[new_ids], bias.mean(), atol=1e-6)
            np.testing.assert_array_equal(b[al.copy_src >= 0], bias[al.copy_src[al.copy_src >= 0]])
        elif mode == "zero":
            assert (b[new_ids] == 0).all()
        else:
            np.testing.assert_array_equal(b, bias[:len(tgt_tok)])
    np.testing.assert_allclose(positional_bias(np.arange(3.0), 5), [0, 1, 2, 1, 1])


def test_sampled_kinds_are_seeded_and_fitted():
    src_tok, tgt_tok = wordpiece(WORDS), wordpiece(["zebra", "##xyz", "qq"])
    model = _tiny("bert", len(src_tok), pad=0)
    emb = vocab_params(model)[("embeddings", "word")]
    for method in ("random", "gaussian", "mvgauss"):
        a1 = build_alignment(src_tok, tgt_tok, method=method, seed=3)
        a2 = build_alignment(src_tok, tgt_tok, method=method, seed=3)
        r1, r2 = a1.combine(emb, name="w"), a2.combine(emb, name="w")
        np.testing.assert_array_equal(r1, r2)
        assert not np.array_equal(r1[a1.new_ids], build_alignment(src_tok, tgt_tok, method=method, seed=4)
                                  .combine(emb, name="w")[a1.new_ids])
    big = Alignment(copy_src=-np.ones(4000, np.int32), rows=[], cols=[], weights=[], method="mvgauss",
                    source_size=len(emb), new_kind="mvgauss", metadata={"seed": 0})
    sample = big.combine(emb)
    np.testing.assert_allclose(np.cov(sample, rowvar=False), np.cov(emb.astype(np.float64), rowvar=False), atol=2e-4)
