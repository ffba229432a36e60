"""Token strings and overlap rules for WordPiece, SentencePiece-Unigram and byte-level BPE tokenizers."""
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from sembridge_jax.bridge.overlap import overlap_copy
from sembridge_jax.bridge.token_strings import token_forms

BERT_SPECIALS = dict(pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
XLMR_SPECIALS = dict(bos_token="<s>", pad_token="<pad>", eos_token="</s>", unk_token="<unk>", mask_token="<mask>",
                     cls_token="<s>", sep_token="</s>")
RO_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def wordpiece(tokens):
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + tokens)}
    tk = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(tokenizer_object=tk, **BERT_SPECIALS)


def unigram(pieces):
    tk = Tokenizer(models.Unigram([(p, -1.0) for p in RO_SPECIALS + pieces], unk_id=3, byte_fallback=False))
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    tk.decoder = decoders.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, **XLMR_SPECIALS)


def bytelevel(tokens):
    vocab = {t: i for i, t in enumerate(RO_SPECIALS + tokens)}
    tk = Tokenizer(models.BPE(vocab, [], unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tk, **XLMR_SPECIALS)


@pytest.fixture(scope="module")
def source():
    # uncased English WordPiece source: ids 5.. are hello, ##lo, world, 42, ",", ##hello
    return token_forms(wordpiece(["hello", "##lo", "world", "42", ",", "##hello"]))


def _copies(target, source, **switches):
    copy, rule = overlap_copy(target, source, **switches)
    return {target.raw[t]: (source.raw[s], rule[t]) for t, s in enumerate(copy) if s >= 0}


def test_wordpiece_forms_and_rules(source):
    tgt = token_forms(wordpiece(["hello", "##lo", "Hello", "42", ",", "집", "##집"]))
    assert tgt.family == "wordpiece"
    assert tgt.canonical[5:] == ["\u2581hello", "lo", "\u2581Hello", "\u258142", "\u2581,", "\u2581집", "집"]
    assert tgt.bridge[2] == "[CLS]" and tgt.bridge[5] == "hello"
    got = _copies(tgt, source)
    assert got == {"[PAD]": ("[PAD]", "special"), "[UNK]": ("[UNK]", "special"), "[CLS]": ("[CLS]", "special"),
                   "[SEP]": ("[SEP]", "special"), "[MASK]": ("[MASK]", "special"), "hello": ("hello", "exact"),
                   "##lo": ("##lo", "exact"), "Hello": ("hello", "fuzzy"), "42": ("42", "symbol"),
                   ",": (",", "symbol")}


def test_each_switch(source):
    tgt = token_forms(wordpiece(["hello", "Hello", "42"]))
    assert set(_copies(tgt, source, exact=False)) == {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "Hello",
                                                      "42"}
    assert _copies(tgt, source, exact=False)["hello"] == ("hello", "fuzzy")
    no_fuzzy = _copies(tgt, source, fuzzy=False)
    assert "Hello" not in no_fuzzy and no_fuzzy["hello"] == ("hello", "exact")
    # without the symbols rule, "42" still matches exactly, and the specials match by string (same family)
    no_sym = _copies(tgt, source, symbols=False)
    assert no_sym["42"] == ("42", "exact") and no_sym["[CLS]"] == ("[CLS]", "exact")
    assert _copies(tgt, source, exact=False, fuzzy=False, symbols=False) == {}
    only_sym = _copies(tgt, source, exact=False, fuzzy=False)
    assert set(only_sym) == {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "42"}


def test_sentencepiece_target(source):
    tgt = token_forms(unigram(["\u2581hello", "lo", "\u2581Hello", "\u258142", ",", "\u2581집"]))
    assert tgt.family == "sentencepiece"
    assert tgt.bridge[5] == "hello" and tgt.canonical[5] == "\u2581hello" and tgt.canonical[6] == "lo"
    got = _copies(tgt, source)
    # special tokens by role although their strings differ: <s> -> [CLS], </s> -> [SEP], ...
    assert got["<s>"] == ("[CLS]", "special") and got["</s>"] == ("[SEP]", "special")
    assert got["<pad>"] == ("[PAD]", "special") and got["<unk>"] == ("[UNK]", "special")
    assert got["<mask>"] == ("[MASK]", "special")
    assert got["\u2581hello"] == ("hello", "exact") and got["lo"] == ("##lo", "exact")
    assert got["\u2581Hello"] == ("hello", "fuzzy") and got["\u258142"] == ("42", "symbol")
    assert "\u2581집" not in got
    # without the symbols rule the differently spelled specials are not copied
    assert "<s>" not in _copies(tgt, source, symbols=False)


def test_bytelevel_target(source):
    tgt = token_forms(bytelevel(["\u0120hello", "lo", "\u0120World", "hello", "\u012042"]))
    assert tgt.family == "bytelevel"
    assert tgt.canonical[5:] == ["\u2581hello", "lo", "\u2581World", "hello", "\u258142"]
    assert tgt.bridge[5] == "hello"
    got = _copies(tgt, source)
    assert got["\u0120hello"] == ("hello", "exact") and got["lo"] == ("##lo", "exact")
    assert got["\u0120World"] == ("world", "fuzzy") and got["hello"] == ("##hello", "exact")
    assert got["<s>"] == ("[CLS]", "special")


def test_first_match_wins():
    # cased source with two fuzzy candidates for "HELLO": the lowest source id wins
    src = token_forms(wordpiece(["Hello", "hello", "##HELLO"]))
    tgt = token_forms(wordpiece(["HELLO"]))
    copy, rule = overlap_copy(tgt, src)
    assert src.raw[copy[5]] == "Hello" and rule[5] == "fuzzy"
