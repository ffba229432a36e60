"""Tokenizers: a folder or hub id through `transformers.AutoTokenizer`, with a clear error when the
folder holds no tokenizer."""
from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "sentencepiece.bpe.model", "tokenizer_config.json",
                   "spiece.model", "vocab.json")


def load_tokenizer(tokenizer_or_path):
    """A tokenizer object as is; a local folder or a hub id through `AutoTokenizer.from_pretrained`."""
    if not isinstance(tokenizer_or_path, (str, Path)):
        return tokenizer_or_path
    folder = Path(tokenizer_or_path)
    if folder.is_dir() and not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise FileNotFoundError(f"{folder}: no tokenizer files ({', '.join(TOKENIZER_FILES)})")
    return AutoTokenizer.from_pretrained(str(tokenizer_or_path))
