"""Token strings of any Hugging Face tokenizer: bridge texts, canonical forms, special-token roles.

Three tokenizer families are recognised (WordPiece "##x", SentencePiece "▁x", byte-level BPE "Ġx");
canonical forms put them on one footing so that overlap matching can compare vocabularies
across families (docs/methods.md, "The paper's algorithm", steps 1-2).
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass

WORD_START = "\u2581"  # "▁": the canonical word-start marker
BPE_WORD_START = "\u0120"  # "Ġ": byte-level BPE's encoded space
_BYTE_FALLBACK = re.compile(r"<0x[0-9A-Fa-f]{2}>")

# Special-token roles; each role lists the tokenizer attributes that can hold it, in order.
SPECIAL_ROLES = {
    "cls": ("cls_token_id", "bos_token_id"),
    "sep": ("sep_token_id", "eos_token_id"),
    "pad": ("pad_token_id",),
    "unk": ("unk_token_id",),
    "mask": ("mask_token_id",),
}


@dataclass(frozen=True)
class TokenForms:
    """Per-id strings of one tokenizer (lists indexed by token id, length = len(tokenizer))."""

    raw: list[str]  # convert_ids_to_tokens
    bridge: list[str]  # the text the bridge model encodes
    canonical: list[str]  # family-independent form ("▁" marks a word start)
    fuzzy: list[str]  # canonical without "▁", lower-cased
    family: str  # "wordpiece" | "sentencepiece" | "bytelevel"
    special_ids: frozenset[int]
    roles: dict[str, int]  # role -> token id (only the roles the tokenizer has)


def tokenizer_family(tokenizer) -> str:
    """'wordpiece', 'sentencepiece' or 'bytelevel' (the latter also covers other BPEs without '▁').

    Uses the fast tokenizer's model type when there is one, else counts marker prefixes
    in the vocabulary (the heuristic of the released SemBridge/FOCUS code)."""
    vocab = tokenizer.get_vocab()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    kind = type(backend.model).__name__ if backend is not None else ""
    n_sp = sum(1 for t in vocab if t.startswith(WORD_START))
    if kind == "WordPiece":
        return "wordpiece"
    if kind == "Unigram" or n_sp > 100:
        return "sentencepiece"
    if kind != "BPE" and sum(1 for t in vocab if t.startswith("##")) > 100:
        return "wordpiece"
    return "bytelevel"


def _decode_each(tokenizer, n: int) -> list[str]:
    return tokenizer.batch_decode([[i] for i in range(n)], skip_special_tokens=False,
                                  clean_up_tokenization_spaces=False)


def bridge_text(decoded: str, raw: str) -> str:
    """The released code's bridge input: the decoded single token, stripped; an empty result or a
    bracketed special token such as "[CLS]" falls back to the raw token string."""
    text = decoded.strip()
    if not text or (text.startswith("[") and text.endswith("]")):
        return raw
    return text


def canonical_form(raw: str, decoded: str, family: str) -> str:
    """Family-independent form: word-start pieces get a leading "▁", continuation pieces none.

    WordPiece "##x" -> "x", "x" -> "▁x"; SentencePiece "▁x" -> "▁x" (byte-fallback "<0xAB>" kept raw);
    byte-level BPE "Ġx" -> "▁x" with the bytes decoded."""
    if family == "wordpiece":
        return raw[2:] if raw.startswith("##") else WORD_START + raw
    if family == "sentencepiece":
        if _BYTE_FALLBACK.fullmatch(raw):
            return raw
        marker = WORD_START
    else:
        marker = BPE_WORD_START
    body = decoded.lstrip()
    return WORD_START + body if raw.startswith(marker) else body


def fuzzy_form(canonical: str) -> str:
    """Canonical form ignoring the word-start marker and case."""
    return canonical.replace(WORD_START, "").lower()


def is_symbol(fuzzy: str) -> bool:
    """Numbers, punctuation and whitespace (the released code's `is_numerical_symbol_etc`; an empty
    form counts too, as there)."""
    return fuzzy.isnumeric() or all(c in string.punctuation for c in fuzzy) or fuzzy.isspace()


def special_roles(tokenizer) -> dict[str, int]:
    """Role -> id for [CLS]/<s>, [SEP]/</s>, [PAD], [UNK], [MASK], whatever their strings are."""
    roles = {}
    for role, attrs in SPECIAL_ROLES.items():
        for attr in attrs:
            tid = getattr(tokenizer, attr, None)
            if tid is not None:
                roles[role] = int(tid)
                break
    return roles


def token_forms(tokenizer) -> TokenForms:
    """All strings of every id in `range(len(tokenizer))` (added tokens included)."""
    n = len(tokenizer)
    raw = [t if t is not None else "" for t in tokenizer.convert_ids_to_tokens(list(range(n)))]
    decoded = _decode_each(tokenizer, n)
    family = tokenizer_family(tokenizer)
    canonical = [canonical_form(r, d, family) for r, d in zip(raw, decoded, strict=True)]
    return TokenForms(
        raw=raw,
        bridge=[bridge_text(d, r) for d, r in zip(decoded, raw, strict=True)],
        canonical=canonical,
        fuzzy=[fuzzy_form(c) for c in canonical],
        family=family,
        special_ids=frozenset(int(i) for i in tokenizer.all_special_ids),
        roles=special_roles(tokenizer),
    )
