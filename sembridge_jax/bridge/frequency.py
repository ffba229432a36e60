"""Target-text statistics and the frequency-based output bias (bias_init "unigram" / "idf").

The text is a plain file (one text per line) or a BEIR corpus.jsonl ("title text" per record; a BEIR
folder means its corpus.jsonl). Counts are over the target tokenizer's ids without special tokens:
term frequency tf [V_t] and document frequency df [V_t] (texts containing the id). A new token's bias:

  unigram:  x = log((tf + 1) / (sum tf + V_t))        (smoothed unigram log-probability, ZeTT-style)
  idf:      x = log((n_texts + 1) / (df + 1))          (inverse document frequency)
  bias = mean(b_s) + std(b_s) * (x - mean x) / std x  (affine-matched to the source bias; the mean and
                                                       std of x are taken over the whole target vocabulary)
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sembridge_jax.lines import DataError, numbered_lines

FREQUENCY_BIAS = ("unigram", "idf")


def text_file(path: str | Path) -> Path:
    """The file a bias text names: the file itself, or a BEIR folder's corpus.jsonl."""
    p = Path(path)
    return p / "corpus.jsonl" if p.is_dir() else p


def text_problem(path: str) -> str | None:
    """Why `path` cannot serve as a bias text (missing, or without a single non-blank line), else None.
    Reads only up to the first non-blank line."""
    if not path:
        return None
    f = text_file(path)
    if not f.is_file():
        return f"names no text file: {f}"
    with open(f, "rb") as fh:
        if not any(line.strip() for line in fh):
            return f"names an empty text file (no non-blank line): {f}"
    return None


def read_texts(path: str | Path) -> list[str]:
    """The texts of a bias text file (see the module docstring); ValueError naming the file if it has none."""
    f = text_file(path)
    texts = []
    for n, line in numbered_lines(f):
        if line is None:
            raise DataError(f"{f}:{n}: not valid UTF-8")
        if f.suffix == ".jsonl":
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{f}:{n}: not valid JSON ({e.msg})") from None
            title = (doc.get("title") or "").strip()
            line = f"{title} {doc.get('text') or ''}" if title else doc.get("text") or ""
        texts.append(line.strip())
    texts = [t for t in texts if t]
    if not texts:
        raise ValueError(f"bias text {f} holds no text")
    return texts


def token_counts(texts: list[str], tokenizer, vocab_size: int, *, batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """(tf [V], df [V]) of `texts` under `tokenizer`, special tokens excluded, no truncation."""
    tf = np.zeros(vocab_size, np.int64)
    df = np.zeros(vocab_size, np.int64)
    special = np.asarray(sorted(set(tokenizer.all_special_ids)), np.int64)
    for s in range(0, len(texts), batch):
        for ids in tokenizer(texts[s:s + batch], add_special_tokens=False)["input_ids"]:
            ids = np.asarray(ids, np.int64)
            ids = ids[~np.isin(ids, special)]
            tf += np.bincount(ids, minlength=vocab_size)[:vocab_size]
            df[np.unique(ids)] += 1
    return tf, df


def frequency_bias(kind: str, tf: np.ndarray, df: np.ndarray, n_texts: int, source_bias: np.ndarray) -> np.ndarray:
    """The `kind` ("unigram" | "idf") bias of every target id [V_t], affine-matched to source_bias."""
    tf, df = np.asarray(tf, np.float64), np.asarray(df, np.float64)
    if kind == "unigram":
        x = np.log((tf + 1.0) / (tf.sum() + len(tf)))
    elif kind == "idf":
        x = np.log((n_texts + 1.0) / (df + 1.0))
    else:
        raise ValueError(f"frequency bias must be one of {FREQUENCY_BIAS}, got {kind!r}")
    b = np.asarray(source_bias, np.float64)
    return b.mean() + b.std() * (x - x.mean()) / max(x.std(), 1e-12)
