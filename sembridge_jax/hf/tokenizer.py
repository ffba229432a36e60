"""Tokenizers: a folder or hub id through `transformers.AutoTokenizer`, checked on load: the folder holds a
vocabulary, and the special tokens SPLADE encoding and masking need exist."""
from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

from sembridge_jax.hf.hub import local_folder

# Files that hold a vocabulary; tokenizer_config.json alone describes none (transformers then builds a
# tokenizer of the special tokens only).
VOCAB_FILES = ("tokenizer.json", "vocab.txt", "sentencepiece.bpe.model", "spiece.model", "vocab.json",
               "tokenizer.model")
# [CLS] / [SEP] / [PAD] / [MASK], or the family's equivalents (<s> / </s> / <pad> / <mask> for RoBERTa, XLM-R).
SPECIAL_TOKENS = ("cls_token", "sep_token", "pad_token", "mask_token")


def vocabulary_problem(folder: Path) -> str | None:
    """Why the local tokenizer `folder` cannot be loaded (no vocabulary file), or None."""
    if any((folder / f).is_file() for f in VOCAB_FILES):
        return None
    return f"{folder}: no tokenizer vocabulary (none of {', '.join(VOCAB_FILES)})"


def check_tokenizer_location(value: str) -> str | None:
    """Config check of a tokenizer setting: a local folder must hold a vocabulary (a hub id is checked on load)."""
    if value and Path(value).is_dir() and vocabulary_problem(Path(value)):
        return f"is a folder without a tokenizer vocabulary: {value} holds none of {', '.join(VOCAB_FILES)}"
    return None


def check_tokenizer(tokenizer, where: str) -> None:
    """The special tokens exist in the vocabulary and there is more than them; errors name `where`."""
    vocab = tokenizer.get_vocab()
    missing = [f"{name} ({getattr(tokenizer, name, None)})" for name in SPECIAL_TOKENS
               if getattr(tokenizer, name, None) not in vocab]
    if missing:
        raise ValueError(f"{where}: tokenizer lacks the special tokens {', '.join(missing)}")
    specials = set(tokenizer.all_special_tokens)
    if not set(vocab) - specials:
        raise ValueError(f"{where}: tokenizer vocabulary holds only its {len(vocab)} special tokens")


def check_vocab_fits(tokenizer, vocab_rows: int, where: str) -> None:
    """Every token id has a row in the model's vocabulary table (a larger id would be clamped silently)."""
    if len(tokenizer) > vocab_rows:
        raise ValueError(f"{where}: the tokenizer has {len(tokenizer)} tokens but the model only {vocab_rows} "
                         "vocabulary rows (config vocab_size): tokenizer and model do not belong together")


def load_tokenizer(tokenizer_or_path):
    """A tokenizer object as is; a local folder or a hub id through `AutoTokenizer.from_pretrained`, checked
    (vocabulary file, special tokens). Errors name the folder."""
    if not isinstance(tokenizer_or_path, (str, Path)):
        return tokenizer_or_path
    folder = local_folder(tokenizer_or_path)
    if folder is not None:
        problem = vocabulary_problem(folder)
        if problem:
            raise FileNotFoundError(problem)
    tokenizer = AutoTokenizer.from_pretrained(str(folder or tokenizer_or_path))
    check_tokenizer(tokenizer, str(folder or tokenizer_or_path))
    return tokenizer
